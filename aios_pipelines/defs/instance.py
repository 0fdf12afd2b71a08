"""The Dagster instance the CLI and ``make dev`` use: ``$DAGSTER_HOME`` when set, else a
folder inside ``AIOS_HOME``, configured for an offline machine with one warehouse writer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg

from aios_pipelines.settings import AiosPaths, DataDirectoryError, aios_paths

DAGSTER_YAML = """\
# Written by aios on first use; edit freely, it is not overwritten.
telemetry:
  enabled: false
nux:
  enabled: false
# DuckDB allows one writing process per file: every asset that writes the warehouse is in
# the "warehouse" pool, and a pool admits one step at a time across all runs.
concurrency:
  pools:
    default_limit: 1
# Frees pool slots held by runs that crashed or were killed.
run_monitoring:
  enabled: true
  free_slots_after_run_end_seconds: 30
"""


def sqlite_instance_yaml(home: Path) -> str:
    """``DAGSTER_YAML`` with Dagster's SQLite storage in ``home``, its event log kept on open
    connections (``PooledSqliteEventLogStorage``: a dbt build's 600 events cost 3 s instead
    of 10). The path is absolute: a moved instance folder needs it changed, or the block
    deleted to fall back to Dagster's own class over the same files."""
    return DAGSTER_YAML + (
        "# Dagster's SQLite event log, with each database's connection kept open between events\n"
        "# (aios_pipelines/storage/dagster_event_log.py); the same files as Dagster's own class.\n"
        "event_log_storage:\n"
        "  module: aios_pipelines.storage.dagster_event_log\n"
        "  class: PooledSqliteEventLogStorage\n"
        "  config:\n"
        f"    base_dir: {json.dumps(str(home.resolve() / 'history' / 'runs'))}\n"
    )


def postgres_instance_yaml(*, username: str, hostname: str, port: int, db_name: str) -> str:
    """``DAGSTER_YAML`` (pools, run monitoring) with run, event-log and schedule storage in
    PostgreSQL (dagster-postgres) for a server that trusts the user, as the tests' does; a
    deployment adds ``password: {env: DAGSTER_PG_PASSWORD}`` (docs/DEPLOYMENT.md).
    ``scheme: postgresql+psycopg2``: dagster-postgres issues ``NOTIFY run_events, %(id)s``,
    which only psycopg2 accepts, and SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3."""
    return DAGSTER_YAML + (
        "storage:\n"
        "  postgres:\n"
        "    postgres_db:\n"
        f"      username: {username}\n"
        f"      hostname: {hostname}\n"
        f"      port: {port}\n"
        f"      db_name: {db_name}\n"
        "      scheme: postgresql+psycopg2\n"
    )


def dagster_home(paths: AiosPaths | None = None) -> Path:
    configured = os.environ.get("DAGSTER_HOME")
    home = Path(configured) if configured else (paths or aios_paths()).dagster_home
    config = home / "dagster.yaml"
    try:
        home.mkdir(parents=True, exist_ok=True)
        if not config.exists():
            config.write_text(sqlite_instance_yaml(home))
    except OSError as exc:
        raise DataDirectoryError(
            f"cannot set up the Dagster instance in {home}: {exc.strerror or exc}. "
            "Point AIOS_HOME (or DAGSTER_HOME) at a folder you can write to."
        ) from exc
    return home


def get_instance(paths: AiosPaths | None = None) -> dg.DagsterInstance:
    home = dagster_home(paths)
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()
