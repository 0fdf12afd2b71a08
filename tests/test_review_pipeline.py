"""The pipeline's side of the review plane: publish referrals once, copy decisions out once."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import polars as pl
import pytest

from aios_pipelines.defs.resources import (
    LandingResource,
    PolicyResource,
    ReviewStoreResource,
    WarehouseResource,
)
from aios_pipelines.defs.review.assets import (
    review_copies,
    review_decisions_sensor,
    review_queue,
    sweep_review_slas,
)
from aios_pipelines.policy.policy import DEFAULT_POLICY_PATH
from aios_pipelines.review.store import ReviewStore
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH, AiosPaths
from aios_pipelines.storage.warehouse import Warehouse
from aios_pipelines.synthetic.generator import generate_applications

DAY = date(2026, 3, 2)


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture()
def home(tmp_path) -> AiosPaths:
    """A warehouse with one day of applications and a hand-made scoring of them."""
    paths = AiosPaths(tmp_path / "home").ensure()
    applications, _ = generate_applications(DAY, 60, seed=5)
    applications = applications.with_columns(pl.lit(DAY).alias("landing_date"))
    n = applications.height
    scored = pl.DataFrame(
        {
            "application_id": applications["application_id"],
            "application_date": [DAY] * n,
            "pd": [0.02 + 0.3 * (i % 10) / 10 for i in range(n)],
            "score_band": ["C"] * n,
            "model_version": ["1"] * n,
            "decision_source": ["model"] * n,
            "confidence": [0.5] * n,
            "reason_features": [["bureau_score"]] * n,
            "reason_codes": [["R07"]] * n,
            "reason_texts": [["Credit bureau score is low"]] * n,
            "quality_flags": [[]] * n,
            "action": ["review" if i % 3 else "auto_approve" for i in range(n)],
            "policy_rule": ["review:grey_zone"] * n,
            "policy_hard_rule": [None] * n,
            "requires_four_eyes": [i % 7 == 1 for i in range(n)],
            "review_priority": ["normal"] * n,
            "review_due_hours": [48] * n,
            "policy_version": ["2026.11.1"] * n,
        },
        schema_overrides={"quality_flags": pl.List(pl.String), "policy_hard_rule": pl.String},
    )
    wh = Warehouse(paths.warehouse)
    wh.replace_partitions("raw_applications", applications, "landing_date", [DAY])
    wh.replace_partitions("scored_applications", scored, "application_date", [DAY])
    return paths


def resources(paths: AiosPaths) -> dict:
    return {
        "warehouse": WarehouseResource(path=str(paths.warehouse)),
        "landing": LandingResource(landing_dir=str(paths.landing), contract_path=str(DEFAULT_CONTRACT_PATH)),
        "policy": PolicyResource(policy_path=str(DEFAULT_POLICY_PATH), control_dir=str(paths.control)),
        "review_store": ReviewStoreResource(url=f"sqlite:///{paths.review_store}"),
    }


def referrals(paths: AiosPaths) -> int:
    return Warehouse(paths.warehouse).scalar("select count(*) from scored_applications where action = 'review'")


def test_publishing_a_day_twice_publishes_each_referral_once(home, instance):
    first = dg.materialize([review_queue], partition_key=DAY.isoformat(), resources=resources(home), instance=instance)
    again = dg.materialize([review_queue], partition_key=DAY.isoformat(), resources=resources(home), instance=instance)
    assert first.success and again.success
    store = ReviewStore.for_paths(home)
    assert len(store.all_cases()) == referrals(home) == 40
    meta = again.asset_materializations_for_node("review_queue")[0].metadata
    assert meta["newly_published"].value == 0 and meta["already_in_store"].value == 40
    assert all(e.passed for e in again.get_asset_check_evaluations())


def _decide_some(store: ReviewStore, count: int, start: int = 0) -> None:
    try:
        store.get_user("ana")
    except Exception:
        store.add_user("ana", "underwriter")
    open_cases = [c for c in store.list_cases(status="open") if not c["requires_four_eyes"]]
    for case in open_cases[start:start + count]:
        decision = case["model_recommendation"]
        store.decide(case["case_id"], "ana", decision, ["R07"] if decision == "decline" else None)


def test_decisions_are_copied_once_and_incrementally(home, instance):
    res = resources(home)
    assert dg.materialize([review_queue], partition_key=DAY.isoformat(), resources=res, instance=instance).success
    store = ReviewStore.for_paths(home)
    _decide_some(store, 5)
    assert dg.materialize([review_copies], resources=res, instance=instance).success
    wh = Warehouse(home.warehouse)
    first = wh.query("select * from human_decisions order by copied_cursor")
    assert first.height == 5 and first["decision_id"].n_unique() == 5
    assert first["claimed_at"].null_count() == 0

    # nothing new: a re-run changes nothing
    assert dg.materialize([review_copies], resources=res, instance=instance).success
    assert wh.query("select * from human_decisions order by copied_cursor").equals(first)

    _decide_some(store, 3)
    result = dg.materialize([review_copies], resources=res, instance=instance)
    assert result.success
    assert wh.scalar("select count(*) from human_decisions") == 8
    assert wh.scalar("select count(distinct decision_id) from human_decisions") == 8
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"check_consistency_decisions_copied": True, "check_integrity_audit_chain": True}
    cases = wh.query("select status, count(*) as n from review_cases group by 1")
    assert dict(cases.iter_rows())["decided"] == 8


def test_a_copy_that_fails_half_way_stores_nothing_and_the_next_one_catches_up(home, instance, monkeypatch):
    res = resources(home)
    assert dg.materialize([review_queue], partition_key=DAY.isoformat(), resources=res, instance=instance).success
    store = ReviewStore.for_paths(home)
    _decide_some(store, 2)
    assert dg.materialize([review_copies], resources=res, instance=instance).success
    _decide_some(store, 2)

    import aios_pipelines.review.warehouse_copy as copy_module

    real = copy_module.events_table

    def broken_events_table(events):
        frame = real(events)
        # events are written after the decisions in the same transaction: a bad event row
        # (not an integer id) fails the insert after the new decisions went in
        return frame.with_columns(pl.lit("not-a-number").alias("event_id"))

    monkeypatch.setattr(copy_module, "events_table", broken_events_table)
    failed = dg.materialize([review_copies], resources=res, instance=instance, raise_on_error=False)
    assert not failed.success
    wh = Warehouse(home.warehouse)
    assert wh.scalar("select count(*) from human_decisions") == 2
    assert wh.scalar("select count(*) from review_cases where status = 'decided'") == 2

    monkeypatch.setattr(copy_module, "events_table", real)
    assert dg.materialize([review_copies], resources=res, instance=instance).success
    assert wh.scalar("select count(*) from human_decisions") == 4


def test_sensor_fires_once_per_new_decisions(home, instance):
    res = resources(home)
    assert dg.materialize([review_queue], partition_key=DAY.isoformat(), resources=res, instance=instance).success
    store_resource = res["review_store"]
    context = dg.build_sensor_context(instance=instance, resources={"review_store": store_resource})
    assert isinstance(review_decisions_sensor(context), dg.SkipReason)
    _decide_some(ReviewStore.for_paths(home), 2)
    request = review_decisions_sensor(context)
    assert isinstance(request, dg.RunRequest) and request.run_key.startswith("decisions-up-to-")
    assert isinstance(review_decisions_sensor(context), dg.SkipReason)


def test_sla_sweep_escalates_overdue_cases(home, instance):
    res = resources(home)
    store = ReviewStore.for_paths(home).create_all()
    past = datetime.now(timezone.utc) - timedelta(days=3)
    store.publish_cases(
        [{"application_id": "APP-overdue", "application_date": DAY, "priority": "high", "due_hours": 8,
          "requires_four_eyes": False, "pd": 0.2, "model_recommendation": "decline", "blind_review": False,
          "reasons": [], "quality_flags": [], "applicant_summary": {}, "source": "batch"}],
        now=past,
    )
    result = sweep_review_slas.execute_in_process(resources={"review_store": res["review_store"]}, instance=instance)
    assert result.success
    assert store.get_case_by_application("APP-overdue")["status"] == "escalated"


def test_the_case_copy_carries_each_cases_expert_queue(home, instance):
    """time_to_decision is by expert queue: the copy must carry it, and a case stored before
    the queues existed lands in the policy's default queue (where the service puts it too)."""
    from sqlalchemy import update

    from aios_pipelines.review.schema import cases as cases_table

    res = resources(home)
    assert dg.materialize([review_queue], partition_key=DAY.isoformat(), resources=res, instance=instance).success
    store = ReviewStore.for_paths(home)
    in_store = {c["case_id"]: c["expert_queue"] for c in store.all_cases()}
    assert len(set(in_store.values())) >= 2 and None not in in_store.values()
    older = next(case_id for case_id, queue in sorted(in_store.items()) if queue != "general")
    with store.engine.begin() as conn:
        conn.execute(update(cases_table).where(cases_table.c.case_id == older).values(expert_queue=None))
    assert dg.materialize([review_copies], resources=res, instance=instance).success
    wh = Warehouse(home.warehouse)
    copied = dict(wh.query("select case_id, expert_queue from review_cases").rows())
    assert copied == {**in_store, older: "general"}


