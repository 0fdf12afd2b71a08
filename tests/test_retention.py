"""Retention: personal fields of applications past the period leave the warehouse and the
review store; counts, decisions and the audit chain stay; the legal minimums hold."""

from __future__ import annotations

import json
import sqlite3
from datetime import date, datetime, timedelta, timezone

import polars as pl
import pytest
import sqlalchemy

from aios_pipelines import cli
from aios_pipelines.features.build import build_features
from aios_pipelines.governance.retention import (
    DEFAULT_MONTHS,
    LEGAL_MINIMUM_MONTHS,
    REMOVED,
    PersonalFields,
    RetentionError,
    RetentionPolicy,
    apply_retention,
    months_before,
    redacted_before,
)
from aios_pipelines.ingestion.contract import ContractError, load_contract
from aios_pipelines.review import publish
from aios_pipelines.review.checkpoints import checkpoint_row
from aios_pipelines.review.store import ReviewStore
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH, AiosPaths
from aios_pipelines.storage.postgres_warehouse import PostgresWarehouse
from aios_pipelines.storage.warehouse import Warehouse
from aios_pipelines.synthetic.generator import generate_applications

def _utc_today() -> date:
    return datetime.now(timezone.utc).date()


TODAY = _utc_today()
OLD = months_before(TODAY, 30)      # past the default period
MIDDLE = months_before(TODAY, 8)    # past a 6-month period only
RECENT = TODAY - timedelta(days=20)
DAYS = (OLD, MIDDLE, RECENT)
PER_DAY = 12


# --------------------------------------------------------------------------- the period


def test_the_default_is_never_below_a_legal_minimum(monkeypatch):
    monkeypatch.delenv("AIOS_RETENTION_MONTHS", raising=False)
    assert LEGAL_MINIMUM_MONTHS == {"credit application records": 25, "AI system logs": 6}
    assert DEFAULT_MONTHS >= 25 and RetentionPolicy().months >= 25
    assert RetentionPolicy.from_settings().months == DEFAULT_MONTHS
    monkeypatch.setenv("AIOS_RETENTION_MONTHS", "36")
    assert RetentionPolicy.from_settings().months == 36


def test_a_shorter_period_without_an_override_is_refused(monkeypatch):
    with pytest.raises(RetentionError) as refused:
        RetentionPolicy.from_settings(12)
    assert "25 months for credit application records" in str(refused.value)
    assert "--override-reason" in str(refused.value)
    with pytest.raises(RetentionError, match="25 months for credit application records and 6 months for AI system logs"):
        RetentionPolicy.from_settings(3)
    with pytest.raises(RetentionError):
        RetentionPolicy.from_settings(12, override_reason="   ")  # blank is no reason
    monkeypatch.setenv("AIOS_RETENTION_MONTHS", "12")
    with pytest.raises(RetentionError):
        RetentionPolicy.from_settings()
    with pytest.raises(RetentionError, match="whole number"):
        RetentionPolicy.from_settings("two years")
    with pytest.raises(RetentionError):
        apply_retention(RetentionPolicy(12), None, None, None)  # the check runs again at apply time


def test_months_before_clamps_to_the_end_of_a_shorter_month():
    assert months_before(date(2026, 3, 31), 1) == date(2026, 2, 28)
    assert months_before(date(2026, 3, 15), 25) == date(2024, 2, 15)


# --------------------------------------------------------------------------- the contract


def test_the_contract_marks_the_obviously_personal_fields(contract):
    personal = set(contract.applications.personal_columns)
    assert {"annual_income", "existing_debt", "bureau_score", "delinquencies_2y", "region"} <= personal
    assert not personal & {"application_id", "application_ts", "loan_amount", "term_months", "channel"}
    fields = PersonalFields.of(contract)
    # features derived from a personal column are personal too
    assert {"loan_to_income", "payment_burden", "bureau_score__missing", "annual_income"} <= set(fields.features)


def test_the_personal_flag_is_validated(tmp_path):
    text = DEFAULT_CONTRACT_PATH.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("      personal: true\n      description: Declared", "      personal: maybe\n"
                                "      description: Declared", 1))
    with pytest.raises(ContractError, match="personal must be true or false"):
        load_contract(bad)
    bad.write_text(text.replace("      role: id\n", "      role: id\n      personal: true\n", 1))
    with pytest.raises(ContractError, match="cannot be personal"):
        load_contract(bad)


# --------------------------------------------------------------------------- a home with both stores


