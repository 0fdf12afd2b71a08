"""SIMULATION, for the demo only: underwriters working the review queue, so that the
analytics, monitoring and retraining downstream have human decisions to read.

The simulated reviewers use the real task API (``POST /api/tasks/{id}/claim`` and
``/decision`` with their own bearer tokens), in process, with a simulated clock so that the
decision times follow each case's creation. Deterministic for a seed. Each reviewer has a
habit: how often they follow the model's recommendation, how long they take; one approves
almost everything (the rubber-stamping the override monitoring is there to catch). Four-eyes
cases get a second review from a senior. The policy's expert queues are respected: a case goes
to a simulated underwriter whose role (or name) its queue admits, and a queue reserved for
senior underwriters (ineligibility checks, business lending) is worked by the simulated
seniors, two of them so that a four-eyes case there still gets two different people. Every
simulated decision carries the note prefix "[simulated]" and the reviewers' names are listed
below, so nobody mistakes them for people.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

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
SENIOR = SimulatedReviewer("sam", "senior_underwriter", 0.92, 25.0)  # second reviews of four-eyes cases
SENIORS = (SENIOR, SimulatedReviewer("sia", "senior_underwriter", 0.9, 40.0))


def _rng(seed: int, case_id: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{case_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


SIMULATION_NOTE = "[simulated]"


class _SimulatedClock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def _simulated_tokens(store: ReviewStore) -> dict[str, str]:
    """A fresh token per simulated reviewer (issuing one retires the old one)."""
    tokens: dict[str, str] = {}
    for reviewer in (*REVIEWERS, *SENIORS):
        try:
            store.get_user(reviewer.name)
            tokens[reviewer.name] = store.issue_token(reviewer.name, actor="demo-simulation")
        except ReviewError:
            tokens[reviewer.name] = store.add_user(reviewer.name, reviewer.role, actor="demo-simulation")[1]
    return tokens


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
    note = f"{SIMULATION_NOTE} agrees with the model" if follow else f"{SIMULATION_NOTE} the file shows more than the model saw"
    return decision, codes, note


def _pick(case_id: str, team: list[SimulatedReviewer]) -> SimulatedReviewer:
    return team[int(hashlib.sha256(case_id.encode()).hexdigest(), 16) % len(team)]


def simulate_reviews(
    store: ReviewStore,
    *,
    share: float = 0.7,
    seed: int = 7,
    info_share: float = 0.03,
    max_cases: int | None = None,
    policy: Any = None,
) -> dict[str, int]:
    """Decide about ``share`` of the open cases (the oldest ``max_cases`` at most) through the
    task API; returns counts of what was done. ``policy`` (default: the policy in force) is
    the review service's, whose expert queues decide who may work a case: each case goes to a
    simulated reviewer its queue admits (``no_reviewer`` counts the cases none of them may
    work), so no call is refused for the queue (``refused`` counts any refused call)."""
    from fastapi.testclient import TestClient

    from aios_pipelines.review.app import create_app

    clock = _SimulatedClock(datetime.now(timezone.utc))
    simulated_store = ReviewStore(store.url, clock=clock)
    tokens = _simulated_tokens(simulated_store)
    client = TestClient(create_app(simulated_store, clock=clock, policy=policy))
    rules = simulated_store.queues  # what the service enforces

    def admitted(team: tuple[SimulatedReviewer, ...], case: dict) -> list[SimulatedReviewer]:
        if rules is None:
            return list(team)
        return [r for r in team if rules.may_work(r.name, r.role, case.get("expert_queue"))]

    def call(reviewer: str, case_id: str, action: str, at: datetime, body: dict | None = None) -> int:
        clock.now = at
        response = client.post(
            f"/api/tasks/{case_id}/{action}", json=body, headers={"Authorization": f"Bearer {tokens[reviewer]}"}
        )
        return response.status_code

    done = {"decided": 0, "second_reviews": 0, "info_requested": 0, "left_open": 0, "refused": 0, "no_reviewer": 0}
    open_cases = sorted(
        simulated_store.list_cases(status="open", limit=1_000_000), key=lambda c: (c["application_date"], c["case_id"])
    )
    for case in open_cases[:max_cases]:
        rng = _rng(seed, case["case_id"])
        if rng.random() >= share:
            done["left_open"] += 1
            continue
        # an underwriter when the queue admits one, else a senior (queues reserved for seniors)
        team = admitted(REVIEWERS, case) or admitted(SENIORS, case)
        if not team:  # e.g. a queue worked only by named people outside the simulation
            done["no_reviewer"] += 1
            continue
        reviewer = _pick(case["case_id"], team)
        claimed_at = case["created_at"] + timedelta(minutes=rng.uniform(5, 360))
        if call(reviewer.name, case["case_id"], "claim", claimed_at) >= 300:
            done["refused"] += 1
            continue
        decided_at = claimed_at + timedelta(minutes=rng.expovariate(1 / reviewer.mean_minutes))
        if rng.random() < info_share:
            body = {"decision": "request_info", "reason_codes": [], "note": f"{SIMULATION_NOTE} payslips requested"}
            if call(reviewer.name, case["case_id"], "decision", decided_at, body) < 300:
                done["info_requested"] += 1
            else:
                done["refused"] += 1
            continue
        decision, codes, note = _choice(case, reviewer, rng)
        status = call(reviewer.name, case["case_id"], "decision", decided_at,
                      {"decision": decision, "reason_codes": codes, "note": note})
        if status >= 300:
            done["refused"] += 1
            continue
        done["decided"] += 1
        if case.get("requires_four_eyes"):
            # a different senior whom the queue admits (four eyes are two people)
            seniors = [r for r in admitted(SENIORS, case) if r.name != reviewer.name]
            if not seniors:
                done["no_reviewer"] += 1
                continue
            senior = seniors[0]
            second_at = decided_at + timedelta(minutes=rng.expovariate(1 / senior.mean_minutes))
            agree = rng.random() < senior.agreement
            second = decision if agree else ("decline" if decision == "approve" else "approve")
            second_codes = codes if second == decision else (["H05"] if second == "decline" else ["H03"])
            second_note = note if agree else f"{SIMULATION_NOTE} second review disagrees with the first"
            if call(senior.name, case["case_id"], "decision", second_at,
                    {"decision": second, "reason_codes": second_codes, "note": second_note}) < 300:
                done["second_reviews"] += 1
            else:
                done["refused"] += 1
    simulated_store.dispose()
    return done