def test_the_copy_reads_only_what_it_needs_and_equals_the_full_case_and_claim_history(home, instance):
    """The copy reads the cases' copied columns and the claims of newly decided cases only:
    the result must equal the row-by-row build from every case and every event."""
    from aios_pipelines.review.queues import QueueRules
    from aios_pipelines.review.warehouse_copy import cases_table

    res = resources(home)
    assert dg.materialize([review_queue], partition_key=DAY.isoformat(), resources=res, instance=instance).success
    store = ReviewStore.for_paths(home)
    _decide_some(store, 2)
    assert dg.materialize([review_copies], resources=res, instance=instance).success
    store.add_user("bo", "underwriter")
    # claimed earlier by one reviewer, released, then claimed and decided by another
    case = next(c for c in store.list_cases(status="open") if not c["requires_four_eyes"])
    store.claim(case["case_id"], "ana")
    store.release(case["case_id"], "ana")
    store.claim(case["case_id"], "bo")
    store.decide(case["case_id"], "bo", case["model_recommendation"], ["R07"] if case["model_recommendation"] == "decline" else None)
    _decide_some(store, 2, start=1)
    assert dg.materialize([review_copies], resources=res, instance=instance).success

    wh = Warehouse(home.warehouse)
    rules = QueueRules(PolicyResource(policy_path=str(DEFAULT_POLICY_PATH), control_dir=str(home.control)).policy())
    expected = cases_table(store.all_cases(), queue_of=store.use_queues(rules).queue_of)
    copied = wh.read_table("review_cases")
    assert copied.sort("case_id").equals(expected.sort("case_id"))
    assert copied.filter(pl.col("status") == "decided").height == 5

    claims = {}
    for event in store.events_since(0, limit=1_000_000):
        if event["event_type"] == "claimed":
            claims.setdefault((event["case_id"], event["actor"]), []).append(event["at"].replace(tzinfo=None))
    decisions = wh.query("select case_id, reviewer, claimed_at, decided_at from human_decisions")
    assert decisions.height == 5
    for case_id, reviewer, claimed_at, decided_at in decisions.iter_rows():
        earlier = [t for t in claims.get((case_id, reviewer), []) if t <= decided_at]
        assert claimed_at == (max(earlier) if earlier else decided_at)
    bo = decisions.filter(pl.col("reviewer") == "bo").row(0, named=True)
    assert bo["claimed_at"] < bo["decided_at"]


