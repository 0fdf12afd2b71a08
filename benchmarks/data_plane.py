"""Data-plane benchmark stages. Each function is one stage, run by ``harness.run_stage`` in
its own process, and returns a dict whose ``seconds`` covers only the work being measured
(inputs are prepared, and outputs verified, outside the timer).

* ``generate``: the synthetic lender writes the landing files (``write_landing``).
* ``ingest``: ours. Per landing day, ``load_landing_day`` (read, contract validation,
  quarantine) then ``Warehouse.replace_partitions`` of the raw and quarantine tables into a
  fresh DuckDB file, as the ``raw_applications`` asset does.
* ``duckdb_read``: the baseline. One ``create table t as select * from read_csv([...])``
  (or ``read_parquet``) over the same files into a fresh DuckDB file: DuckDB's own reader
  with type auto-detection and no validation at all, the floor for getting the bytes in.
* ``features_polars`` / ``features_pandas``: ``build_features`` over the ingested rows, and
  the pandas twin in ``benchmarks/pandas_features.py`` (checked equal on a sample first).
"""

from __future__ import annotations

import datetime as dt
import gc
import shutil
import time
from pathlib import Path
from typing import Any

import duckdb

from aios_pipelines.features.build import build_features
from aios_pipelines.ingestion.contract import load_contract
from aios_pipelines.ingestion.load import load_landing_day
from aios_pipelines.ingestion.validation import LANDING_DATE
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH
from aios_pipelines.storage.warehouse import Warehouse
from aios_pipelines.synthetic.generator import write_landing
from benchmarks.harness import rate, timed_median
from benchmarks.stages import current_rss_mib

RAW_TABLE = "raw_applications"
QUARANTINE_TABLE = "quarantined_applications"
DEFAULT_START = "2026-01-01"
DEFAULT_SEED = 42


def _dataset():
    return load_contract(DEFAULT_CONTRACT_PATH).applications


