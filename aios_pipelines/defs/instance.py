"""The Dagster instance the CLI and ``make dev`` use: ``$DAGSTER_HOME`` when set, else a
folder inside ``AIOS_HOME``, configured for an offline machine with one warehouse writer."""

from __future__ import annotations

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
            config.write_text(DAGSTER_YAML)
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
