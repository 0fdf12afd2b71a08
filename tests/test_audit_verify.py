"""`aios audit verify` catches an edited, deleted, reordered, truncated or rewritten log."""

from __future__ import annotations

import sqlite3
from datetime import date

import pytest

from aios_pipelines import cli
from aios_pipelines.review import audit
from aios_pipelines.review.checkpoints import Checkpoint, checkpoint_row, verify_audit
from aios_pipelines.review.store import ReviewStore
from aios_pipelines.settings import AiosPaths
from aios_pipelines.storage.warehouse import Warehouse

import polars as pl


def _case(i: int) -> dict:
    return {"application_id": f"APP-{i}", "application_date": date(2026, 3, 2), "priority": "normal",
            "due_hours": 48, "requires_four_eyes": False, "pd": 0.1, "model_recommendation": "approve",
            "blind_review": False, "reasons": [], "quality_flags": [], "applicant_summary": {}, "source": "batch"}


@pytest.fixture()
def store(aios_paths: AiosPaths) -> ReviewStore:
    store = ReviewStore.for_paths(aios_paths).create_all()
    store.add_user("ana", "underwriter")
    store.publish_cases([_case(i) for i in range(6)])
    for case in store.list_cases(status="open")[:3]:
        store.decide(case["case_id"], "ana", "approve")
    return store


def _record_checkpoint(paths: AiosPaths, store: ReviewStore) -> None:
    row = checkpoint_row(store, "2026-03-02 23:55:00")
    Warehouse(paths.warehouse).sync_tables(upsert={"audit_checkpoints": (pl.DataFrame([row]).with_columns(
        pl.col("first_bad_seq").cast(pl.Int64)), "recorded_at")})


def _sql(paths: AiosPaths, *statements: str) -> None:
    """An attacker with write access to the file: drop the append-only triggers, then tamper."""
    con = sqlite3.connect(paths.review_store)
    triggers = [r[0] for r in con.execute("select name from sqlite_master where type = 'trigger'")]
    for name in triggers:
        con.execute(f"drop trigger {name}")
    for statement in statements:
        con.execute(statement)
    con.commit()
    con.close()


def _verify(capsys) -> tuple[int, str]:
    code = cli.main(["audit", "verify"])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_an_honest_log_verifies(store, aios_paths, capsys):
    _record_checkpoint(aios_paths, store)
    code, text = _verify(capsys)
    assert code == 0 and "checked against 1 checkpoint" in text


def test_an_edited_entry_is_named(store, aios_paths, capsys):
    _sql(aios_paths, "update audit_log set payload = '{\"decision\": \"decline\"}' where seq = 5")
    code, text = _verify(capsys)
    assert code == 1 and "first bad entry: 5" in text


def test_a_deleted_entry_is_caught(store, aios_paths, capsys):
    _sql(aios_paths, "delete from audit_log where seq = 4")
    code, text = _verify(capsys)
    assert code == 1 and "first bad entry: 5" in text


def test_reordered_entries_are_caught(store, aios_paths, capsys):
    _sql(aios_paths,
         "update audit_log set seq = -1 where seq = 3",
         "update audit_log set seq = 3 where seq = 4",
         "update audit_log set seq = 4 where seq = -1")
    code, text = _verify(capsys)
    assert code == 1 and "first bad entry: 3" in text


def test_a_truncated_tail_is_caught_only_by_the_checkpoint(store, aios_paths, capsys):
    _record_checkpoint(aios_paths, store)
    head = store.audit_head()[0]
    _sql(aios_paths, f"delete from audit_log where seq >= {head - 1}")
    assert store.verify_audit_chain() == (True, None)  # the shorter chain is self-consistent
    code, text = _verify(capsys)
    assert code == 1 and "truncated" in text


def test_a_rewritten_chain_is_caught_by_the_checkpoint(store, aios_paths):
    checkpoint = checkpoint_row(store, "2026-03-02 23:55:00")
    # rewrite every hash after changing an early payload, so the chain verifies on its own
    entries = store.audit_entries(after_seq=0, limit=1000)
    con = sqlite3.connect(aios_paths.review_store)
    for name in [r[0] for r in con.execute("select name from sqlite_master where type = 'trigger'")]:
        con.execute(f"drop trigger {name}")
    prev = "0" * 64
    for entry in entries:
        payload = dict(entry["payload"])
        if entry["seq"] == 2:
            payload["role"] = "admin"
        new_hash = audit.entry_hash(prev, entry["seq"], entry["at"], entry["actor"], entry["action"],
                                    entry["entity"], str(entry["entity_id"]), payload)
        con.execute("update audit_log set payload = ?, prev_hash = ?, entry_hash = ? where seq = ?",
                    (audit.canonical_json(payload), prev, new_hash, entry["seq"]))
        prev = new_hash
    con.commit()
    con.close()
    assert store.verify_audit_chain() == (True, None)
    report = verify_audit(store, [Checkpoint(checkpoint["head_seq"], checkpoint["head_hash"], "yesterday")])
    assert not report.ok and "rewritten" in report.problems[0]


def test_checkpoints_recorded_in_dagsters_event_log_are_read(aios_paths):
    """`aios audit verify` reads the audit_checkpoint materializations page by page (Dagster
    refuses more than 10,000 records per call)."""
    import dagster as dg

    from aios_pipelines.defs.instance import dagster_home, get_instance

    instance = get_instance(aios_paths)
    assert (dagster_home(aios_paths) / "history").exists()
    for seq in (3, 7):
        instance.report_runless_asset_event(dg.AssetMaterialization(
            "audit_checkpoint", metadata={"head_seq": seq, "head_hash": f"h{seq}", "chain_verified": True}))
    found = cli._recorded_checkpoints(aios_paths)
    assert sorted((c.seq, c.head_hash) for c in found if c.source.startswith("dagster")) == [(3, "h3"), (7, "h7")]
