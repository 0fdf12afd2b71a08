"""End-to-end benchmark stages: the nightly path for one day of N applications, run the way
the product runs it, each stage beside its bare baseline.

Each function is one stage run by ``harness.run_stage`` in a fresh interpreter (so its peak
RSS, VmHWM, is its own). Heavy imports happen inside the functions and are timed apart.

Product stages (``product_job``): the Dagster job through ``aios_pipelines.defs.runner.run_job``
against a persistent instance in ``AIOS_HOME/dagster_home``, the way ``aios demo`` runs it,
for the one day's partition:

* ``ingest_applications``: ``raw_applications`` + ``quarantined_applications`` (contract,
  quarantine, GX suite as a check) and ``application_features`` with their checks;
* ``score_applications``: ``scored_applications`` with the champion (trained beforehand);
* ``publish_review_cases``: the day's referrals into the review store (not one of the brief's
  stages: recorded apart, outside the ratio);
* ``monitor_applications``: ``feature_drift_report`` (Evidently against the champion's
  reference sample), ``score_stability``, ``model_performance``, ``risk_report``;
* ``copy_review_decisions``: review store -> warehouse (``review_cases``, ``human_decisions``,
  ``review_events``);
* ``build_analytics``: the dbt models and tests (one step, dagster-dbt) and the forecasts.

Every product stage reads its run's event log: per step STEP_START -> STEP_SUCCESS, the time
between steps and before/after the steps (Dagster's own work: run creation, resources, pool
slots, event writes), and the definitions load.

Baselines, in fresh processes right after the product stage they mirror: a DuckDB
``read_csv`` of the day's file into a table; the same features in pandas
(``benchmarks/pandas_features.py``), read from and written to DuckDB; ``Booster.predict`` on
the day's feature matrix; Evidently's ``DataDriftPreset`` called directly on the same frames
(same methods and thresholds, same reference sample) with its HTML saved; a plain sqlite3 ->
DuckDB copy of the three review tables; ``dbt build`` run by dbt's own CLI on the same
warehouse. ``baseline_score_contrib`` (reported apart) is the floor of scoring *with* reasons:
predict plus ``pred_contrib`` on the rows the policy wants explained. ``trivial_job`` measures Dagster's per-step overhead on steps that do nothing, with
the in-process and the multiprocess executor.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import PROJECT_ROOT, rate
from benchmarks.stages import current_rss_mib

RAW_TABLE = "raw_applications"
FEATURES_TABLE = "application_features"
DEFAULT_SEED = 42

# Which product steps each brief stage is made of (by the asset keys a step materializes or checks).
FEATURE_ASSETS = {"application_features"}
DRIFT_ASSETS = {"feature_drift_report"}
DBT_STEP_PREFIX = "analytics_dbt_models"


def _env(aios_home: str) -> None:
    os.environ["AIOS_HOME"] = str(aios_home)
    os.environ.pop("DAGSTER_HOME", None)
    os.environ.setdefault("AIOS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def _paths(aios_home: str):
    from aios_pipelines.settings import AiosPaths

    return AiosPaths(Path(aios_home)).ensure()


def _quiet(_: str) -> None:
    return None


# ----------------------------------------------------------------------------------------
# set-up (untimed figures only): history, champion, the day's landing file, reviews
# ----------------------------------------------------------------------------------------


def setup_history(aios_home: str, start: str, days: int, per_day: int, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """A history of ``days`` x ``per_day`` applications with matured outcomes, ingested, a
    champion trained on it by the product's own jobs, and the dbt project prepared for this
    warehouse (outside every timed stage)."""
    _env(aios_home)
    from aios_pipelines.defs.runner import run_job
    from aios_pipelines.synthetic.generator import write_landing

    paths = _paths(aios_home)
    began = time.perf_counter()
    first = dt.date.fromisoformat(start)
    summary = write_landing(paths.landing, start=first, days=days, per_day=per_day, seed=seed, file_format="csv")
    last = first + dt.timedelta(days=days - 1)
    run_job("ingest_applications", first_day=first, last_day=last, progress=_quiet)
    outcome_days = sorted(p.parent.name for p in summary.outcome_files)
    run_job(
        "ingest_loan_outcomes",
        first_day=dt.date.fromisoformat(outcome_days[0]),
        last_day=dt.date.fromisoformat(outcome_days[-1]),
        progress=_quiet,
    )
    run_job("retrain_credit_model", progress=_quiet)
    # a deployment prepares its dbt project for the warehouse it runs on (and every build
    # leaves its parse for the next): dbt's parse is warm, as the CLI baseline's untimed
    # `dbt parse` makes it for dbt alone
    from aios_pipelines.defs.analytics.dbt_project import WAREHOUSE_PATH_ENV, dbt_project

    os.environ[WAREHOUSE_PATH_ENV] = str(Path(paths.warehouse).expanduser().resolve())
    dbt_project.preparer.prepare(dbt_project)
    from aios_pipelines.modeling.registry import ModelRegistry, default_registry_config

    champion = ModelRegistry(default_registry_config(paths)).champion()
    if champion is None:
        raise AssertionError("the history produced no champion: the benchmark needs one to score with")
    booster, _card = ModelRegistry(default_registry_config(paths)).load_booster("champion")
    return {
        "label": "set-up: history landed, ingested, champion trained, dbt project prepared (untimed)",
        "rows": summary.applications,
        "outcome_rows": summary.outcomes,
        "days": days,
        "champion_version": str(champion.version),
        "champion_trees": booster.num_trees(),
        "champion_auc": champion.metrics.get("auc"),
        "seconds": round(time.perf_counter() - began, 3),
    }


def generate_day(aios_home: str, day: str, rows: int, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """The benchmark day's landing file (CSV), ``rows`` applications."""
    from aios_pipelines.synthetic.generator import write_landing

    paths = _paths(aios_home)
    began = time.perf_counter()
    summary = write_landing(paths.landing, start=dt.date.fromisoformat(day), days=1, per_day=rows, seed=seed,
                            file_format="csv")
    seconds = time.perf_counter() - began
    files = [str(p) for p in summary.application_files]
    return {
        "label": "set-up: write_landing of the day (untimed in the ratio)",
        "rows": summary.applications,
        "bad_rows": summary.bad_rows,
        "files": files,
        "bytes": sum(Path(f).stat().st_size for f in files),
        "seconds": round(seconds, 3),
        "rows_per_second": rate(summary.applications, seconds),
    }


