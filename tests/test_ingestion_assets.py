"""Materialize the real ingestion and feature assets against a temporary data directory."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from aios_pipelines.defs.features.assets import application_features
from aios_pipelines.defs.ingestion.assets import raw_applications, raw_loan_outcomes
from aios_pipelines.defs.ingestion.sensors import landing_files_sensor, new_landing_requests
from aios_pipelines.defs.runner import user_error_message
from aios_pipelines.defs.resources import LandingResource, ReportsResource, WarehouseResource
from aios_pipelines.ingestion.landing import discover_landing_files, read_landing_file
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH, AiosPaths
from aios_pipelines.storage.warehouse import Warehouse
from aios_pipelines.synthetic.generator import write_landing

START = date(2026, 3, 2)
DAYS = 4
PER_DAY = 120
ASSETS = [raw_applications, application_features]


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture()
def home(tmp_path) -> AiosPaths:
    paths = AiosPaths(tmp_path / "home").ensure()
    write_landing(paths.landing, start=START, days=DAYS, per_day=PER_DAY, seed=7, file_format="mixed",
                  performance_window_days=2, bad_row_rate=0.08)
    return paths


def resources(paths: AiosPaths, contract_path: Path = DEFAULT_CONTRACT_PATH) -> dict:
    return {
        "warehouse": WarehouseResource(path=str(paths.warehouse)),
        "landing": LandingResource(landing_dir=str(paths.landing), contract_path=str(contract_path)),
        "reports": ReportsResource(reports_dir=str(paths.reports)),
    }


def materialize_day(paths, instance, day: date, assets=ASSETS, contract_path=DEFAULT_CONTRACT_PATH, **kw):
    return dg.materialize(assets, partition_key=day.isoformat(), resources=resources(paths, contract_path),
                          instance=instance, **kw)


def landing_rows(paths: AiosPaths, contract, day: date) -> int:
    total = 0
    for f in discover_landing_files(paths.landing, contract.applications):
        if f.day == day:
            total += read_landing_file(f.path, contract.applications)[0].height
    return total


def snapshot(paths: AiosPaths, table: str) -> pl.DataFrame:
    return Warehouse(paths.warehouse).query(f"select * from {table}").sort(pl.all())


def test_counts_reconcile_and_checks_pass(home, instance, contract):
    result = materialize_day(home, instance, START)
    assert result.success
    wh = Warehouse(home.warehouse)
    loaded = wh.scalar("select count(*) from raw_applications")
    quarantined = wh.scalar("select count(*) from quarantined_applications")
    assert quarantined > 0, "the generator's bad rows must land in quarantine"
    assert loaded + quarantined == landing_rows(home, contract, START) == PER_DAY
    assert wh.scalar("select count(*) from application_features") == loaded

    mats = {m.asset_key.to_user_string(): m.metadata for m in result.asset_materializations_for_node("raw_applications")}
    assert mats["raw_applications"]["rows_read"].value == PER_DAY
    assert mats["raw_applications"]["rows_quarantined"].value == quarantined
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["check_validity_contract_expectations"].passed
    assert evaluations["check_consistency_file_reconciliation"].passed
    assert evaluations["check_consistency_one_row_per_application"].passed
    # 8% bad rows is above the 2% warning line: the check says so without failing the run
    assert not evaluations["check_validity_quarantine_share"].passed
    assert evaluations["check_validity_quarantine_share"].severity == dg.AssetCheckSeverity.WARN


def test_rematerializing_a_partition_changes_nothing(home, instance):
    assert materialize_day(home, instance, START).success
    assert materialize_day(home, instance, START + timedelta(days=1)).success
    before = {t: snapshot(home, t) for t in ("raw_applications", "quarantined_applications", "application_features")}
    assert materialize_day(home, instance, START).success
    after = {t: snapshot(home, t) for t in before}
    for table in before:
        assert after[table].equals(before[table]), table


def test_same_file_dropped_on_another_day_is_not_loaded_twice(home, instance, contract):
    assert materialize_day(home, instance, START).success
    first = next(f for f in discover_landing_files(home.landing, contract.applications) if f.day == START)
    copy_dir = home.landing / "applications" / (START + timedelta(days=1)).isoformat()
    shutil.copy(first.path, copy_dir / f"resent{first.path.suffix}")
    assert materialize_day(home, instance, START + timedelta(days=1)).success
    wh = Warehouse(home.warehouse)
    assert wh.scalar("select count(*) - count(distinct application_id) from raw_applications") == 0
    resent = wh.query("select reason from quarantined_applications where source_file like '%resent%'")
    assert resent.height == PER_DAY  # every row: either a duplicate, or a row on the wrong day, or bad anyway


def test_unparseable_file_fails_the_run_and_loses_nothing(home, instance):
    assert materialize_day(home, instance, START).success
    before = snapshot(home, "raw_applications")
    bad = home.landing / "applications" / START.isoformat() / "broken.csv"
    bad.write_bytes(b"application_id,application_ts\nAPP-x,caf\xe9\n")
    result = materialize_day(home, instance, START, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = user_error_message(failure.step_failure_data.error)
    assert "LandingFileError: cannot ingest " in message
    assert "broken.csv, line 2: not valid UTF-8" in message
    assert snapshot(home, "raw_applications").equals(before)


def test_outcomes_load_and_reconcile(home, instance, contract):
    for offset in range(DAYS):
        assert materialize_day(home, instance, START + timedelta(days=offset)).success
    outcome_days = sorted({f.day for f in discover_landing_files(home.landing, contract.outcomes)})
    assert outcome_days, "the generator writes outcomes once the performance window has passed"
    for day in outcome_days:
        assert materialize_day(home, instance, day, assets=[raw_loan_outcomes]).success
    wh = Warehouse(home.warehouse)
    orphans = wh.scalar(
        "select count(*) from raw_loan_outcomes o anti join raw_applications a using (application_id)"
    )
    assert orphans == 0
    assert wh.scalar("select count(*) from raw_loan_outcomes where outcome_date <> landing_date") == 0


def test_sensor_requests_each_new_file_exactly_once(home, instance):
    landing = resources(home)["landing"]
    requests, cursor = new_landing_requests(landing, None)
    app_days = sorted(r.partition_key for r in requests if r.job_name == "ingest_applications")
    assert app_days == [(START + timedelta(days=i)).isoformat() for i in range(DAYS)]
    again, cursor_again = new_landing_requests(landing, cursor)
    assert again == [] and cursor_again == cursor

    day = (START + timedelta(days=DAYS)).isoformat()
    (home.landing / "applications" / day).mkdir()
    first = next((home.landing / "applications" / START.isoformat()).iterdir())
    shutil.copy(first, home.landing / "applications" / day / first.name)
    new, cursor = new_landing_requests(landing, cursor)
    assert [(r.job_name, r.partition_key) for r in new] == [("ingest_applications", day)]
    assert new_landing_requests(landing, cursor)[0] == []

    # and through Dagster's own sensor machinery, with the cursor it keeps
    context = dg.build_sensor_context(cursor=None, instance=instance, resources={"landing": landing})
    result = landing_files_sensor(context)
    assert len([r for r in result if r.job_name == "ingest_applications"]) == DAYS + 1


RENAMES = {
    "application_id": "app_ref",
    "application_ts": "submitted_at",
    "annual_income": "income_eur",
    "loan_amount": "requested_eur",
    "bureau_score": "score_ext",
    "purpose": "loan_reason",
}


def test_a_second_contract_with_other_names_runs_the_same_pipeline(tmp_path, instance, contract):
    raw = yaml.safe_load(DEFAULT_CONTRACT_PATH.read_text())
    raw["name"] = "other_lender"
    for section in ("applications", "outcomes"):
        for col in raw[section]["columns"]:
            col["name"] = RENAMES.get(col["name"], col["name"])
            if col.get("references"):
                col["references"] = RENAMES[col["references"]]
    # this lender does not report term: no payment burden feature, nothing else breaks
    raw["applications"]["columns"] = [c for c in raw["applications"]["columns"] if c["name"] != "term_months"]
    other_contract = tmp_path / "other_contract.yaml"
    other_contract.write_text(yaml.safe_dump(raw))

    paths = AiosPaths(tmp_path / "other").ensure()
    write_landing(paths.landing, start=START, days=1, per_day=80, seed=3, file_format="csv", bad_row_rate=0.0)
    for f in (paths.landing / "applications").rglob("*.csv"):
        frame = pl.read_csv(f, infer_schema=False).rename(RENAMES, strict=False).drop("term_months")
        frame.write_csv(f)
    result = materialize_day(paths, instance, START, contract_path=other_contract)
    assert result.success
    wh = Warehouse(paths.warehouse)
    features = wh.query("select * from application_features")
    assert features.height == 80
    assert {"income_eur", "score_ext", "score_ext__missing", "loan_reason", "loan_to_income"} <= set(features.columns)
    assert "payment_burden" not in features.columns
    assert "annual_income" not in features.columns


def test_sensor_does_not_reingest_days_already_materialized(home, instance):
    """`aios demo` ingests before the daemon ever runs: the first tick must not redo that work."""
    assert materialize_day(home, instance, START).success
    context = dg.build_sensor_context(cursor=None, instance=instance, resources={"landing": resources(home)["landing"]})
    result = landing_files_sensor(context)
    requested = sorted(r.partition_key for r in result if r.job_name == "ingest_applications")
    assert START.isoformat() not in requested
    assert requested == [(START + timedelta(days=i)).isoformat() for i in range(1, DAYS)]
    # a file replaced after the materialization is picked up again
    day_dir = home.landing / "applications" / START.isoformat()
    replaced = next(day_dir.iterdir())
    replaced.write_bytes(replaced.read_bytes())
    import os, time

    os.utime(replaced, (time.time() + 5, time.time() + 5))
    again = landing_files_sensor(dg.build_sensor_context(cursor=context.cursor, instance=instance,
                                                        resources={"landing": resources(home)["landing"]}))
    assert [r.partition_key for r in again if r.job_name == "ingest_applications"] == [START.isoformat()]
