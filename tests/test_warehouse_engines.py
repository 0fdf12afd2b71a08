"""The platform runs unchanged on either warehouse engine: the same demo (ingestion, features,
training, scoring, review publication and copy, dbt marts, forecasts, monitoring) on the
embedded DuckDB file and on PostgreSQL gives the same tables, row for row."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from aios_pipelines.storage.postgres_warehouse import PostgresWarehouse
from aios_pipelines.storage.warehouse import Warehouse

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DAYS, PER_DAY = 92, 40
MONITORED = ("2026-08-25", "2026-08-31")

# table -> (key columns, columns compared; None: all but DIFFERENT_BY_NATURE). The simulated
# underwriters pick their verdicts by a hash of the review store's random case ids, so what people
# decided differs between any two runs, on one engine or two: the review plane is compared on
# what the pipeline routed (not ``queue``, which an escalation changes), and each run's copy is
# checked against its own review store.
TABLES: dict[str, tuple[list[str], list[str] | None]] = {
    "raw_applications": (["application_id"], None),
    "quarantined_applications": (["source_file", "source_row", "column_name"], None),
    "application_features": (["application_id"], None),
    "raw_loan_outcomes": (["application_id"], None),
    "training_set": (["application_id"], None),
    "scored_applications": (["application_id"], None),
    "feature_drift": (["application_date", "feature"], None),
    "score_stability": (["application_date", "variable", "model_version"], None),
    "review_cases": (["application_id"], [
        "application_date", "source", "expert_queue", "priority", "requires_four_eyes", "blind_review",
        "model_recommendation", "pd", "score_band", "model_version", "policy_version", "policy_rule"]),
    "stg_scored_applications": (["application_id"], None),
    "stg_applications": (["application_id"], None),
    "stg_loan_outcomes": (["application_id"], None),
    "fct_application_decisions": (["application_id"], [
        "application_date", "origin", "application_ts", "loan_amount", "channel", "pd", "score_band",
        "model_version", "decision_source", "policy_version", "policy_rule", "routed_action", "automation_paused",
        "model_recommendation", "expert_queue", "review_priority", "blind_review", "requires_four_eyes",
        "has_matured_outcome", "defaulted", "outcome_date"]),
    "approval_funnel": (["application_date"], [
        "applications", "online_applications", "auto_approved", "auto_declined", "referred_to_review",
        "automation_rate"]),
}
# columns that name the run's own folder, clock or MLflow run, not data
DIFFERENT_BY_NATURE = {"report_path", "scored_at", "loaded_at", "copied_at", "built_at", "mlflow_run_id", "run_id"}
# thresholds lowered so that the small demo's days are judged rather than skipped as too small
MONITOR_CONFIG = {"ops": {"feature_drift_report": {"config": {"min_batch_rows": 20}},
                          "score_stability": {"config": {"min_batch_rows": 20}}}}


def run_demo(home: Path, warehouse_url: str | None) -> None:
    env = {**os.environ, "AIOS_HOME": str(home), "GX_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("DAGSTER_HOME", None)
    env.pop("AIOS_WAREHOUSE_URL", None)
    if warehouse_url:
        env["AIOS_WAREHOUSE_URL"] = warehouse_url
    aios = Path(sys.executable).with_name("aios")
    for command in (
        [str(aios), "demo", "--days", str(DAYS), "--per-day", str(PER_DAY)],
        [sys.executable, str(ROOT / "tests" / "child_jobs.py"),
         json.dumps({"runs": [{"job": "monitor_applications", "first": MONITORED[0], "last": MONITORED[1],
                               "config": MONITOR_CONFIG}]})],
    ):
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{command[1:3]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def comparable(frame: pl.DataFrame, keys: list[str], columns: list[str] | None) -> pl.DataFrame:
    kept = columns if columns is not None else [c for c in frame.columns if c not in DIFFERENT_BY_NATURE]
    return frame.select(sorted(set(keys) | set(kept))).sort(keys, nulls_last=True)


@pytest.fixture(scope="module")
def both_engines(tmp_path_factory, postgres_server):
    duck_home = tmp_path_factory.mktemp("duckdb_home")
    pg_home = tmp_path_factory.mktemp("postgres_home")
    url = postgres_server.create_database("aios_engines")
    run_demo(duck_home, None)
    run_demo(pg_home, url)
    return {"duckdb": (Warehouse(duck_home / "warehouse" / "aios.duckdb"), duck_home),
            "postgres": (PostgresWarehouse(url), pg_home)}


@pytest.mark.parametrize("table", list(TABLES))
def test_every_table_is_the_same_on_duckdb_and_postgresql(both_engines, table):
    (duck, _), (postgres, _) = both_engines["duckdb"], both_engines["postgres"]
    keys, columns = TABLES[table]
    on_duck, on_pg = duck.read_table(table), postgres.read_table(table)
    assert on_duck.height > 0, f"{table} is empty: the comparison would prove nothing"
    assert sorted(on_duck.columns) == sorted(on_pg.columns)
    left, right = comparable(on_duck, keys, columns), comparable(on_pg, keys, columns)
    assert left.height == right.height
    for column in left.columns:
        a, b = left[column], right[column]
        if a.dtype.is_float() or b.dtype.is_float():
            diff = (a.cast(pl.Float64) - b.cast(pl.Float64)).abs().max()
            assert a.is_null().to_list() == b.is_null().to_list(), f"{table}.{column}: nulls differ"
            assert diff is None or diff < 1e-9, f"{table}.{column}: values differ by up to {diff}"
        else:
            if a.dtype != b.dtype and a.dtype.is_integer() and b.dtype.is_integer():
                a, b = a.cast(pl.Int64), b.cast(pl.Int64)
            assert a.to_list() == b.to_list(), f"{table}.{column} differs ({a.dtype} vs {b.dtype})"


@pytest.mark.parametrize("engine", ["duckdb", "postgres"])
def test_each_engine_holds_every_decision_of_its_review_store_and_the_marts_count_them(both_engines, engine):
    warehouse, home = both_engines[engine]
    with sqlite3.connect(home / "review" / "review.sqlite") as store:
        decisions, events = (store.execute(f"select count(*) from {t}").fetchone()[0]
                             for t in ("decisions", "review_events"))
    assert decisions > 0
    assert warehouse.scalar("select count(*) from human_decisions") == decisions
    assert warehouse.scalar("select count(distinct decision_id) from human_decisions") == decisions
    assert warehouse.scalar("select count(*) from review_events") == events
    assert warehouse.scalar("select count(*) from fct_review_decisions") == decisions
    reviewed = warehouse.scalar("select sum(reviewed) from approval_funnel")
    assert reviewed == warehouse.scalar(
        "select count(*) from fct_application_decisions where decided_by_type = 'human'")
    assert reviewed > 0