def simulate_decisions(aios_home: str, max_cases: int) -> dict[str, Any]:
    """Simulated underwriters decide some of the published cases through the task API (as
    ``aios demo`` does), so the copy has decisions and events to carry."""
    _env(aios_home)
    from aios_pipelines.review.store import ReviewStore
    from aios_pipelines.synthetic.reviewers import simulate_reviews

    paths = _paths(aios_home)
    began = time.perf_counter()
    store = ReviewStore.for_paths(paths).create_all()
    done = simulate_reviews(store, max_cases=max_cases)
    return {
        "label": f"set-up: simulated underwriters decide up to {max_cases:,} cases (untimed)",
        "rows": done.get("decided"),
        "counts": done,
        "open_cases": store.status_counts().get("open", 0),
        "seconds": round(time.perf_counter() - began, 3),
    }


# ----------------------------------------------------------------------------------------
# the product: a Dagster job through the project's runner
# ----------------------------------------------------------------------------------------


def _step_assets(entries) -> dict[str, set[str]]:
    assets: dict[str, set[str]] = {}
    for entry in entries:
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        keys = assets.setdefault(event.step_key, set())
        if event.event_type_value == "ASSET_MATERIALIZATION":
            keys.add(event.asset_key.to_user_string())
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            keys.add(event.asset_check_evaluation_data.asset_key.to_user_string())
    return assets


def event_log_timing(entries) -> dict[str, Any]:
    """Per step: STEP_START -> STEP_SUCCESS seconds, the seconds from that step's last
    materialization/check/output event to STEP_SUCCESS (``after_outputs``), and the run's time
    outside any step (RUN_START -> first step, between steps, last step -> RUN_SUCCESS)."""
    run_start = run_end = None
    steps: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for entry in entries:
        event = entry.dagster_event
        if event is None:
            continue
        kind = event.event_type_value
        ts = entry.timestamp
        # Dagster's values for the run events keep their old names (PIPELINE_START, ...)
        if kind in ("RUN_START", "PIPELINE_START"):
            run_start = ts
        elif kind in ("RUN_SUCCESS", "RUN_FAILURE", "PIPELINE_SUCCESS", "PIPELINE_FAILURE"):
            run_end = ts
        key = event.step_key
        if not key:
            continue
        step = steps.setdefault(key, {"events": 0})
        step["events"] += 1
        if kind == "STEP_START":
            step["start"] = ts
            order.append(key)
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            step["end"] = ts
            step["status"] = kind
        elif kind in ("ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION", "STEP_OUTPUT"):
            step["last_output"] = ts
    assets = _step_assets(entries)
    table = {}
    inside = 0.0
    for key in order:
        step = steps[key]
        if "start" not in step or "end" not in step:
            continue
        seconds = step["end"] - step["start"]
        inside += seconds
        table[key] = {
            "seconds": round(seconds, 4),
            "after_outputs_seconds": round(step["end"] - step.get("last_output", step["end"]), 4),
            "events": step["events"],
            "status": step.get("status"),
            "assets": sorted(assets.get(key, ())),
        }
    run_seconds = (run_end - run_start) if run_start is not None and run_end is not None else None
    gaps = []
    previous = run_start
    for key in order:
        step = steps[key]
        if previous is not None and "start" in step:
            gaps.append(step["start"] - previous)
        previous = step.get("end", previous)
    tail = (run_end - previous) if run_end is not None and previous is not None else None
    return {
        "steps": table,
        "run_seconds": round(run_seconds, 4) if run_seconds is not None else None,
        "steps_seconds": round(inside, 4),
        "outside_steps_seconds": round(run_seconds - inside, 4) if run_seconds is not None else None,
        "before_each_step_seconds": [round(g, 4) for g in gaps],
        "after_last_step_seconds": round(tail, 4) if tail is not None else None,
    }


