"""The demo's simulated underwriters work every expert queue through the task API: a queue
reserved for senior underwriters goes to the simulated seniors, nobody is refused."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from aios_pipelines.policy.policy import load_policy
from aios_pipelines.review.store import ReviewStore
from aios_pipelines.synthetic.reviewers import REVIEWERS, SENIORS, simulate_reviews

DAY = date(2026, 6, 1)
# application, expert queue, four eyes
CASES = [
    ("APP-BIZ-1", "business_lending", False),
    ("APP-BIZ-2", "business_lending", True),  # senior-only and four eyes: two different seniors
    ("APP-INEL-1", "ineligibility_checks", False),
    ("APP-LARGE-1", "large_loans", True),
    ("APP-GEN-1", "general", False),
    ("APP-GEN-2", "general", False),
    ("APP-OUT-1", "model_outage", False),
]


@pytest.fixture()
def store(tmp_path: Path):
    store = ReviewStore(f"sqlite:///{tmp_path / 'review.sqlite'}").create_all()
    store.publish_cases(
        [{"application_id": app, "application_date": DAY, "priority": "normal", "due_hours": 48,
          "requires_four_eyes": four_eyes, "pd": 0.12, "model_recommendation": "decline", "blind_review": False,
          "reasons": [{"code": "R07", "text": "Credit bureau score is low", "feature": "bureau_score"}],
          "quality_flags": [], "applicant_summary": {}, "source": "batch", "expert_queue": queue}
         for app, queue, four_eyes in CASES],
        now=datetime(2026, 6, 1, 9, tzinfo=timezone.utc) - timedelta(days=1),
    )
    yield store
    store.dispose()


def test_senior_only_queues_are_worked_by_simulated_seniors_and_nobody_is_refused(store):
    policy = load_policy()
    senior_only = {q.id for q in policy.queues.declared if tuple(q.roles) == ("senior_underwriter",)}
    assert {"business_lending", "ineligibility_checks"} <= senior_only  # what this test is about

    done = simulate_reviews(store, share=1.0, info_share=0.0, policy=policy)

    assert done["refused"] == 0 and done["no_reviewer"] == 0 and done["left_open"] == 0
    assert done["decided"] == len(CASES) and done["second_reviews"] == 2
    by_case = {c["case_id"]: c for c in store.all_cases()}
    assert all(c["status"] in ("decided", "escalated") for c in by_case.values())  # none left open
    decisions: dict[str, list[dict]] = {}
    for d in store.decisions_since(0):
        decisions.setdefault(by_case[d["case_id"]]["application_id"], []).append(d)
    assert set(decisions) == {app for app, _, _ in CASES}

    seniors = {r.name for r in SENIORS}
    underwriters = {r.name for r in REVIEWERS}
    for app, queue, four_eyes in CASES:
        made = sorted(decisions[app], key=lambda d: d["seq"])
        assert len(made) == (2 if four_eyes else 1), app
        assert all(d["note"].startswith("[simulated]") for d in made)
        first = made[0]
        if queue in senior_only:
            assert first["reviewer"] in seniors and first["reviewer_role"] == "senior_underwriter", app
        else:  # queues underwriters may work keep going to the underwriters
            assert first["reviewer"] in underwriters, app
        if four_eyes:
            second = made[1]
            assert second["reviewer"] in seniors and second["reviewer"] != first["reviewer"], app
    # the senior-only four-eyes case: both seniors, one each
    assert {d["reviewer"] for d in decisions["APP-BIZ-2"]} == seniors