def _copy(home, instance, **overrides):
    result = dg.materialize([review_copies], resources={**resources(home), **overrides}, instance=instance,
                            raise_on_error=False)
    cases_meta = next(m for m in result.asset_materializations_for_node("review_copies")
                      if m.asset_key == dg.AssetKey("review_cases")).metadata
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return result, cases_meta, checks


def _tamper(home, statement: str) -> None:
    """Someone with write access to the store's file: drop the append-only triggers, then edit."""
    import sqlite3

    con = sqlite3.connect(home.review_store)
    for (name,) in con.execute("select name from sqlite_master where type = 'trigger'").fetchall():
        con.execute(f'drop trigger "{name}"')
    con.execute(statement)
    con.commit()
    con.close()


def test_a_later_copy_reads_only_the_cases_changed_since_and_verifies_only_the_new_entries(home, instance):
    """The copy runs whenever reviewers decide: its work must follow what changed, not how many
    cases the store has ever held, and still equal a copy of everything."""
    from aios_pipelines.review.queues import QueueRules
    from aios_pipelines.review.warehouse_copy import cases_table

    assert dg.materialize([review_queue], partition_key=DAY.isoformat(), resources=resources(home), instance=instance).success
    store = ReviewStore.for_paths(home)
    total = len(store.all_cases())
    result, meta, checks = _copy(home, instance)
    assert result.success and meta["cases_copied"].value == total and meta["copied"].value == "every case"
    first_head = store.audit_head()[0]
    assert checks["check_integrity_audit_chain"].metadata["entries_verified"].value == first_head

    result, meta, checks = _copy(home, instance)  # nothing changed: nothing read
    assert result.success and meta["cases_copied"].value == 0 and meta["dagster/row_count"].value == total
    assert checks["check_integrity_audit_chain"].passed
    assert checks["check_integrity_audit_chain"].metadata["entries_verified"].value == 0

    _decide_some(store, 3)
    result, meta, checks = _copy(home, instance)
    assert result.success and meta["cases_copied"].value == 3
    assert meta["copied"].value == f"the cases changed after audit entry {first_head}"
    verified = checks["check_integrity_audit_chain"].metadata
    assert verified["verified_from_seq"].value == first_head
    assert verified["entries_verified"].value == store.audit_head()[0] - first_head > 0

    rules = QueueRules(PolicyResource(policy_path=str(DEFAULT_POLICY_PATH), control_dir=str(home.control)).policy())
    expected = cases_table(store.all_cases(), queue_of=store.use_queues(rules).queue_of)
    assert Warehouse(home.warehouse).read_table("review_cases").sort("case_id").equals(expected.sort("case_id"))