def product_job(aios_home: str, job: str, day: str | None = None, rows: int | None = None) -> dict[str, Any]:
    """``run_job(job)`` for ``day`` (or unpartitioned), timed in parts: importing the code
    location, loading the definitions, the run_job call; and the run's event log."""
    _env(aios_home)
    t0 = time.perf_counter()
    import dagster  # noqa: F401

    from aios_pipelines.definitions import defs as load_defs
    from aios_pipelines.defs.instance import get_instance
    from aios_pipelines.defs.runner import run_job

    t1 = time.perf_counter()
    load_defs().resolve_job_def(job)
    t2 = time.perf_counter()
    load_defs()  # what run_job pays again on a warm process
    t3 = time.perf_counter()
    instance = get_instance(_paths(aios_home))
    rss_before = current_rss_mib()
    first = dt.date.fromisoformat(day) if day else None
    t4 = time.perf_counter()
    result = run_job(job, first_day=first, last_day=first, instance=instance, progress=_quiet)
    seconds = time.perf_counter() - t4
    entries = instance.all_logs(result.run_id)
    timing = event_log_timing(entries)
    checks = [e.dagster_event.asset_check_evaluation_data for e in entries
              if e.dagster_event is not None and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
    return {
        "label": f"ours: run_job('{job}')" + (f" for {day}" if day else ""),
        "job": job,
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_second": rate(rows, seconds),
        "import_seconds": round(t1 - t0, 3),
        "definitions_load_seconds": round(t2 - t1, 3),
        "definitions_reload_seconds": round(t3 - t2, 3),
        "run_id": result.run_id,
        "executor": "in_process",
        "run_job_outside_run_seconds": round(seconds - (timing["run_seconds"] or 0.0), 3),
        "event_log": timing,
        "events": len(entries),
        "checks": len(checks),
        "checks_not_passing": sorted({c.check_name for c in checks if not c.passed}),
        "rss_before_timed_mib": round(rss_before, 1) if rss_before is not None else None,
    }


# ----------------------------------------------------------------------------------------
# baselines
# ----------------------------------------------------------------------------------------


def _fresh(path: str) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in (target, target.with_name(target.name + ".wal")):
        stale.unlink(missing_ok=True)
    return target


def baseline_ingest(files: list[str], database_path: str) -> dict[str, Any]:
    """DuckDB's ``read_csv`` of the day's file(s) into a table of a fresh file."""
    t0 = time.perf_counter()
    import duckdb

    t1 = time.perf_counter()
    database = _fresh(database_path)
    began = time.perf_counter()
    con = duckdb.connect(str(database))
    # sample_size=-1: type detection scans the whole file (the default 20,480-row sample typed
    # term_months BIGINT and then failed on a bad row's "n/a" further down)
    con.execute("create table t as select * from read_csv($files, sample_size=-1)", {"files": files})
    con.close()
    seconds = time.perf_counter() - began
    con = duckdb.connect(str(database), read_only=True)
    rows = con.execute("select count(*) from t").fetchone()[0]
    con.close()
    return {
        "label": "baseline: duckdb read_csv(sample_size=-1) of the day's file into a table",
        "rows": rows,
        "seconds": round(seconds, 3),
        "compute_seconds": round(seconds, 3),
        "rows_per_second": rate(rows, seconds),
        "import_seconds": round(t1 - t0, 3),
    }


def _day_frame(warehouse_path: str, table: str, date_column: str, day: str):
    from aios_pipelines.storage.warehouse import Warehouse

    warehouse = Warehouse(Path(warehouse_path))
    with warehouse.connect(read_only=True) as con:
        return con.sql(f"select * from {table} where {date_column} = ?::date", params=[day]).pl()


def baseline_features(warehouse_path: str, day: str, database_path: str, sample_rows: int = 20_000) -> dict[str, Any]:
    """The day's raw rows read from the warehouse, the same features in pandas, written to a
    fresh DuckDB file."""
    t0 = time.perf_counter()
    import duckdb
    import pandas  # noqa: F401

    from aios_pipelines.features.build import build_features
    from aios_pipelines.ingestion.contract import load_contract
    from aios_pipelines.settings import DEFAULT_CONTRACT_PATH
    from benchmarks.pandas_features import assert_same_features, build_features_pandas

    t1 = time.perf_counter()
    dataset = load_contract(DEFAULT_CONTRACT_PATH).applications
    # equal outputs first (untimed), on a sample
    raw = _day_frame(warehouse_path, RAW_TABLE, "landing_date", day)
    sample = raw.sample(n=min(sample_rows, raw.height), seed=0)
    assert_same_features(build_features(sample, dataset), build_features_pandas(sample.to_pandas(), dataset))
    del raw, sample
    gc.collect()
    database = _fresh(database_path)

    began = time.perf_counter()
    frame = _day_frame(warehouse_path, RAW_TABLE, "landing_date", day).to_pandas()
    read = time.perf_counter()
    features = build_features_pandas(frame, dataset)
    built = time.perf_counter()
    con = duckdb.connect(str(database))
    con.register("features_frame", features)
    con.execute("create table application_features as select * from features_frame")
    con.close()
    written = time.perf_counter()
    return {
        "label": "baseline: pandas features (read the day from DuckDB, build, write to DuckDB)",
        "rows": len(features),
        "seconds": round(written - began, 3),
        "compute_seconds": round(built - read, 3),
        "read_seconds": round(read - began, 3),
        "write_seconds": round(written - built, 3),
        "rows_per_second": rate(len(features), written - began),
        "import_seconds": round(t1 - t0, 3),
        "equal_to_polars_on_sample_rows": min(sample_rows, len(features)),
    }


def _registry(aios_home: str):
    from aios_pipelines.modeling.registry import ModelRegistry, default_registry_config

    return ModelRegistry(default_registry_config(_paths(aios_home)))


def baseline_score(aios_home: str, warehouse_path: str, day: str, database_path: str) -> dict[str, Any]:
    """The champion's ``Booster.predict`` on the day's feature matrix; around it, the bare I/O
    of a stage (read the features, write id + PD to a fresh DuckDB file)."""
    _env(aios_home)
    t0 = time.perf_counter()
    import duckdb
    import numpy as np
    import polars as pl

    from aios_pipelines.modeling.training import FeatureSpec, feature_matrix

    t1 = time.perf_counter()
    booster, card = _registry(aios_home).load_booster("champion")
    spec = FeatureSpec.from_dict(card["feature_spec"])
    database = _fresh(database_path)
    gc.collect()

    began = time.perf_counter()
    features = _day_frame(warehouse_path, FEATURES_TABLE, "application_date", day)
    read = time.perf_counter()
    matrix = feature_matrix(features, spec)
    built = time.perf_counter()
    pd_values = booster.predict(matrix)
    predicted = time.perf_counter()
    out = pl.DataFrame({"application_id": features["application_id"], "pd": pd_values})
    con = duckdb.connect(str(database))
    con.execute("create table scores as select * from out")
    con.close()
    written = time.perf_counter()
    return {
        "label": "baseline: Booster.predict on the day's matrix (+ read features, write id/PD)",
        "rows": len(pd_values),
        "seconds": round(written - began, 3),
        "compute_seconds": round(predicted - built, 3),
        "read_seconds": round(read - began, 3),
        "matrix_seconds": round(built - read, 3),
        "write_seconds": round(written - predicted, 3),
        "rows_per_second": rate(len(pd_values), written - began),
        "import_seconds": round(t1 - t0, 3),
        "trees": booster.num_trees(),
        "mean_pd": round(float(np.mean(pd_values)), 5),
    }


def baseline_score_contrib(aios_home: str, warehouse_path: str, day: str) -> dict[str, Any]:
    """The floor of scoring *with reasons*: ``Booster.predict`` on every row plus LightGBM's
    per-row contributions (``pred_contrib=True``) on the rows the product explained (those
    whose action the policy's ``reasons.required_for`` names), on the prepared matrix. Read
    after the product's scoring run, from its ``scored_applications``. Untimed for the stage,
    the product's tabulated TreeSHAP on the same rows, its seconds and its largest difference
    from ``pred_contrib``."""
    _env(aios_home)
    import polars as pl

    from aios_pipelines.modeling.training import FeatureSpec, feature_matrix
    from aios_pipelines.policy.policy import DEFAULT_POLICY_PATH, load_policy

    booster, card = _registry(aios_home).load_booster("champion")
    spec = FeatureSpec.from_dict(card["feature_spec"])
    required = list(load_policy(DEFAULT_POLICY_PATH).reasons.required_for)
    features = _day_frame(warehouse_path, FEATURES_TABLE, "application_date", day)
    actions = _day_frame(warehouse_path, "scored_applications", "application_date", day).select("application_id", "action")
    frame = features.join(actions, on="application_id", how="left")
    needs = frame["action"].is_in(required).to_numpy()
    matrix = feature_matrix(frame, spec)
    gc.collect()
    began = time.perf_counter()
    booster.predict(matrix)
    predicted = time.perf_counter()
    contributions = booster.predict(matrix[needs], pred_contrib=True)
    done = time.perf_counter()
    # the product's way to the same values (explanations.contributions), on the same rows
    from aios_pipelines.modeling.tree_shap import tree_shap_contributions

    tabulated_began = time.perf_counter()
    tabulated, method = tree_shap_contributions(booster, matrix[needs])
    tabulated_done = time.perf_counter()
    difference = float(abs(tabulated - contributions).max()) if len(contributions) else 0.0
    return {
        "label": "floor of scoring with reasons: Booster.predict (all rows) + pred_contrib (rows needing reasons)",
        "rows": int(matrix.shape[0]),
        "rows_needing_reasons": int(needs.sum()),
        "reasons_required_for": required,
        "seconds": round(done - began, 3),
        "compute_seconds": round(done - began, 3),
        "predict_seconds": round(predicted - began, 3),
        "pred_contrib_seconds": round(done - predicted, 3),
        "contribution_columns": int(contributions.shape[1]),
        "rows_per_second": rate(int(matrix.shape[0]), done - began),
        "tabulated_treeshap_seconds": round(tabulated_done - tabulated_began, 3),
        "tabulated_treeshap_method": method,
        "tabulated_vs_pred_contrib_max_abs_difference": difference,
        "pred_contrib_vs_tabulated_treeshap_ratio": round((done - predicted) / max(tabulated_done - tabulated_began, 1e-9), 2),
    }


def baseline_drift(aios_home: str, warehouse_path: str, day: str, report_path: str) -> dict[str, Any]:
    """Evidently's ``DataDriftPreset`` called directly on the same frames as the
    ``feature_drift_report`` asset (champion reference sample cut to the same 5,000 rows, the
    day's features, the same methods and thresholds), and its HTML saved."""
    _env(aios_home)
    import tempfile

    t0 = time.perf_counter()
    import polars as pl
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from aios_pipelines.features.build import feature_definition
    from aios_pipelines.ingestion.contract import load_contract
    from aios_pipelines.monitoring.drift import column_thresholds, column_types, reference_for_drift
    from aios_pipelines.monitoring.thresholds import DRIFT_ERROR_SHARE
    from aios_pipelines.settings import DEFAULT_CONTRACT_PATH

    t1 = time.perf_counter()
    registry = _registry(aios_home)
    champion = registry.champion()
    with tempfile.TemporaryDirectory() as tmp:
        reference = pl.read_parquet(registry.run_artifact(int(champion.version), "reference_sample.parquet", Path(tmp)))
    definition = feature_definition(load_contract(DEFAULT_CONTRACT_PATH).applications)
    features = [f for f in definition.features if f in reference.columns]
    reference = reference_for_drift(reference)
    current = _day_frame(warehouse_path, FEATURES_TABLE, "application_date", day)
    numerical, cats = column_types(features, definition.categorical)
    cast = [pl.col(c).cast(pl.Float64) for c in numerical] + [pl.col(c).cast(pl.Int64) for c in cats]
    t2 = time.perf_counter()
    current_pd = current.select(cast).select(features).to_pandas()
    reference_pd = reference.select(cast).select(features).to_pandas()
    t3 = time.perf_counter()
    num_threshold, cat_threshold = column_thresholds(len(current_pd))
    gc.collect()

    began = time.perf_counter()
    data_definition = DataDefinition(numerical_columns=numerical, categorical_columns=cats)
    preset = DataDriftPreset(columns=features, drift_share=DRIFT_ERROR_SHARE, num_method="wasserstein",
                             num_threshold=num_threshold, cat_method="jensenshannon", cat_threshold=cat_threshold)
    snapshot = Report([preset], include_tests=True).run(
        Dataset.from_pandas(current_pd, data_definition=data_definition),
        Dataset.from_pandas(reference_pd, data_definition=data_definition),
    )
    ran = time.perf_counter()
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(report_path))
    saved = time.perf_counter()
    return {
        "label": "baseline: Evidently DataDriftPreset run + save_html on the same frames",
        "rows": len(current_pd),
        "reference_rows": len(reference_pd),
        "features": len(features),
        "seconds": round(saved - began, 3),
        "compute_seconds": round(ran - began, 3),
        "run_seconds": round(ran - began, 3),
        "save_html_seconds": round(saved - ran, 3),
        "to_pandas_seconds_untimed": round(t3 - t2, 3),
        "rows_per_second": rate(len(current_pd), saved - began),
        "import_seconds": round(t1 - t0, 3),
        "html_bytes": Path(report_path).stat().st_size,
    }