@pytest.fixture(params=["duckdb", "postgres"])
def home(request, aios_paths: AiosPaths, contract, monkeypatch):
    """Three application days (30, 8 and under 1 month old) in the warehouse (the DuckDB file, or
    PostgreSQL through AIOS_WAREHOUSE_URL as a deployment sets it) and the review store."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("AIOS_WAREHOUSE_URL", url)
        wh = PostgresWarehouse(url)
    else:
        monkeypatch.delenv("AIOS_WAREHOUSE_URL", raising=False)
        wh = Warehouse(aios_paths.warehouse)
    raw_frames, scored_frames, quarantine = [], [], []
    for i, day in enumerate(DAYS):
        apps, _ = generate_applications(day, PER_DAY, seed=11 + i)
        apps = apps.with_columns(pl.lit(day).alias("landing_date"), pl.lit(f"{day}.csv").alias("source_file"),
                                 pl.int_range(1, PER_DAY + 1).cast(pl.Int64).alias("source_row"))
        raw_frames.append(apps)
        n = apps.height
        scored_frames.append(pl.DataFrame({
            "application_id": apps["application_id"], "application_date": [day] * n,
            "pd": [0.05 + 0.02 * k for k in range(n)], "action": ["review" if k % 2 else "auto_approve" for k in range(n)],
            "quality_flags": [[f"annual_income: {apps['annual_income'][k]:.0f} is outside the training range [1, 2]",
                               "loan_amount: 99 is outside the training range [100, 200]"] for k in range(n)],
        }))
        quarantine.append({
            "landing_date": day, "source_file": f"{day}.csv", "source_row": 99, "record_id": f"BAD-{day}",
            "column_name": "annual_income", "reason": "annual_income: -5 is below the minimum 0",
            "all_reasons": ["annual_income: -5 is below the minimum 0", "term_months: 7 is not allowed"],
            "raw_record": json.dumps({"application_id": f"BAD-{day}", "annual_income": "-5", "region": "north",
                                      "loan_amount": "1000"}),
        })
    raw = pl.concat(raw_frames)
    wh.replace_partitions("raw_applications", raw, "landing_date", list(DAYS))
    features = build_features(raw, contract.applications)
    wh.replace_partitions("application_features", features, "application_date", list(DAYS))
    wh.replace_partitions("scored_applications", pl.concat(scored_frames), "application_date", list(DAYS))
    wh.replace_partitions("quarantined_applications", pl.DataFrame(quarantine), "landing_date", list(DAYS))

    store = ReviewStore.for_paths(aios_paths).create_all()
    store.add_user("ana", "underwriter")
    by_id = {r["application_id"]: r for r in raw.iter_rows(named=True)}
    rows = []
    for app_id in [a for a in raw["application_id"].to_list()][::4]:
        app = by_id[app_id]
        rows.append({"application_id": app_id, "application_date": app["landing_date"], "priority": "normal",
                     "due_hours": 48, "requires_four_eyes": False, "pd": 0.2, "amount": app["loan_amount"],
                     "model_recommendation": "decline", "blind_review": False, "source": "batch",
                     "reasons": [{"code": "R07", "text": "Credit bureau score is low", "feature": "bureau_score"}],
                     "quality_flags": ["bureau_score: missing, the model used its learned default for it"],
                     "applicant_summary": publish.applicant_summary(app)})
    store.publish_cases(rows)
    for case in store.list_cases(status="open", limit=1000)[::2]:
        store.decide(case["case_id"], "ana", "decline", ["R07"], "checked")
    old_app = {k: v for k, v in by_id[raw_frames[0]["application_id"][1]].items()
               if k in contract.applications.column_names}
    store.record_online_decision({
        "application_id": "ONLINE-OLD", "application_date": OLD, "action": "auto_decline",
        "decision_source": "model", "pd": 0.4, "policy_rule": "auto_decline", "policy_version": "p1",
        "policy_fingerprint": "f" * 16, "quality_flags": ["region: unknown category"],
        "application": {**old_app, "application_id": "ONLINE-OLD"},
    }, None, actor="ana")
    # a checkpoint recorded before retention: the chain must still hold it afterwards
    row = checkpoint_row(store, "before retention")
    wh.sync_tables(upsert={"audit_checkpoints": (pl.DataFrame([row]).with_columns(
        pl.col("first_bad_seq").cast(pl.Int64)), "recorded_at")})
    return aios_paths, store, wh


def _snapshot(wh: Warehouse, store: ReviewStore) -> dict:
    return {
        "raw": wh.query("select * from raw_applications order by application_id"),
        "features": wh.query("select * from application_features order by application_id"),
        "scored": wh.query("select * from scored_applications order by application_id"),
        "quarantine": wh.query("select * from quarantined_applications order by record_id"),
        "cases": sorted((c["case_id"], c["status"], c["final_decision"], json.dumps(c["applicant_summary"],
                         sort_keys=True), tuple(c["quality_flags"])) for c in store.all_cases()),
        "decisions": store.decisions_since(0, 10_000),
        "online": store.online_decisions_since(0, 100),
    }


def _verify(capsys) -> tuple[int, str]:
    code = cli.main(["audit", "verify"])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_apply_removes_old_personal_fields_keeps_the_rest_and_the_audit_chain_verifies(home, contract, capsys):
    paths, store, wh = home
    before = _snapshot(wh, store)
    head_before = store.audit_head()
    personal = contract.applications.personal_columns
    old_income = before["raw"].filter(pl.col("landing_date") == OLD)["annual_income"][0]

    day_before = _utc_today()
    assert cli.main(["retention", "apply"]) == 0
    # the command's own today, which is tomorrow if the suite crossed midnight (UTC) meanwhile
    cutoffs = {months_before(day, 25).isoformat() for day in (day_before, _utc_today())}
    out = capsys.readouterr().out
    assert any(f"applications dated before {cutoff}" in out for cutoff in cutoffs), out
    # online_decisions is still append-only afterwards
    con = sqlite3.connect(paths.review_store)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("update online_decisions set pd = 0.9")
    con.close()
    after = _snapshot(wh, store)

    # warehouse: old rows lose every personal field, the others keep them; nothing else moves
    raw = after["raw"]
    assert raw.height == before["raw"].height
    old, kept = raw.filter(pl.col("landing_date") == OLD), raw.filter(pl.col("landing_date") != OLD)
    assert old.height == PER_DAY and all(old[c].null_count() == PER_DAY for c in personal)
    assert kept.drop("landing_date").equals(before["raw"].filter(pl.col("landing_date") != OLD).drop("landing_date"))
    for column in ("application_id", "application_ts", "loan_amount", "term_months", "channel", "source_file"):
        assert old[column].to_list() == before["raw"].filter(pl.col("landing_date") == OLD)[column].to_list()
    features = after["features"]
    old_features = features.filter(pl.col("application_date") == OLD)
    for name in PersonalFields.of(contract).features:
        assert old_features[name].null_count() == PER_DAY, name
    assert features.filter(pl.col("application_date") != OLD).equals(
        before["features"].filter(pl.col("application_date") != OLD))
    scored = after["scored"]
    assert scored.select("application_id", "pd", "action").equals(before["scored"].select("application_id", "pd", "action"))
    flags = scored.filter(pl.col("application_date") == OLD)["quality_flags"][0].to_list()
    assert flags == [f"annual_income: {REMOVED}", "loan_amount: 99 is outside the training range [100, 200]"]
    quarantine = after["quarantine"].filter(pl.col("landing_date") == OLD).row(0, named=True)
    assert json.loads(quarantine["raw_record"]) == {"application_id": f"BAD-{OLD}", "annual_income": None,
                                                     "region": None, "loan_amount": "1000"}
    assert quarantine["reason"] == f"annual_income: {REMOVED}"
    assert quarantine["all_reasons"] == [f"annual_income: {REMOVED}", "term_months: 7 is not allowed"]
    assert after["quarantine"].filter(pl.col("landing_date") != OLD).equals(
        before["quarantine"].filter(pl.col("landing_date") != OLD))

    # review store: same cases, statuses and decisions; old summaries keep only what is not personal
    assert [c[:3] for c in after["cases"]] == [c[:3] for c in before["cases"]]
    assert after["decisions"] == before["decisions"]
    for case in store.all_cases():
        summary = case["applicant_summary"]
        if case["application_date"] == OLD:
            assert all(summary[c] is None for c in personal) and summary["loan_amount"] is not None
            assert case["quality_flags"] == [f"bureau_score: {REMOVED}"]
        else:
            assert summary["annual_income"] is not None and "bureau_score: missing" in case["quality_flags"][0]
    online = after["online"][0]
    assert online["application"]["annual_income"] is None and online["application"]["loan_amount"] is not None
    assert online["action"] == "auto_decline" and online["quality_flags"] == [f"region: {REMOVED}"]

    # the audit log: one new entry with counts and digests, never the values; the chain verifies
    entries = store.audit_entries(after_seq=head_before[0], limit=10)
    assert [e["action"] for e in entries] == ["retention.applied"]
    payload = entries[0]["payload"]
    assert payload["months"] == 25 and payload["override"] is None
    assert payload["tables"]["warehouse.raw_applications"]["rows"] == PER_DAY
    assert payload["tables"]["review_store.online_decisions"]["rows"] == 1
    assert len(payload["sha256"]) == 64 and payload["rows_changed"] == sum(t["rows"] for t in payload["tables"].values())
    assert str(old_income) not in json.dumps(payload)
    assert redacted_before(wh).isoformat() in cutoffs and f"before {redacted_before(wh).isoformat()}" in out
    code, text = _verify(capsys)
    assert code == 0 and "checked against 1 checkpoint" in text

    # a second run changes nothing, the audit log included
    assert cli.main(["retention", "apply"]) == 0
    assert "nothing to remove" in capsys.readouterr().out
    again = _snapshot(wh, store)
    for name in ("raw", "features", "scored", "quarantine"):
        assert again[name].equals(after[name]), name
    assert again["cases"] == after["cases"] and again["online"] == after["online"]
    assert store.audit_head() == (head_before[0] + 1, entries[0]["entry_hash"])


def test_a_dry_run_reports_and_changes_nothing(home, capsys):
    paths, store, wh = home
    before = _snapshot(wh, store)
    head = store.audit_head()
    assert cli.main(["retention", "apply", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would remove personal fields of {PER_DAY} row(s)" in out and "dry run: nothing was changed" in out
    after = _snapshot(wh, store)
    assert all(after[k].equals(before[k]) for k in ("raw", "features", "scored", "quarantine"))
    assert after["cases"] == before["cases"] and store.audit_head() == head


def test_a_shorter_period_is_refused_by_the_cli_and_changes_nothing(home, capsys):
    paths, store, wh = home
    head = store.audit_head()
    assert cli.main(["retention", "apply", "--months", "6"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: a retention period of 6 months is shorter than the legal minimum")
    assert store.audit_head() == head
    assert wh.scalar("select count(annual_income) from raw_applications") == PER_DAY * len(DAYS)


def test_an_override_allows_a_shorter_period_and_is_recorded_in_the_audit_log(home, capsys):
    paths, store, wh = home
    reason = "DPA ruling 2026-17: six months for this portfolio"
    assert cli.main(["retention", "apply", "--months", "6", "--override-reason", reason]) == 0
    assert f"(override: {reason})" in capsys.readouterr().out
    # the middle day (8 months old) is past six months too; the recent one is not
    nulls = wh.query("select landing_date, count(annual_income) as kept from raw_applications group by 1 order by 1")
    assert nulls.rows() == [(OLD, 0), (MIDDLE, 0), (RECENT, PER_DAY)]
    entry = store.audit_entries(limit=10_000)[-1]
    assert entry["action"] == "retention.applied" and entry["actor"].startswith("cli:")
    assert entry["payload"]["override"] == {"reason": reason, "below": {"credit application records": 25}}
    assert entry["payload"]["months"] == 6
    code, _ = _verify(capsys)
    assert code == 0


def test_a_crash_between_the_stores_is_recorded_by_the_next_run(home, monkeypatch):
    """The warehouse part committed, the review store's transaction did not: the next run
    finishes the store and its audit entry names the warehouse run it had missed."""
    paths, store, wh = home
    contract = load_contract(DEFAULT_CONTRACT_PATH)
    from aios_pipelines.governance import retention

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(retention, "_write_store", crash)
    with pytest.raises(RuntimeError):
        apply_retention(RetentionPolicy(), contract, wh, store)
    assert wh.scalar("select count(annual_income) from raw_applications") == PER_DAY * 2
    assert store.audit_entries(limit=10_000)[-1]["action"] != "retention.applied"
    monkeypatch.undo()
    report = apply_retention(RetentionPolicy(), contract, wh, store)
    payload = store.audit_entries(limit=10_000)[-1]["payload"]
    assert report.rows_changed > 0 and "warehouse.raw_applications" not in payload["tables"]
    assert [r["rows_changed"] for r in payload["warehouse_runs_recorded_late"]] == [
        wh.scalar("select rows_changed from retention_runs order by applied_at limit 1")]
    assert apply_retention(RetentionPolicy(), contract, wh, store).rows_changed == 0


def test_training_leaves_out_what_retention_emptied(home, contract):
    """The nightly training set reads features of every day: rows whose personal features
    were removed must not reach the model."""
    import dagster as dg

    from aios_pipelines.defs.modeling.assets import training_set
    from aios_pipelines.defs.resources import LandingResource, WarehouseResource

    paths, store, wh = home
    raw = wh.query("select application_id, landing_date from raw_applications")
    outcomes = raw.select(pl.col("application_id"), (pl.col("landing_date") + pl.duration(days=61)).alias("outcome_date"),
                          (pl.int_range(pl.len()) % 2).cast(pl.Int64).alias("defaulted"))
    wh.replace_table("raw_loan_outcomes", outcomes)
    apply_retention(RetentionPolicy(), contract, wh, store)
    url = wh.url if isinstance(wh, PostgresWarehouse) else None
    resources = {"warehouse": WarehouseResource(path=str(paths.warehouse), url=url),
                 "landing": LandingResource(landing_dir=str(paths.landing), contract_path=str(DEFAULT_CONTRACT_PATH))}
    with dg.instance_for_test() as instance:
        assert dg.materialize([training_set], resources=resources, instance=instance,
                              run_config={"ops": {"training_set": {"config": {"as_of": TODAY.isoformat()}}}}).success
    days = set(wh.query("select distinct application_date from training_set")["application_date"].to_list())
    assert days == {MIDDLE}  # OLD was emptied; RECENT has not matured
