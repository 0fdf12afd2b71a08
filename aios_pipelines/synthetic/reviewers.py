"""Simulated underwriters working the review queue, so a demo has human decisions to analyse.

Deterministic for a seed. Each reviewer has a habit: how often they follow the model's
recommendation, how long they take. One of them approves almost everything (the
rubber-stamping the override monitoring is there to catch). Four-eyes cases get a second
review from the senior. Decision times are simulated from each case's creation time.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import timedelta

from aios_pipelines.review.store import ReviewError, ReviewStore


@dataclass(frozen=True)
class SimulatedReviewer:
    name: str
    role: str
    agreement: float  # chance of following the model's recommendation
    mean_minutes: float  # time from claim to decision


REVIEWERS = (
    SimulatedReviewer("ana", "underwriter", 0.88, 35.0),
    SimulatedReviewer("ben", "underwriter", 0.97, 6.0),  # fast and agrees with everything
    SimulatedReviewer("cleo", "underwriter", 0.78, 55.0),
)
SENIOR = SimulatedReviewer("sam", "senior_underwriter", 0.92, 25.0)


def _rng(seed: int, case_id: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{case_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _ensure_users(store: ReviewStore) -> None:
    for reviewer in (*REVIEWERS, SENIOR):
        try:
            store.get_user(reviewer.name)
        except ReviewError:
            store.add_user(reviewer.name, reviewer.role, actor="demo")


def _choice(case: dict, reviewer: SimulatedReviewer, rng: random.Random) -> tuple[str, list[str], str | None]:
    recommended = case.get("model_recommendation") or "approve"
    agreement = reviewer.agreement - (0.08 if case.get("blind_review") else 0.0)
    follow = rng.random() < agreement
    decision = recommended if follow else ("decline" if recommended == "approve" else "approve")
    model_codes = [r["code"] for r in case.get("reasons") or [] if r.get("code")]
    if decision == "decline":
        codes = model_codes[:2] or ["H06"]
        if not follow:
            codes = ["H05", *codes][:3]
    else:
        codes = [] if follow else ["H03"]
    note = None if follow else "Simulated reviewer: the file shows more than the model saw."
    return decision, codes, note


def simulate_reviews(
    store: ReviewStore, *, share: float = 0.7, seed: int = 7, info_share: float = 0.03, max_cases: int | None = None
) -> dict[str, int]:
    """Decide about ``share`` of the open cases (the oldest ``max_cases`` at most); returns
    counts of what was done."""
    _ensure_users(store)
    done = {"decided": 0, "second_reviews": 0, "info_requested": 0, "left_open": 0}
    open_cases = sorted(store.list_cases(status="open", limit=1_000_000), key=lambda c: (c["application_date"], c["case_id"]))
    for case in open_cases[:max_cases]:
        rng = _rng(seed, case["case_id"])
        if rng.random() >= share:
            done["left_open"] += 1
            continue
        reviewer = REVIEWERS[int(hashlib.sha256(case["case_id"].encode()).hexdigest(), 16) % len(REVIEWERS)]
        claimed_at = case["created_at"] + timedelta(minutes=rng.uniform(5, 360))
        store.claim(case["case_id"], reviewer.name, now=claimed_at)
        decided_at = claimed_at + timedelta(minutes=rng.expovariate(1 / reviewer.mean_minutes))
        if rng.random() < info_share:
            store.decide(case["case_id"], reviewer.name, "request_info", note="Payslips requested", now=decided_at)
            done["info_requested"] += 1
            continue
        decision, codes, note = _choice(case, reviewer, rng)
        store.decide(case["case_id"], reviewer.name, decision, codes, note, now=decided_at)
        done["decided"] += 1
        if case.get("requires_four_eyes"):
            second_at = decided_at + timedelta(minutes=rng.expovariate(1 / SENIOR.mean_minutes))
            agree = rng.random() < SENIOR.agreement
            second = decision if agree else ("decline" if decision == "approve" else "approve")
            second_codes = codes if second == decision else (["H05"] if second == "decline" else ["H03"])
            second_note = note if agree else "Second review disagrees with the first."
            try:
                store.decide(case["case_id"], SENIOR.name, second, second_codes or None, second_note, now=second_at)
                done["second_reviews"] += 1
            except ReviewError:
                pass
    return done
