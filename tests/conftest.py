"""Shared fixtures. Every test that touches state gets its own AIOS_HOME under tmp_path."""

from __future__ import annotations

import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from aios_pipelines.ingestion.contract import DataContract, load_contract  # noqa: E402
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH, AiosPaths  # noqa: E402

TEST_START = date(2026, 3, 2)


@pytest.fixture(scope="session")
def contract() -> DataContract:
    return load_contract(DEFAULT_CONTRACT_PATH)


@pytest.fixture()
def aios_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AiosPaths:
    home = tmp_path / "aios_home"
    monkeypatch.setenv("AIOS_HOME", str(home))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return AiosPaths(home).ensure()