REVIEW_TABLES = ("cases", "decisions", "review_events")


def baseline_copy(store_path: str, database_path: str) -> dict[str, Any]:
    """The review store's cases, decisions and events read with sqlite3 into polars and
    written to a fresh DuckDB file: a copy with no mapping, cursor or checks."""
    t0 = time.perf_counter()
    import sqlite3

    import duckdb
    import polars as pl

    t1 = time.perf_counter()
    database = _fresh(database_path)
    counts = {}
    began = time.perf_counter()
    source = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    target = duckdb.connect(str(database))
    for table in REVIEW_TABLES:
        cursor = source.execute(f"select * from {table}")
        names = [d[0] for d in cursor.description]
        frame = pl.DataFrame(cursor.fetchall(), schema=names, orient="row", infer_schema_length=None)
        target.execute(f"create table {table} as select * from frame")
        counts[table] = frame.height
    target.close()
    source.close()
    seconds = time.perf_counter() - began
    return {
        "label": "baseline: sqlite3 -> polars -> DuckDB of cases, decisions, events",
        "rows": sum(counts.values()),
        "rows_by_table": counts,
        "seconds": round(seconds, 3),
        "compute_seconds": round(seconds, 3),
        "rows_per_second": rate(sum(counts.values()), seconds),
        "import_seconds": round(t1 - t0, 3),
    }


