"""The review store: publishing, claims and races, decisions and their rules, four eyes,
overdue escalation, the decision feed, tokens, and the hash-chained audit log."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from aios_pipelines.policy.policy import load_policy
from aios_pipelines.review.publish import case_rows_from_scored, is_blind, recommendation_cutoff
from aios_pipelines.review.store import (
    ConflictError,
    PermissionDeniedError,
    ReviewStore,
    ReviewValidationError,
)
from aios_pipelines.settings import AiosPaths

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)


def case_row(application_id: str, **overrides):
    row = {
        "application_id": application_id,
        "application_date": "2026-06-01",
        "pd": 0.12,
        "amount": 20_000.0,
        "priority": "normal",
        "due_hours": 24,
        "requires_four_eyes": False,
        "score_band": "D",
        "model_version": "7",
        "policy_version": "2026.11.1",
        "policy_rule": "review:grey_zone",
        "model_recommendation": "approve",
        "reasons": [{"code": "R07", "text": "Credit bureau score is low", "feature": "bureau_score"}],
        "quality_flags": ["bureau_score: missing, the model used its learned default for it"],
        "applicant_summary": {"annual_income": 52_000.0, "purpose": "car"},
        "confidence": 0.4,
    }
    row.update(overrides)
    return row


# The backend-neutral tests run on SQLite and on PostgreSQL (a fresh database on the session's
# throwaway server, tests/conftest.py); the SQLite-file tests (WAL, file bytes, tampering) stay on SQLite.
USERS = [("ann", "underwriter"), ("bob", "underwriter"), ("sue", "senior_underwriter"), ("sam", "senior_underwriter"),
         ("sid", "senior_underwriter"), ("rita", "risk_analyst"), ("ada", "admin")]


def _with_users(store: ReviewStore) -> ReviewStore:
    for name, role in USERS:
        store.add_user(name, role)
    return store


@pytest.fixture()
def sqlite_store(tmp_path: Path) -> ReviewStore:
    store = _with_users(ReviewStore.for_paths(AiosPaths(tmp_path / "home"), clock=lambda: T0).create_all())
    yield store
    store.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ReviewStore:
    if request.param == "sqlite":
        store = ReviewStore.for_paths(AiosPaths(tmp_path / "home"), clock=lambda: T0)
    else:
        store = ReviewStore(request.getfixturevalue("postgres_url"), clock=lambda: T0)
        assert store.engine.dialect.name == "postgresql"
    store = _with_users(store.create_all())
    yield store
    store.dispose()


def one_case(store: ReviewStore, application_id: str = "A1", **overrides) -> str:
    assert store.publish_cases([case_row(application_id, **overrides)]) == 1
    return store.get_case_by_application(application_id)["case_id"]


def test_for_paths_uses_sqlite_in_wal_mode(sqlite_store: ReviewStore, tmp_path: Path):
    path = tmp_path / "home" / "review" / "review.sqlite"
    assert sqlite_store.url == f"sqlite:///{path.resolve().as_posix()}"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    sqlite_store.create_all()  # idempotent


def test_publish_is_idempotent_per_application(store: ReviewStore):
    rows = [case_row("A1"), case_row("A2"), case_row("A2", pd=0.3)]  # A2 twice in one batch: first wins
    assert store.publish_cases(rows) == 2
    assert store.publish_cases(rows) == 0
    assert store.publish_cases([case_row("A2"), case_row("A3")]) == 1
    assert len(store.list_cases()) == 3
    assert store.applications_with_cases(["A1", "A3", "A9", "A2"]) == {"A1", "A2", "A3"}
    case = store.get_case_by_application("A2")
    assert case["pd"] == 0.12 and case["status"] == "open" and case["source"] == "batch"
    assert case["due_at"] == T0 + timedelta(hours=24)
    assert case["reasons"][0]["code"] == "R07"
    created = [e for e in store.audit_entries(entity="case") if e["action"] == "case.created"]
    assert len(created) == 3


def test_publish_rejects_a_bad_row_naming_it(store: ReviewStore):
    with pytest.raises(ReviewValidationError, match=r"rows\[1\]: pd must lie in \[0, 1\]"):
        store.publish_cases([case_row("A1"), case_row("A2", pd=1.7)])
    assert store.list_cases() == []


def _race(n: int, target) -> list[object]:
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each racer got
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_racing_claims_give_one_owner(store: ReviewStore):
    case_id = one_case(store)
    racers = ["ann", "bob", "sue", "sam", "sid", "ada"]
    results = _race(len(racers), lambda i: store.claim(case_id, racers[i]))
    winners = [r for r in results if isinstance(r, dict)]
    losers = [r for r in results if isinstance(r, ConflictError)]
    assert len(winners) == 1 and len(losers) == len(racers) - 1, results
    assert store.get_case(case_id)["claimed_by"] == winners[0]["claimed_by"]
    events = store.case_history(case_id)["events"]
    assert [e["event_type"] for e in events].count("claimed") == 1


def test_racing_decisions_store_one(store: ReviewStore):
    case_id = one_case(store)
    racers = ["ann", "bob", "sue", "sam"]
    results = _race(len(racers), lambda i: store.decide(case_id, racers[i], "approve"))
    assert sum(not isinstance(r, Exception) for r in results) == 1, results
    assert sum(isinstance(r, ConflictError) for r in results) == len(racers) - 1
    assert len(store.case_history(case_id)["decisions"]) == 1
    assert store.get_case(case_id)["status"] == "decided"
    assert store.verify_audit_chain() == (True, None)


def test_claimed_case_belongs_to_its_claimer(store: ReviewStore):
    case_id = one_case(store)
    store.claim(case_id, "ann")
    with pytest.raises(ConflictError, match="claimed by ann"):
        store.decide(case_id, "bob", "approve")
    with pytest.raises(PermissionDeniedError):
        store.release(case_id, "bob")
    assert store.release(case_id, "ann")["status"] == "open"
    assert store.decide(case_id, "bob", "approve").case["final_decision"] == "approve"


def test_read_only_role_cannot_write(store: ReviewStore):
    case_id = one_case(store)
    with pytest.raises(PermissionDeniedError):
        store.claim(case_id, "rita")
    with pytest.raises(PermissionDeniedError):
        store.decide(case_id, "rita", "approve")


def test_decline_needs_a_reason_and_an_override_needs_a_note(store: ReviewStore):
    case_id = one_case(store, model_recommendation="approve")
    with pytest.raises(ReviewValidationError, match="at least one reason code"):
        store.decide(case_id, "ann", "decline", [], "looks weak")
    with pytest.raises(ReviewValidationError, match="reason codes and a note"):
        store.decide(case_id, "ann", "decline", ["H06"], None)
    assert store.get_case(case_id)["status"] == "open"  # refused decisions leave nothing behind
    outcome = store.decide(case_id, "ann", "decline", ["H06", "R07"], "affordability fails on payslips")
    assert outcome.decision["is_override"] and outcome.decision["override_direction"] == "high_side"
    assert outcome.decision["reason_codes"] == ["H06", "R07"]

    low_side = one_case(store, "A2", model_recommendation="decline")
    with pytest.raises(ReviewValidationError, match="reason codes and a note"):
        store.decide(low_side, "ann", "approve", ["H03"], "")
    assert store.decide(low_side, "ann", "approve", ["H03"], "guarantor").decision["override_direction"] == "low_side"


def test_blind_review_overrides_need_no_note_but_are_recorded(store: ReviewStore):
    case_id = one_case(store, model_recommendation="decline", blind_review=True)
    outcome = store.decide(case_id, "ann", "approve")
    assert outcome.decision["is_override"] and outcome.decision["override_direction"] == "low_side"


def test_request_info_waits_then_returns_to_the_queue(store: ReviewStore):
    case_id = one_case(store)
    outcome = store.decide(case_id, "ann", "request_info", note="latest payslip")
    assert outcome.case["status"] == "waiting_info" and outcome.case["claimed_by"] is None
    with pytest.raises(ConflictError, match="waiting for information"):
        store.decide(case_id, "ann", "approve")
    assert store.return_info(case_id, "ann", "payslip received")["status"] == "open"
    with pytest.raises(ConflictError):
        store.return_info(case_id, "ann")
    assert store.decide(case_id, "bob", "approve").case["status"] == "decided"
    kinds = [e["event_type"] for e in store.case_history(case_id)["events"]]
    assert kinds == ["created", "claimed", "info_requested", "info_returned", "claimed", "decided"]


def test_four_eyes_needs_a_different_senior_and_agreement_finalises(store: ReviewStore):
    case_id = one_case(store, amount=80_000.0, requires_four_eyes=True)
    first = store.decide(case_id, "sue", "approve")
    assert first.case["status"] == "awaiting_second_review" and first.decision["stage"] == "first"
    assert not first.decision["is_final"] and first.case["final_decision"] is None
    with pytest.raises(PermissionDeniedError, match="different reviewer"):
        store.decide(case_id, "sue", "approve")
    with pytest.raises(PermissionDeniedError, match="senior underwriter"):
        store.decide(case_id, "ann", "approve")
    with pytest.raises(PermissionDeniedError):
        store.claim(case_id, "sue")
    second = store.decide(case_id, "sam", "approve")
    assert second.case["status"] == "decided" and second.case["final_decision"] == "approve"
    assert second.decision["stage"] == "second" and second.decision["is_final"]


def test_four_eyes_disagreement_escalates_and_a_third_senior_settles(store: ReviewStore):
    # no model score: only the four-eyes rule asks for a note here
    case_id = one_case(store, amount=80_000.0, requires_four_eyes=True, pd=None, model_recommendation=None)
    store.decide(case_id, "ann", "approve")
    with pytest.raises(ReviewValidationError, match="needs a note"):
        store.decide(case_id, "sam", "decline", ["H01"])
    escalated = store.decide(case_id, "sam", "decline", ["H01"], "income not verified")
    assert escalated.case["status"] == "escalated" and escalated.case["queue"] == "escalation"
    assert escalated.case["final_decision"] is None
    for earlier in ("ann", "sam"):
        with pytest.raises(PermissionDeniedError):
            store.decide(case_id, earlier, "approve")
    with pytest.raises(PermissionDeniedError):
        store.decide(case_id, "bob", "approve")  # an underwriter cannot work escalations
    settled = store.decide(case_id, "sid", "decline", ["H01"], "agree: income not verified")
    assert settled.case["status"] == "decided" and settled.decision["stage"] == "final"
    assert [d["stage"] for d in store.case_history(case_id)["decisions"]] == ["first", "second", "final"]


def test_overdue_cases_escalate_once(store: ReviewStore):
    late = one_case(store, "A1", due_hours=1)
    late_claimed = one_case(store, "A2", due_hours=2)
    waiting = one_case(store, "A3", due_hours=1)
    on_time = one_case(store, "A4", due_hours=48)
    done = one_case(store, "A5", due_hours=1)
    store.claim(late_claimed, "ann")
    store.decide(waiting, "ann", "request_info", note="bank statement")
    store.decide(done, "bob", "approve")
    later = T0 + timedelta(hours=5)
    assert {c["case_id"] for c in store.list_cases(overdue=True, now=later)} == {late, late_claimed, waiting}
    escalated = store.escalate_overdue(later)
    assert sorted(escalated) == sorted([late, late_claimed])
    assert store.get_case(late_claimed)["claimed_by"] is None
    assert {store.get_case(c)["status"] for c in (late, late_claimed)} == {"escalated"}
    assert store.get_case(on_time)["status"] == "open"
    assert store.escalate_overdue(later) == []
    logged = [e["entity_id"] for e in store.audit_entries(entity="case") if e["action"] == "case.escalated"]
    assert sorted(logged) == sorted(escalated)
    # an escalated four-eyes-free case is settled by one senior
    assert store.decide(late, "sue", "approve").case["status"] == "decided"


def test_decisions_since_is_an_increasing_cursor(store: ReviewStore):
    a, b, c = (one_case(store, f"A{i}") for i in range(3))
    store.decide(a, "ann", "approve")
    store.decide(b, "bob", "request_info", note="id card")
    first = store.decisions_since(0)
    assert [d["case_id"] for d in first] == [a, b]
    assert first[0]["seq"] < first[1]["seq"]
    assert first[0]["application_id"] == "A0" and first[0]["model_recommendation"] == "approve"
    cursor = first[-1]["seq"]
    assert store.decisions_since(cursor) == []
    store.decide(c, "ann", "approve")
    newer = store.decisions_since(cursor)
    assert [d["case_id"] for d in newer] == [c] and newer[0]["seq"] > cursor
    assert [d["seq"] for d in store.decisions_since(0, limit=2)] == [d["seq"] for d in first]


def test_tokens_are_stored_only_as_hashes(sqlite_store: ReviewStore, tmp_path: Path):
    user, token = sqlite_store.add_user("tom", "underwriter")
    assert sqlite_store.authenticate(token).name == "tom"
    assert sqlite_store.authenticate(user.token_hash) is None
    assert sqlite_store.authenticate("aios_" + "x" * 43) is None
    with pytest.raises(ConflictError):
        sqlite_store.add_user("tom", "admin")
    sqlite_store.dispose()  # close the connections: everything is in the files now
    folder = tmp_path / "home" / "review"
    data = b"".join(p.read_bytes() for p in folder.iterdir() if p.is_file())
    assert user.token_hash.encode() in data  # the hash is there ...
    assert token.encode() not in data  # ... the token is not


def test_audit_chain_verifies_and_appends_in_order(store: ReviewStore):
    case_id = one_case(store)
    store.decide(case_id, "ann", "approve")
    ok, bad = store.verify_audit_chain()
    assert ok and bad is None
    entries = store.audit_entries()
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert entries[0]["prev_hash"] == "0" * 64
    assert all(e["prev_hash"] == p["entry_hash"] for p, e in zip(entries, entries[1:]))
    assert [e["action"] for e in entries[-3:]] == ["case.created", "case.claimed", "decision.recorded"]
    head = store.audit_head()
    assert store.verify_audit_chain(anchor=head) == (True, None)


def _tamper(store: ReviewStore, sql: str, *params) -> None:
    """Change the audit log the way someone with the database file could (triggers dropped)."""
    path = store.engine.url.database
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("DROP TRIGGER audit_log_no_delete")
        conn.execute(sql, params)


def test_audit_log_refuses_updates_and_deletes(sqlite_store: ReviewStore):
    sqlite_store.decide(one_case(sqlite_store), "ann", "approve")
    with sqlite3.connect(sqlite_store.engine.url.database) as conn:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit_log WHERE seq = 1")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE decisions SET decision = 'approve'")


@pytest.fixture()
def parallel_verification(monkeypatch):
    """Split every chain verification across two processes, however short the chain, and
    count the joins (the split happens in this process)."""
    import aios_pipelines.review.store as store_module

    joins = []
    join = store_module.audit.join_segments
    monkeypatch.setattr(store_module, "PARALLEL_VERIFY_MIN_ENTRIES", 2)
    monkeypatch.setattr(store_module.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(store_module.audit, "join_segments", lambda *a: joins.append(1) or join(*a))
    return joins


def test_audit_chain_verified_in_two_processes_on_both_engines(store: ReviewStore, parallel_verification):
    for i in range(3):
        store.decide(one_case(store, f"A{i}"), "ann", "approve")
    head = store.audit_head()
    assert store.verify_audit_chain(anchor=head) == (True, None)
    middle = store.audit_entries()[5]
    assert store.verify_audit_chain_from((middle["seq"], middle["entry_hash"])) == (True, None, head)
    assert len(parallel_verification) == 2


def test_audit_chain_verified_in_process_when_the_processes_fail(sqlite_store, parallel_verification, monkeypatch,
                                                                  caplog):
    import aios_pipelines.review.store as store_module
    from concurrent.futures.process import BrokenProcessPool

    class Broken:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def map(self, *args):
            raise BrokenProcessPool("a child died")

    sqlite_store.decide(one_case(sqlite_store), "ann", "approve")
    monkeypatch.setattr(store_module, "ProcessPoolExecutor", Broken)
    with caplog.at_level("WARNING"):
        assert sqlite_store.verify_audit_chain() == (True, None)
    assert "verified in one process" in caplog.text and not parallel_verification
    _tamper(sqlite_store, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    assert sqlite_store.verify_audit_chain() == (False, 3)


@pytest.mark.parametrize("parallel", [False, True], ids=["one-process", "two-processes"])
@pytest.mark.parametrize("tampering", ["edit_payload", "delete_row", "swap_rows", "cut_tail"])
def test_audit_chain_detects_tampering(sqlite_store: ReviewStore, tampering: str, parallel: bool, request):
    joins = request.getfixturevalue("parallel_verification") if parallel else None
    case_id = one_case(sqlite_store)
    sqlite_store.decide(case_id, "ann", "decline", ["R07"], "override: bureau data outdated")
    entries = sqlite_store.audit_entries()
    assert len(entries) >= 8
    head = sqlite_store.audit_head()
    target = 8  # the case's creation entry, after the 7 users
    assert entries[target - 1]["action"] == "case.created"
    if tampering == "edit_payload":
        _tamper(sqlite_store, "UPDATE audit_log SET payload = json_set(payload, '$.pd', 0.01) WHERE seq = ?", target)
        expected = target
    elif tampering == "delete_row":
        _tamper(sqlite_store, "DELETE FROM audit_log WHERE seq = ?", target)
        expected = target + 1
    elif tampering == "swap_rows":
        a, b = entries[target - 1], entries[target]
        _tamper(sqlite_store, "UPDATE audit_log SET seq = -1 WHERE seq = ?", a["seq"])
        with sqlite3.connect(sqlite_store.engine.url.database) as conn:
            conn.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", (a["seq"], b["seq"]))
            conn.execute("UPDATE audit_log SET seq = ? WHERE seq = -1", (b["seq"],))
        expected = target
    else:
        _tamper(sqlite_store, "DELETE FROM audit_log WHERE seq = ?", head[0])
        assert sqlite_store.verify_audit_chain() == (True, None)  # a shorter chain is still a chain ...
        assert sqlite_store.verify_audit_chain(anchor=head) == (False, head[0])  # ... the saved head catches it
        return
    assert sqlite_store.verify_audit_chain() == (False, expected)
    assert sqlite_store.verify_audit_chain_from((1, entries[0]["entry_hash"]))[:2] == (False, expected)
    assert joins is None or len(joins) == 2


def _count_decoded_payloads(monkeypatch) -> list[int]:
    """Count the entries whose stored payload text had to be decoded and re-encoded to verify."""
    import aios_pipelines.review.audit as audit_module

    decoded = []
    slow = audit_module.entry_hash
    monkeypatch.setattr(audit_module, "entry_hash", lambda prev, seq, *a: decoded.append(seq) or slow(prev, seq, *a))
    return decoded


def test_audit_payloads_are_stored_canonical_and_verified_as_stored(store: ReviewStore, monkeypatch):
    import json

    from aios_pipelines.review import audit as audit_module

    case_id = one_case(store, applicant_summary={"name": "Zoë Ångström", "purpose": "car"})
    store.decide(case_id, "ann", "decline", ["R07"], "Überprüft – Auskunft veraltet")
    entries = store.audit_entries()
    with store._read() as conn:
        stored = [text for (text,) in conn.exec_driver_sql("SELECT CAST(payload AS TEXT) FROM audit_log ORDER BY seq")]
    # what the store holds is the chain's canonical text (compact, sorted, UTF-8), entry by entry
    assert stored == [audit_module.canonical_json(e["payload"]) for e in entries]
    assert any("Überprüft" in text for text in stored)
    decoded = _count_decoded_payloads(monkeypatch)
    assert store.verify_audit_chain() == (True, None)
    assert decoded == []  # every entry's stored text hashed as it is
    assert json.loads(stored[-1]) == entries[-1]["payload"]


def test_a_store_written_with_spaced_json_still_verifies(sqlite_store: ReviewStore, monkeypatch):
    import json

    case_id = one_case(sqlite_store)
    sqlite_store.decide(case_id, "ann", "approve", note="Zoë checked")
    entries = sqlite_store.audit_entries()
    # the text an older store wrote (sorted keys, default separators, ASCII escapes)
    _tamper(sqlite_store, "SELECT 1")  # drops the append-only triggers
    with sqlite3.connect(sqlite_store.engine.url.database) as conn:
        conn.executemany("UPDATE audit_log SET payload = ? WHERE seq = ?",
                         [(json.dumps(e["payload"], sort_keys=True), e["seq"]) for e in entries])
    decoded = _count_decoded_payloads(monkeypatch)
    assert sqlite_store.verify_audit_chain() == (True, None)
    assert decoded == [e["seq"] for e in entries]  # each decoded once, none refused
    assert sqlite_store.audit_entries() == entries


@pytest.mark.parametrize("edit", ["bytes_moved_from_entity_id", "not_json", "edited_text", "edited_time"])
def test_stored_text_cannot_hide_an_edit(sqlite_store: ReviewStore, edit: str):
    case_id = one_case(sqlite_store)
    sqlite_store.decide(case_id, "ann", "approve")
    target = 8  # the case's creation entry, after the 7 users
    entry = sqlite_store.audit_entries()[target - 1]
    assert entry["action"] == "case.created" and entry["entity_id"] == case_id
    with sqlite3.connect(sqlite_store.engine.url.database) as conn:
        text = conn.execute("SELECT payload FROM audit_log WHERE seq = ?", (target,)).fetchone()[0]
    if edit == "bytes_moved_from_entity_id":
        # the raw fields concatenate to the same characters: the entity id's last character
        # moved to the front of the payload text
        _tamper(sqlite_store, "UPDATE audit_log SET entity_id = ?, payload = ? WHERE seq = ?",
                case_id[:-1], case_id[-1] + text, target)
    elif edit == "not_json":
        _tamper(sqlite_store, "UPDATE audit_log SET payload = ? WHERE seq = ?", text[:-1], target)
    elif edit == "edited_text":
        assert '"priority":"normal"' in text
        _tamper(sqlite_store, "UPDATE audit_log SET payload = ? WHERE seq = ?",
                text.replace('"priority":"normal"', '"priority":"high"'), target)
    else:
        _tamper(sqlite_store, "UPDATE audit_log SET at = '2026-06-01 08:59:59.000000' WHERE seq = ?", target)
    assert sqlite_store.verify_audit_chain() == (False, target)


def test_case_rows_from_scored_keeps_review_rows_only():
    policy = load_policy()
    scored = [
        {"application_id": "A1", "application_date": "2026-06-01", "pd": 0.08, "score_band": "C", "model_version": "3",
         "confidence": 0.5, "reason_features": ["bureau_score"], "reason_codes": ["R07"],
         "reason_texts": ["Credit bureau score is low"], "quality_flags": [], "action": "review",
         "policy_rule": "review:grey_zone", "policy_hard_rule": None, "requires_four_eyes": True,
         "review_priority": "high", "review_due_hours": 24, "policy_version": policy.version},
        {"application_id": "A2", "pd": 0.01, "action": "auto_approve"},
        {"application_id": "A3", "pd": 0.02, "action": "review", "policy_rule": "automation_paused",
         "policy_hard_rule": "min_income", "reason_codes": [], "reason_texts": [], "reason_features": []},
    ]
    applications = {"A1": {"application_id": "A1", "loan_amount": 60_000.0, "purpose": "car", "landing_date": "x"}}
    rows = case_rows_from_scored(scored, applications, policy=policy, blind_share=0.0)
    assert [r["application_id"] for r in rows] == ["A1", "A3"]
    a1, a3 = rows
    assert a1["amount"] == 60_000.0 and a1["applicant_summary"] == {"loan_amount": 60_000.0, "purpose": "car"}
    assert a1["reasons"] == [{"code": "R07", "text": "Credit bureau score is low", "feature": "bureau_score"}]
    assert a1["model_recommendation"] == "approve" and a1["priority"] == "high" and a1["requires_four_eyes"]
    assert a3["model_recommendation"] == "decline"  # a hard rule held while automation was paused
    assert 0.04 < recommendation_cutoff(policy) < 0.35
    shares = sum(is_blind(f"APP-{i}", 0.1) for i in range(2000)) / 2000
    assert 0.07 < shares < 0.13 and is_blind("APP-1", 0.1) == is_blind("APP-1", 0.1)


def _scored_frame(n: int, policy, *, bad_pd_at: int | None = None):
    """``scored_applications`` rows (n review rows, one auto-approved) and their raw applications."""
    import polars as pl

    scored = pl.DataFrame({
        "application_id": [f"A{i:04d}" for i in range(n)] + ["AUTO"],
        "application_date": ["2026-06-01"] * (n + 1),
        "pd": [1.7 if i == bad_pd_at else 0.05 + 0.2 * i / n for i in range(n)] + [0.01],
        "score_band": ["D"] * (n + 1),
        "model_version": ["7"] * (n + 1),
        "confidence": [0.4] * (n + 1),
        "reason_codes": [["R07"]] * (n + 1),
        "reason_texts": [["Credit bureau score is low"]] * (n + 1),
        "reason_features": [["bureau_score"]] * (n + 1),
        "quality_flags": [[]] * (n + 1),
        "action": ["review"] * n + ["auto_approve"],
        "policy_rule": ["review:grey_zone"] * (n + 1),
        "policy_hard_rule": [None] * (n + 1),
        "requires_four_eyes": [i % 3 == 0 for i in range(n + 1)],
        "review_priority": ["normal"] * (n + 1),
        "review_due_hours": [24] * (n + 1),
        "policy_version": [policy.version] * (n + 1),
    }, schema_overrides={"policy_hard_rule": pl.String, "quality_flags": pl.List(pl.String)})
    applications = pl.DataFrame({
        "application_id": [f"A{i:04d}" for i in range(n)][::-1],  # not in the scored order
        "loan_amount": [1_000.0 * (i + 1) for i in range(n)][::-1],
        "purpose": ["car"] * n,
        "landing_date": ["2026-06-01"] * n,
    })
    return scored, applications


def _comparable_cases(store: ReviewStore) -> list[dict]:
    volatile = {"case_id", "created_at", "updated_at", "due_at"}
    return sorted(({k: v for k, v in c.items() if k not in volatile} for c in store.list_cases(limit=10_000)),
                  key=lambda c: c["application_id"])


def test_publishing_in_batches_gives_the_cases_of_one_publish(store: ReviewStore, tmp_path: Path):
    from aios_pipelines.review.publish import publish_scored_in_batches

    policy = load_policy()
    scored, applications = _scored_frame(23, policy)
    summary = publish_scored_in_batches(store, scored, applications, id_column="application_id", policy=policy,
                                        actor="pipeline", batch_size=5)
    assert (summary.routed_to_review, summary.newly_published, summary.batches) == (23, 23, 5)
    assert summary.four_eyes_cases == 8 and list(summary.application_ids) == [f"A{i:04d}" for i in range(23)]
    assert store.publish_cases([]) == 0

    one_shot = _with_users(ReviewStore.for_paths(AiosPaths(tmp_path / "one_shot"), clock=lambda: T0).create_all())
    by_id = {r["application_id"]: r for r in applications.iter_rows(named=True)}
    assert one_shot.publish_cases(case_rows_from_scored(scored.to_dicts(), by_id, policy=policy)) == 23
    assert _comparable_cases(store) == _comparable_cases(one_shot)
    assert _comparable_cases(store)[4]["applicant_summary"] == {"loan_amount": 5_000.0, "purpose": "car"}
    one_shot.dispose()

    again = publish_scored_in_batches(store, scored, applications, id_column="application_id", policy=policy,
                                      actor="pipeline", batch_size=7)
    assert (again.routed_to_review, again.newly_published, again.already_in_store) == (23, 0, 23)
    assert len(store.list_cases(limit=10_000)) == 23 and store.verify_audit_chain() == (True, None)


def test_a_bad_row_stops_publishing_at_its_batch_and_a_rerun_completes_the_day(store: ReviewStore):
    from aios_pipelines.review.publish import publish_scored_in_batches

    policy = load_policy()
    scored, applications = _scored_frame(12, policy, bad_pd_at=7)
    with pytest.raises(ReviewValidationError, match=r"batch 2 of the review rows \(the day's rows 5\.\.9.*"
                                                    r"5 cases were published.*rows\[2\]: pd must lie in \[0, 1\]"):
        publish_scored_in_batches(store, scored, applications, id_column="application_id", policy=policy,
                                  actor="pipeline", batch_size=5)
    assert sorted(c["application_id"] for c in store.list_cases()) == [f"A{i:04d}" for i in range(5)]

    fixed, _ = _scored_frame(12, policy)
    summary = publish_scored_in_batches(store, fixed, applications, id_column="application_id", policy=policy,
                                        actor="pipeline", batch_size=5)
    assert (summary.newly_published, summary.already_in_store) == (7, 5)
    assert sorted(c["application_id"] for c in store.list_cases()) == [f"A{i:04d}" for i in range(12)]
    created = [e for e in store.audit_entries(entity="case") if e["action"] == "case.created"]
    assert len(created) == 12 and store.verify_audit_chain() == (True, None)


def test_reviewers_decide_published_cases_while_later_batches_are_still_publishing(sqlite_store: ReviewStore):
    """Each batch commits on its own: the store's write lock is free between batches, so a
    reviewer (another connection, as the review service is) decides the first batch's cases
    before the day is fully published."""
    from aios_pipelines.review.publish import publish_scored_in_batches

    policy = load_policy()
    scored, applications = _scored_frame(9, policy)
    reviewer = ReviewStore(sqlite_store.url, clock=lambda: T0)
    decided: list[tuple[str, int]] = []

    class BetweenBatches:
        def publish_cases(self, rows, *, actor):
            published = sqlite_store.publish_cases(rows, actor=actor)
            case = reviewer.get_case_by_application(rows[0]["application_id"])
            agreed = case["model_recommendation"]
            outcome = reviewer.decide(case["case_id"], "sue", agreed, reason_codes=["R07"] if agreed == "decline" else None)
            decided.append((case["application_id"], len(reviewer.list_cases(limit=100))))
            assert outcome is not None
            return published

    summary = publish_scored_in_batches(BetweenBatches(), scored, applications, id_column="application_id",
                                        policy=policy, actor="pipeline", batch_size=4)
    assert summary.batches == 3 and decided == [("A0000", 4), ("A0004", 8), ("A0008", 9)]
    assert len(sqlite_store.decisions_since(0)) == 3
    reviewer.dispose()


def test_the_copy_reads_events_and_cases_as_stored_equal_to_the_decoded_reads(store: ReviewStore):
    """The warehouse copy reads times as naive UTC and event details as the stored JSON text
    (no decoding): each must equal the decoded read, the text in canonical form."""
    from aios_pipelines.review.audit import canonical_json
    from aios_pipelines.review.warehouse_copy import CASE_COPY_COLUMNS, EVENT_COPY_COLUMNS

    later = T0 + timedelta(hours=3, microseconds=250)
    case_id = one_case(store, "A1", applicant_summary={"zeta": "Prüfung ✓", "alpha": {"b": 1, "a": [2, 1]}})
    one_case(store, "A2")
    store.claim(case_id, "ann", now=later)
    store.decide(case_id, "ann", "approve", note="geprüft — ok", now=later + timedelta(minutes=5))

    decoded = store.events_since(0, limit=100)
    as_stored = store.event_columns(EVENT_COPY_COLUMNS, 0, limit=100)
    assert len(as_stored) == len(decoded) >= 4
    for row, event in zip(as_stored, decoded):
        values = dict(zip(EVENT_COPY_COLUMNS, row))
        assert values["at"].tzinfo is None and values["at"] == event["at"].astimezone(timezone.utc).replace(tzinfo=None)
        assert values["details"] == canonical_json(event["details"])
        assert {k: values[k] for k in ("event_id", "case_id", "event_type", "actor")} == {
            k: event[k] for k in ("event_id", "case_id", "event_type", "actor")}
    assert [r[0] for r in store.event_columns(EVENT_COPY_COLUMNS, decoded[1]["event_id"], limit=2)] == [
        e["event_id"] for e in decoded[2:4]]

    by_id = {c["case_id"]: c for c in store.all_cases()}
    for row in store.case_columns(CASE_COPY_COLUMNS):
        values = dict(zip(CASE_COPY_COLUMNS, row))
        case = by_id[values["case_id"]]
        for name in ("created_at", "due_at", "decided_at"):
            expected = case[name].astimezone(timezone.utc).replace(tzinfo=None) if case[name] else None
            assert values[name] == expected and (values[name] is None or values[name].tzinfo is None)
    assert by_id[case_id]["decided_at"] is not None