def test_a_new_policy_or_a_replaced_store_makes_the_copy_take_every_case_again(home, instance, tmp_path):
    assert dg.materialize([review_queue], partition_key=DAY.isoformat(), resources=resources(home), instance=instance).success
    assert _copy(home, instance)[0].success

    # expert queues are the policy's: another policy resolves every case again
    changed_policy = tmp_path / "policy.yaml"
    changed_policy.write_text(DEFAULT_POLICY_PATH.read_text().replace('version: "2026.11.1"', 'version: "2026.11.2"'))
    other = PolicyResource(policy_path=str(changed_policy), control_dir=str(home.control))
    result, meta, _ = _copy(home, instance, policy=other)
    assert result.success and meta["copied"].value == "every case"
    assert _copy(home, instance, policy=other)[1]["cases_copied"].value == 0

    # a store replaced by another one (restored, rebuilt): its cases, and no stale ones
    home.review_store.unlink()
    fresh = ReviewStore.for_paths(home).create_all()
    fresh.publish_cases([{"application_id": "APP-only", "application_date": DAY, "source": "batch"}])
    result, meta, checks = _copy(home, instance, policy=other)
    assert result.success and meta["copied"].value == "every case"
    assert Warehouse(home.warehouse).query("select application_id from review_cases")["application_id"].to_list() == ["APP-only"]
    assert checks["check_integrity_audit_chain"].passed
    assert checks["check_integrity_audit_chain"].metadata["verified_from_seq"].value == 0


def test_an_entry_edited_after_the_last_copy_fails_every_copy_until_repaired(home, instance):
    assert dg.materialize([review_queue], partition_key=DAY.isoformat(), resources=resources(home), instance=instance).success
    store = ReviewStore.for_paths(home)
    assert _copy(home, instance)[0].success
    verified_to = store.audit_head()[0]
    _decide_some(store, 2)
    _tamper(home, f"update audit_log set actor = 'mallory' where seq = {verified_to + 1}")
    for _ in range(2):
        result, _, checks = _copy(home, instance)
        assert not checks["check_integrity_audit_chain"].passed
        assert checks["check_integrity_audit_chain"].metadata["first_bad_seq"].value == verified_to + 1


def test_an_entry_edited_before_the_last_copy_is_left_to_the_daily_checkpoint(home, instance):
    """The copy verifies from where it verified before; the daily audit_checkpoint verifies the
    whole chain and catches an older entry edited in place."""
    from aios_pipelines.defs.review.assets import audit_checkpoint

    assert dg.materialize([review_queue], partition_key=DAY.isoformat(), resources=resources(home), instance=instance).success
    assert _copy(home, instance)[0].success
    _tamper(home, "update audit_log set actor = 'mallory' where seq = 2")
    _decide_some(ReviewStore.for_paths(home), 1)
    assert _copy(home, instance)[2]["check_integrity_audit_chain"].passed
    checkpoint = dg.materialize([audit_checkpoint], resources=resources(home), instance=instance, raise_on_error=False)
    evaluation = checkpoint.get_asset_check_evaluations()[0]
    assert not evaluation.passed and evaluation.metadata["first_bad_seq"].value == 2
