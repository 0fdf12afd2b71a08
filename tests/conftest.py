"""Shared fixtures. Every test that touches state gets its own AIOS_HOME under tmp_path."""

from __future__ import annotations

import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

import itertools  # noqa: E402
import shutil  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from aios_pipelines.ingestion.contract import DataContract, load_contract  # noqa: E402
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH, PROJECT_ROOT, AiosPaths  # noqa: E402
from aios_pipelines.storage.postgres_server import FAST_SETTINGS, PostgresServer, PostgresUnavailable  # noqa: E402

TEST_START = date(2026, 3, 2)


def _own_dbt_target_per_worker() -> None:
    """Under pytest-xdist (`make test` runs two workers) each worker's dbt builds get their own
    target folder, as two deployments sharing one checkout would need: the parse a build
    leaves for the next (dbt_assets.py) is then this worker's, not one the other worker made
    for another warehouse. Each starts from the parse `make dbt-manifest` prepared."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker or "DBT_TARGET_PATH" in os.environ:
        return
    shared = PROJECT_ROOT / "dbt_project" / "target"  # dbt_project.py's DBT_PROJECT_DIR
    own = shared / f"pytest-{worker}"
    own.mkdir(parents=True, exist_ok=True)
    prepared = shared / "partial_parse.msgpack"
    if prepared.is_file():
        shutil.copyfile(prepared, own / prepared.name)
    os.environ["DBT_TARGET_PATH"] = str(own)


_own_dbt_target_per_worker()


@pytest.fixture(scope="session")
def contract() -> DataContract:
    return load_contract(DEFAULT_CONTRACT_PATH)


@pytest.fixture()
def aios_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AiosPaths:
    home = tmp_path / "aios_home"
    monkeypatch.setenv("AIOS_HOME", str(home))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return AiosPaths(home).ensure()


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """One throwaway PostgreSQL server for the session (127.0.0.1, a free port, a temp
    directory, fsync off), stopped and removed at the end. Missing binaries fail the tests
    that need it, with what to install: PostgreSQL is part of what `make test` tests."""
    server = PostgresServer(settings=FAST_SETTINGS, prefix="aios_test_pg_")
    try:
        server.start()
    except PostgresUnavailable as exc:
        problem = str(exc)
    else:
        problem = None
    if problem:
        pytest.fail(f"the PostgreSQL tests need a local PostgreSQL server: {problem}", pytrace=False)
    yield server
    server.stop()


_databases = itertools.count(1)


@pytest.fixture()
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL (psycopg 3) of a fresh, empty database on the session's server."""
    return postgres_server.create_database(f"aios_test_{next(_databases)}")