def baseline_dbt(warehouse_path: str, work_dir: str) -> dict[str, Any]:
    """``dbt build`` by dbt's own CLI on the same warehouse; a ``dbt parse`` into the same
    target folder first (untimed) so dbt reuses its partial parse, as a warm deployment would."""
    dbt = str(Path(sys.executable).with_name("dbt"))
    project = PROJECT_ROOT / "dbt_project"
    work = Path(work_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ)
    env.update({"AIOS_WAREHOUSE_PATH": str(Path(warehouse_path).resolve()), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"})
    common = ["--project-dir", str(project), "--profiles-dir", str(project),
              "--target-path", str(work / "target"), "--log-path", str(work / "logs")]

    def invoke(command: str) -> tuple[float, subprocess.CompletedProcess]:
        began = time.perf_counter()
        done = subprocess.run([dbt, command, *common], env=env, capture_output=True, text=True, check=False)
        return time.perf_counter() - began, done

    parse_seconds, parsed = invoke("parse")
    if parsed.returncode != 0:
        raise RuntimeError(f"dbt parse failed:\n{parsed.stdout[-3000:]}\n{parsed.stderr[-2000:]}")
    seconds, built = invoke("build")
    results = json.loads((work / "target" / "run_results.json").read_text(encoding="utf-8"))
    statuses: dict[str, int] = {}
    for node in results.get("results", []):
        statuses[node.get("status")] = statuses.get(node.get("status"), 0) + 1
    elapsed = results.get("elapsed_time")
    return {
        "label": "baseline: `dbt build` by dbt's CLI (subprocess) on the same warehouse",
        "rows": None,
        "exit_code": built.returncode,
        "seconds": round(seconds, 3),
        "compute_seconds": round(elapsed, 3) if elapsed is not None else round(seconds, 3),
        "dbt_elapsed_seconds": round(elapsed, 3) if elapsed is not None else None,
        "warm_parse_seconds_untimed": round(parse_seconds, 3),
        "nodes_by_status": statuses,
    }


# ----------------------------------------------------------------------------------------
# Dagster's own overhead: a job whose steps do nothing
# ----------------------------------------------------------------------------------------

TRIVIAL_STEPS = 6


def _trivial_assets():
    import dagster as dg

    from aios_pipelines.defs.partitions import daily_partitions

    assets = []
    previous = None
    for index in range(TRIVIAL_STEPS):
        name = f"bench_trivial_{index}"

        def body(context):  # no annotations: this module uses postponed (string) annotations
            return dg.MaterializeResult(metadata={"rows": 0})

        asset = dg.asset(
            name=name,
            partitions_def=daily_partitions,
            pool="warehouse",
            deps=[previous] if previous else [],
        )(body)
        assets.append(asset)
        previous = name
    return assets


def trivial_job_in_process():
    import dagster as dg

    assets = _trivial_assets()
    return dg.Definitions(
        assets=assets,
        jobs=[dg.define_asset_job("bench_trivial_in_process", selection=[a.key for a in assets],
                                  executor_def=dg.in_process_executor)],
    ).resolve_job_def("bench_trivial_in_process")


def trivial_job_multiprocess():
    import dagster as dg

    assets = _trivial_assets()
    return dg.Definitions(
        assets=assets,
        jobs=[dg.define_asset_job("bench_trivial_multiprocess", selection=[a.key for a in assets],
                                  executor_def=dg.multiprocess_executor.configured({"max_concurrent": 2}))],
    ).resolve_job_def("bench_trivial_multiprocess")


def trivial_job(aios_home: str, executor: str, day: str, runs: int = 3) -> dict[str, Any]:
    """``TRIVIAL_STEPS`` chained partitioned assets in the ``warehouse`` pool that do nothing,
    on the same kind of instance as the product (SQLite storage under AIOS_HOME); ``runs``
    runs, the median kept. In-process: ``execute_in_process`` as ``run_job`` does;
    multiprocess: ``dg.execute_job`` of the reconstructable job (a process per step)."""
    _env(aios_home)
    import statistics

    import dagster as dg

    from aios_pipelines.defs.instance import get_instance

    instance = get_instance(_paths(aios_home))
    results = []
    for _ in range(runs):
        began = time.perf_counter()
        if executor == "in_process":
            result = trivial_job_in_process().execute_in_process(
                instance=instance, partition_key=day,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
            run_id = result.run_id
        elif executor == "multiprocess":
            with dg.execute_job(dg.reconstructable(trivial_job_multiprocess), instance=instance,
                                tags={"dagster/partition": day}) as result:
                run_id = result.run_id
                if not result.success:
                    raise RuntimeError("trivial multiprocess job failed")
        else:
            raise ValueError(executor)
        seconds = time.perf_counter() - began
        timing = event_log_timing(instance.all_logs(run_id))
        results.append((seconds, timing))
    results.sort(key=lambda r: r[0])
    seconds, timing = results[(len(results) - 1) // 2]
    step_seconds = [s["seconds"] for s in timing["steps"].values()]
    return {
        "label": f"Dagster alone: {TRIVIAL_STEPS} steps that do nothing, {executor} executor",
        "rows": None,
        "executor": executor,
        "steps": TRIVIAL_STEPS,
        "seconds": round(seconds, 3),
        "runs_seconds": [round(r[0], 3) for r in results],
        "per_step_seconds": round(seconds / TRIVIAL_STEPS, 4),
        "step_duration_median_seconds": round(statistics.median(step_seconds), 4) if step_seconds else None,
        "event_log": timing,
    }


# ----------------------------------------------------------------------------------------
# the benchmark: stages in order, figures, ratios, notes (run in the parent process)
# ----------------------------------------------------------------------------------------

BENCHMARK = "end_to_end"
HISTORY_START = "2026-01-01"
HISTORY_DAYS = 100  # 40 days of matured outcomes (60-day window): the 14-day OOT and early stopping fit
HISTORY_PER_DAY = 300
SIMULATED_REVIEWS = 400
SLOW_RATIO = 1.5
# the brief's stages, in nightly order: (stage, product job)
PRODUCT_JOBS = {
    "ingest": "ingest_applications",
    "score": "score_applications",
    "publish": "publish_review_cases",
    "drift": "monitor_applications",
    "copy": "copy_review_decisions",
    "dbt": "build_analytics",
}
RATIO_STAGES = ("ingest", "features", "score", "drift", "copy", "dbt")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _steps_matching(stage: dict[str, Any], predicate) -> float:
    return sum(s["seconds"] for key, s in stage["event_log"]["steps"].items() if predicate(key, set(s["assets"])))


def _is_features_step(key: str, assets: set[str]) -> bool:
    return bool(assets) and assets <= FEATURE_ASSETS


def _is_drift_step(key: str, assets: set[str]) -> bool:
    return bool(assets) and assets <= DRIFT_ASSETS


def _is_dbt_step(key: str, assets: set[str]) -> bool:
    return key.startswith(DBT_STEP_PREFIX)


def compare(stages: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Product seconds per brief stage, the baselines, and the ratios (pure: stage results in)."""
    from benchmarks.harness import ratio

    ingest_job = stages["job_ingest_applications"]
    features_steps = _steps_matching(ingest_job, _is_features_step)
    monitor = stages["job_monitor_applications"]
    analytics = stages["job_build_analytics"]
    product = {
        "ingest": ingest_job["seconds"] - features_steps,
        "features": features_steps,
        "score": stages["job_score_applications"]["seconds"],
        "drift": monitor["seconds"],
        "copy": stages["job_copy_review_decisions"]["seconds"],
        "dbt": analytics["seconds"],
    }
    matched = dict(product)
    matched["drift"] = _steps_matching(monitor, _is_drift_step)
    matched["dbt"] = _steps_matching(analytics, _is_dbt_step)
    baseline_names = {
        "ingest": "baseline_ingest_duckdb_read_csv",
        "features": "baseline_features_pandas",
        "score": "baseline_score_booster_predict",
        "drift": "baseline_drift_evidently",
        "copy": "baseline_copy_sqlite_to_duckdb",
        "dbt": "baseline_dbt_build_cli",
    }
    baseline = {k: stages[v]["seconds"] for k, v in baseline_names.items()}
    compute = {k: stages[v]["compute_seconds"] for k, v in baseline_names.items()}
    jobs = [f"job_{PRODUCT_JOBS[s]}" for s in ("ingest", "score", "drift", "copy", "dbt")]
    end_to_end = sum(stages[j]["seconds"] for j in jobs)
    end_to_end_fresh = sum(stages[j]["wall_seconds"] for j in jobs)
    total_baseline = sum(baseline.values())
    ratios: dict[str, Any] = {
        "end_to_end_vs_baselines_ratio": ratio(end_to_end, total_baseline),
        "end_to_end_seconds": round(end_to_end, 3),
        "baselines_seconds": round(total_baseline, 3),
        "end_to_end_vs_compute_only_baselines_ratio": ratio(end_to_end, sum(compute.values())),
        "end_to_end_fresh_processes_vs_baselines_ratio": ratio(end_to_end_fresh, total_baseline),
        "matched_steps_vs_baselines_ratio": ratio(sum(matched.values()), total_baseline),
    }
    for name in RATIO_STAGES:
        ratios[f"{name}_vs_baseline"] = ratio(product[name], baseline[name])
    ratios["drift_step_vs_baseline"] = ratio(matched["drift"], baseline["drift"])
    ratios["dbt_step_vs_baseline"] = ratio(matched["dbt"], baseline["dbt"])
    per_stage = {
        name: {"product_seconds": round(product[name], 3), "product_matched_steps_seconds": round(matched[name], 3),
               "baseline_seconds": baseline[name], "baseline_compute_seconds": compute[name]}
        for name in RATIO_STAGES
    }
    return ratios, per_stage


def dagster_overhead(stages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Dagster's own time in each product run and in the trivial job, per executor."""
    runs = {}
    for name, stage in stages.items():
        if not name.startswith("job_"):
            continue
        log = stage["event_log"]
        steps = log["steps"]
        runs[stage["job"]] = {
            "steps": len(steps),
            "run_job_seconds": stage["seconds"],
            "run_seconds_event_log": log["run_seconds"],
            "steps_seconds": log["steps_seconds"],
            "outside_steps_seconds": log["outside_steps_seconds"],
            "outside_steps_per_step_seconds": round(log["outside_steps_seconds"] / max(len(steps), 1), 4)
            if log["outside_steps_seconds"] is not None else None,
            "run_job_outside_run_seconds": stage["run_job_outside_run_seconds"],
            "after_outputs_seconds_total": round(sum(s["after_outputs_seconds"] for s in steps.values()), 4),
            "import_seconds": stage["import_seconds"],
            "definitions_load_seconds": stage["definitions_load_seconds"],
            "definitions_reload_seconds": stage["definitions_reload_seconds"],
            "process_wall_seconds": stage["wall_seconds"],
            "process_start_and_imports_seconds": round(stage["wall_seconds"] - stage["call_seconds"], 3),
            "executor": stage["executor"],
            "step_seconds": {k: s["seconds"] for k, s in steps.items()},
        }
    trivial = {}
    for executor in ("in_process", "multiprocess"):
        stage = stages.get(f"dagster_trivial_{executor}")
        if stage:
            trivial[executor] = {
                "steps": stage["steps"],
                "run_seconds": stage["seconds"],
                "per_step_seconds": stage["per_step_seconds"],
                "step_duration_median_seconds": stage["step_duration_median_seconds"],
                "outside_steps_seconds": stage["event_log"]["outside_steps_seconds"],
                "runs_seconds": stage["runs_seconds"],
            }
    return {"product_runs": runs, "trivial_job": trivial}


def run_end_to_end(rows: int, work: Path, seed: int = DEFAULT_SEED, trivial_runs: int = 3,
                   history_days: int = HISTORY_DAYS, history_per_day: int = HISTORY_PER_DAY,
                   repeat: int = 1) -> dict[str, Any]:
    """The nightly path once, each product job beside its baselines. With ``repeat`` > 1 every
    timed job and its baselines run ``repeat`` rounds, alternating (job, baselines, job, ...),
    each round on the same input (the copy's warehouse is restored between rounds: its state
    says what is already copied), and each stage keeps its median run (``median_run``)."""
    from benchmarks.harness import median_run, run_stage

    from aios_pipelines.settings import AiosPaths

    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    home = work / "aios_home"
    warehouse = str(AiosPaths(home).warehouse)
    store = str(AiosPaths(home).review_store)
    day = (dt.date.fromisoformat(HISTORY_START) + dt.timedelta(days=history_days)).isoformat()
    stages: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    module = "benchmarks.end_to_end"

    def stage(name: str, function: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        _log(f"- {name} ...")
        result = run_stage(f"{module}:{function}", kwargs)
        runs.setdefault(name, []).append(result)
        stages[name] = median_run(runs[name])
        # every figure so far, should a later stage fail
        (work / "stages.json").write_text(json.dumps(stages, indent=1, default=str), encoding="utf-8")
        _log(f"  {name:<36} {result.get('seconds', 0):>9.3f} s  (process {result['wall_seconds']:.1f} s)  "
             f"{result.get('peak_rss_mib', 0):>8.1f} MiB peak")
        return result

    setup: dict[str, Any] = {}
    setup["history"] = run_stage(f"{module}:setup_history", {"aios_home": str(home), "start": HISTORY_START,
                                                             "days": history_days, "per_day": history_per_day,
                                                             "seed": seed})
    _log(f"  history: {setup['history']['rows']:,} applications, champion v{setup['history']['champion_version']} "
         f"({setup['history']['champion_trees']} trees) in {setup['history']['seconds']} s")
    setup["generate_day"] = run_stage(f"{module}:generate_day",
                                      {"aios_home": str(home), "day": day, "rows": rows, "seed": seed + 1})
    files = setup["generate_day"]["files"]
    _log(f"  day {day}: {setup['generate_day']['rows']:,} applications in {setup['generate_day']['seconds']} s")

    job = lambda name: stage(f"job_{name}", "product_job",  # noqa: E731
                             {"aios_home": str(home), "job": name, "day": day, "rows": rows})
    # the ingest, scoring and monitoring jobs replace the day's partitions: a round is a re-run
    for _ in range(repeat):
        job("ingest_applications")
        stage("baseline_ingest_duckdb_read_csv", "baseline_ingest",
              {"files": files, "database_path": str(work / "baseline_ingest.duckdb")})
        stage("baseline_features_pandas", "baseline_features",
              {"warehouse_path": warehouse, "day": day, "database_path": str(work / "baseline_features.duckdb")})
    for _ in range(repeat):
        job("score_applications")
        stage("baseline_score_booster_predict", "baseline_score",
              {"aios_home": str(home), "warehouse_path": warehouse, "day": day,
               "database_path": str(work / "baseline_score.duckdb")})
    stage("floor_score_with_reasons_contrib", "baseline_score_contrib",
          {"aios_home": str(home), "warehouse_path": warehouse, "day": day})
    job("publish_review_cases")
    for _ in range(repeat):
        job("monitor_applications")
        stage("baseline_drift_evidently", "baseline_drift",
              {"aios_home": str(home), "warehouse_path": warehouse, "day": day,
               "report_path": str(work / "baseline_drift.html")})
    setup["simulate_decisions"] = run_stage(f"{module}:simulate_decisions",
                                            {"aios_home": str(home), "max_cases": SIMULATED_REVIEWS})
    before_copy = work / "warehouse_before_copy.duckdb"
    if repeat > 1:
        _checkpointed_copy(warehouse, before_copy)
    for round_ in range(repeat):
        if round_:
            _checkpointed_copy(str(before_copy), warehouse)  # the same first copy again
        stage("job_copy_review_decisions", "product_job", {"aios_home": str(home), "job": "copy_review_decisions"})
        stage("baseline_copy_sqlite_to_duckdb", "baseline_copy",
              {"store_path": store, "database_path": str(work / "baseline_copy.duckdb")})
    before_copy.unlink(missing_ok=True)
    for _ in range(repeat):
        stage("job_build_analytics", "product_job", {"aios_home": str(home), "job": "build_analytics"})
        stage("baseline_dbt_build_cli", "baseline_dbt", {"warehouse_path": warehouse, "work_dir": str(work / "dbt")})
    for executor in ("in_process", "multiprocess"):
        stage(f"dagster_trivial_{executor}", "trivial_job",
              {"aios_home": str(home), "executor": executor, "day": day, "runs": trivial_runs})
    ratios, per_stage = compare(stages)
    return {"stages": stages, "setup": setup, "ratios": ratios, "per_stage": per_stage, "repeat": repeat,
            "dagster_overhead": dagster_overhead(stages), "day": day, "home": str(home)}


def _checkpointed_copy(source: str, target: str) -> None:
    """Copy a closed DuckDB file whole (checkpointed first, so no WAL is left beside it)."""
    import duckdb

    duckdb.connect(source).execute("checkpoint").close()
    Path(f"{target}.wal").unlink(missing_ok=True)
    shutil.copyfile(source, target)


def profile_jobs(home: str, day: str, jobs: list[str], work: Path) -> dict[str, str]:
    """Run product jobs again (re-materializing the day: idempotent) under cProfile."""
    import io
    import pstats

    from benchmarks.harness import run_stage

    texts = {}
    for job in jobs:
        path = work / f"{job}.prof"
        _log(f"- profiling {job} under cProfile ...")
        partitioned = job not in ("copy_review_decisions", "build_analytics")
        run_stage("benchmarks.end_to_end:product_job",
                  {"aios_home": home, "job": job, **({"day": day} if partitioned else {})}, profile=path)
        stream = io.StringIO()
        stats = pstats.Stats(str(path), stream=stream)
        stats.strip_dirs()
        stream.write(f"===== {job}: by cumulative time =====\n")
        stats.sort_stats("cumulative").print_stats(45)
        stream.write(f"===== {job}: by own time =====\n")
        stats.sort_stats("tottime").print_stats(30)
        texts[job] = stream.getvalue()
    return texts


def _notes(outcome: dict[str, Any], rows: int) -> list[str]:
    s, r, setup = outcome["stages"], outcome["ratios"], outcome["setup"]
    over = outcome["dagster_overhead"]
    notes = [
        f"One day ({outcome['day']}) of {rows:,} applications (CSV, {setup['generate_day']['bytes'] / 2**20:.0f} MiB), "
        f"after a history of {setup['history']['rows']:,} applications over {HISTORY_DAYS} days ingested and a "
        f"champion trained by the product's jobs outside the timing (v{setup['history']['champion_version']}, "
        f"{setup['history']['champion_trees']} trees).",
        "Product stages: each job through aios_pipelines.defs.runner.run_job (execute_in_process, in_process "
        "executor as the jobs declare, persistent SQLite Dagster instance under AIOS_HOME), one fresh process per "
        "job; `seconds` is the run_job call on a loaded code location (imports and the definitions load are in "
        "import_seconds / definitions_load_seconds, and in the process wall time).",
        "end_to_end_seconds = the five jobs of the brief's path (ingest_applications, score_applications, "
        "monitor_applications, copy_review_decisions, build_analytics); publish_review_cases is timed but outside "
        f"the ratio ({s['job_publish_review_cases']['seconds']} s). ingest = the ingest job minus its "
        "application_features steps; features = those steps (event log).",
        (f"Every timed job and its baselines ran {outcome['repeat']} rounds, alternating (job, its baselines, the "
         "job again, ...), each round on the same input (the copy's warehouse restored before each round); each "
         "stage's figures are its median run's (runs_seconds lists every run in order). publish_review_cases, the "
         "contributions floor and the trivial jobs ran once." if outcome["repeat"] > 1 else
         "Each stage ran once (benchmarks/run.py --repeat N runs every timed job and its baselines N rounds and "
         "keeps each stage's median run)."),
        "Baselines each include the bare I/O needed for the same output (read the day from DuckDB, write the "
        "result to a DuckDB file); *_compute_seconds are the bare call alone (read_csv, pandas build, "
        "Booster.predict, Evidently run, the copy, dbt's own elapsed time). "
        "end_to_end_vs_compute_only_baselines_ratio divides by those.",
        "matched_steps_vs_baselines_ratio counts only the steps that do what the baselines do: "
        "feature_drift_report of monitor_applications (not score_stability, model_performance, risk_report) and "
        "the dbt step of build_analytics (not the forecasts).",
        "end_to_end_fresh_processes_vs_baselines_ratio uses each job's whole process (interpreter start, imports, "
        "definitions load, run), as the daemon's run launcher would pay per run.",
        f"Reviews: {setup['simulate_decisions']['rows']} cases decided by simulated underwriters through the task API "
        "before the copy (untimed).",
    ]
    trivial = over["trivial_job"]
    if trivial:
        notes.append(
            "Dagster alone (6 chained partitioned assets in the warehouse pool that do nothing, median of runs): "
            + "; ".join(f"{k}: {v['run_seconds']} s per run, {v['per_step_seconds']} s per step "
                        f"(step START->SUCCESS median {v['step_duration_median_seconds']} s)" for k, v in trivial.items())
        )
    for job, run in over["product_runs"].items():
        notes.append(
            f"{job}: {run['steps']} steps, run_job {run['run_job_seconds']} s = event-log run "
            f"{run['run_seconds_event_log']} s (steps {run['steps_seconds']} s, outside steps "
            f"{run['outside_steps_seconds']} s) + {run['run_job_outside_run_seconds']} s around the run; "
            f"process start + imports {run['process_start_and_imports_seconds']} s, definitions load "
            f"{run['definitions_load_seconds']} s (again on a warm process: {run['definitions_reload_seconds']} s); "
            f"slowest steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in
                                           sorted(run["step_seconds"].items(), key=lambda kv: -kv[1])[:4])
        )
    return notes


def record_end_to_end(argv: list[str] | None, machine: dict[str, Any], *, rows: int, seed: int, keep: bool,
                      profile: bool, results_dir: Path, command: str, default_rows: int,
                      repeat: int = 1) -> dict[str, Any]:
    from benchmarks.harness import load_average, make_work_dir, record_results

    _log(f"end-to-end benchmark: one day of {rows:,} applications, {repeat} round(s) per timed stage; "
         f"{machine['cores']} cores, {machine['cpu_model']}, load average {load_average()}")
    work = make_work_dir(BENCHMARK)
    _log(f"work directory: {work}")
    before = load_average()
    started = dt.datetime.now().astimezone()
    key = BENCHMARK if rows == default_rows else f"{BENCHMARK}_rows_{rows}"
    day = started.date()
    try:
        outcome = run_end_to_end(rows, work, seed=seed, repeat=repeat)
        after = load_average()
        entry = {
            "benchmark": BENCHMARK,
            "recorded_at": started.isoformat(timespec="seconds"),
            "finished_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": command,
            "params": {"rows": rows, "day": outcome["day"], "seed": seed, "repeat": repeat, "history_days": HISTORY_DAYS,
                       "history_per_day": HISTORY_PER_DAY, "simulated_reviews": SIMULATED_REVIEWS},
            "machine": machine,
            "load_average": {"before": before, "after": after},
            "stages": outcome["stages"],
            "ratios": outcome["ratios"],
            "per_stage": outcome["per_stage"],
            "dagster_overhead": outcome["dagster_overhead"],
            "setup": outcome["setup"],
            "notes": _notes(outcome, rows),
        }
        json_path, md_path = record_results(key, entry, results_dir=results_dir, day=day)
        if rows == default_rows:
            record_results("end_to_end_vs_baselines_ratio", outcome["ratios"]["end_to_end_vs_baselines_ratio"],
                           results_dir=results_dir, day=day)
        print(f"end to end, {rows:,} applications ({key}):")
        for name, value in outcome["ratios"].items():
            print(f"  {name} = {value}")
        print(f"results: {json_path} and {md_path}", flush=True)
        if profile:
            slow = [PRODUCT_JOBS[name if name != "features" else "ingest"] for name in RATIO_STAGES
                    if (outcome["ratios"].get(f"{name}_vs_baseline") or 0) > SLOW_RATIO]
            for job, text in profile_jobs(outcome["home"], outcome["day"], sorted(set(slow)), work).items():
                path = results_dir / f"{day.isoformat()}-{key}-{job}-profile.txt"
                path.write_text(text, encoding="utf-8")
                print(f"profile: {path}", flush=True)
        return entry
    finally:
        if keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