def _fresh_file(path: Path) -> Path:
    """Remove a DuckDB file (and its WAL) so the stage starts from nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    return path


def _days(start: str, days: int) -> list[dt.date]:
    first = dt.date.fromisoformat(start)
    return [first + dt.timedelta(days=i) for i in range(days)]


def landing_application_files(landing_dir: Path, file_format: str) -> list[str]:
    """The application files of a landing area, in day order (as the baseline reads them)."""
    return sorted(str(p) for p in (Path(landing_dir) / "applications").glob(f"*/*.{file_format}"))


# ----------------------------------------------------------------------------------------
# generate
# ----------------------------------------------------------------------------------------


def generate(
    landing_dir: str,
    rows: int,
    days: int,
    file_format: str,
    seed: int = DEFAULT_SEED,
    start: str = DEFAULT_START,
) -> dict[str, Any]:
    landing = Path(landing_dir)
    # write_landing leaves identical files untouched: start empty so every byte is written
    shutil.rmtree(landing, ignore_errors=True)
    per_day = rows // days
    began = time.perf_counter()
    summary = write_landing(
        landing, start=dt.date.fromisoformat(start), days=days, per_day=per_day, seed=seed, file_format=file_format
    )
    seconds = time.perf_counter() - began
    written = sum(p.stat().st_size for p in summary.application_files + summary.outcome_files)
    return {
        "label": f"write_landing, {file_format}",
        "format": file_format,
        "rows": summary.applications,
        "days": summary.days,
        "per_day": per_day,
        "bad_rows": summary.bad_rows,
        "outcome_rows": summary.outcomes,
        "files": len(summary.application_files) + len(summary.outcome_files),
        "bytes_written": written,
        "seconds": round(seconds, 3),
        "rows_per_second": rate(summary.applications, seconds),
    }


# ----------------------------------------------------------------------------------------
# ingest (ours)
# ----------------------------------------------------------------------------------------


def ingest(landing_dir: str, warehouse_path: str, days: int, start: str = DEFAULT_START) -> dict[str, Any]:
    dataset = _dataset()
    warehouse = Warehouse(_fresh_file(Path(warehouse_path)))
    landing = Path(landing_dir)
    load_seconds = write_seconds = 0.0
    rows_read = rows_loaded = rows_quarantined = files = 0
    unreconciled: list[str] = []

    began = time.perf_counter()
    for day in _days(start, days):
        t0 = time.perf_counter()
        day_load = load_landing_day(landing, dataset, day)
        t1 = time.perf_counter()
        warehouse.replace_partitions(RAW_TABLE, day_load.loaded, LANDING_DATE, [day])
        warehouse.replace_partitions(QUARANTINE_TABLE, day_load.quarantined, LANDING_DATE, [day])
        t2 = time.perf_counter()
        load_seconds += t1 - t0
        write_seconds += t2 - t1
        rows_read += day_load.rows_read
        rows_loaded += day_load.loaded.height
        rows_quarantined += day_load.quarantined.height
        files += len(day_load.files)
        unreconciled += [f.file for f in day_load.files if not f.reconciles]
    seconds = time.perf_counter() - began

    stored = warehouse.scalar(f"select count(*) from {RAW_TABLE}")
    stored_quarantine = warehouse.scalar(f"select count(*) from {QUARANTINE_TABLE}")
    if unreconciled or stored != rows_loaded or stored_quarantine != rows_quarantined:
        raise AssertionError(
            f"ingest lost rows: stored {stored}/{rows_loaded} loaded, {stored_quarantine}/{rows_quarantined} "
            f"quarantined; files not reconciling: {unreconciled}"
        )
    if rows_read == 0:
        raise AssertionError(f"no landing files under {landing}")
    return {
        "label": "ours: load_landing_day + Warehouse.replace_partitions",
        "rows": rows_read,
        "rows_loaded": rows_loaded,
        "rows_quarantined": rows_quarantined,
        "files": files,
        "seconds": round(seconds, 3),
        "rows_per_second": rate(rows_read, seconds),
        "load_seconds": round(load_seconds, 3),
        "write_seconds": round(write_seconds, 3),
        "warehouse_bytes": Path(warehouse_path).stat().st_size,
    }


# ----------------------------------------------------------------------------------------
# duckdb baseline
# ----------------------------------------------------------------------------------------


def duckdb_read(landing_dir: str, database_path: str, file_format: str) -> dict[str, Any]:
    reader = {"csv": "read_csv", "parquet": "read_parquet"}[file_format]
    files = landing_application_files(Path(landing_dir), file_format)
    if not files:
        raise AssertionError(f"no {file_format} application files under {landing_dir}")
    database = _fresh_file(Path(database_path))

    began = time.perf_counter()
    con = duckdb.connect(str(database))
    con.execute(f"create table t as select * from {reader}($files)", {"files": files})
    con.close()
    seconds = time.perf_counter() - began

    con = duckdb.connect(str(database), read_only=True)
    try:
        rows = con.execute("select count(*) from t").fetchone()[0]
        types = {name: kind for name, kind, *_ in con.execute("describe t").fetchall()}
    finally:
        con.close()
    return {
        "label": f"baseline: duckdb {reader}([...]) into a table",
        "rows": rows,
        "files": len(files),
        "seconds": round(seconds, 3),
        "rows_per_second": rate(rows, seconds),
        "column_types": types,
        "database_bytes": database.stat().st_size,
    }


# ----------------------------------------------------------------------------------------
# features
# ----------------------------------------------------------------------------------------


def _ingested_applications(warehouse_path: str):
    return Warehouse(Path(warehouse_path)).query(f"select * from {RAW_TABLE} order by landing_date, source_row")


def features_polars(warehouse_path: str, repeat: int = 5) -> dict[str, Any]:
    dataset = _dataset()
    applications = _ingested_applications(warehouse_path)
    rss_before = current_rss_mib()
    seconds, runs, features = timed_median(lambda: build_features(applications, dataset), repeat)
    return {
        "label": "ours: build_features (polars)",
        "rows": features.height,
        "feature_columns": features.width,
        "seconds": round(seconds, 4),
        "rows_per_second": rate(features.height, seconds),
        "inner_runs_seconds": [round(s, 4) for s in runs],
        "rss_before_timed_mib": round(rss_before, 1) if rss_before is not None else None,
    }


def features_pandas(warehouse_path: str, repeat: int = 5, sample_rows: int = 50_000) -> dict[str, Any]:
    from benchmarks.pandas_features import assert_same_features, build_features_pandas

    dataset = _dataset()
    applications = _ingested_applications(warehouse_path)
    # equal outputs first, on a sample that keeps every missing/unknown case the data has
    sample = applications.sample(n=min(sample_rows, applications.height), seed=0)
    assert_same_features(build_features(sample, dataset), build_features_pandas(sample.to_pandas(), dataset))
    checked = sample.height

    frame = applications.to_pandas()
    del applications, sample
    gc.collect()
    rss_before = current_rss_mib()
    seconds, runs, features = timed_median(lambda: build_features_pandas(frame, dataset), repeat)
    return {
        "label": "baseline: the same features in pandas",
        "rows": len(features),
        "feature_columns": features.shape[1],
        "seconds": round(seconds, 4),
        "rows_per_second": rate(len(features), seconds),
        "inner_runs_seconds": [round(s, 4) for s in runs],
        "rss_before_timed_mib": round(rss_before, 1) if rss_before is not None else None,
        "equal_to_polars_on_sample_rows": checked,
    }
