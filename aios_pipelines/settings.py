"""Where the platform keeps its state.

Everything a run reads or writes lives under one data directory, ``AIOS_HOME``, so two
data directories never share a file. Nothing here imports Dagster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_ASSETS_DIR = PROJECT_ROOT / "assets"
DEFAULT_CONTRACT_PATH = SHIPPED_ASSETS_DIR / "contract" / "credit_applications.yaml"
DEFAULT_AIOS_HOME = PROJECT_ROOT / ".aios_home"


@dataclass(frozen=True)
class AiosPaths:
    """The layout of one data directory."""

    home: Path

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse" / "aios.duckdb"

    @property
    def review_store(self) -> Path:
        return self.home / "review" / "review.sqlite"

    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow" / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlflow" / "artifacts"

    @property
    def mlflow_tracking_uri(self) -> str:
        """SQLite backend; four slashes before an absolute path (MLflow 3 refuses ./mlruns)."""
        return f"sqlite:///{self.mlflow_db.expanduser().resolve().as_posix()}"

    @property
    def mlflow_artifact_uri(self) -> str:
        return self.mlflow_artifacts.expanduser().resolve().as_uri()

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def control(self) -> Path:
        """Operator switches (automation pause) and similar small state files."""
        return self.home / "control"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    def ensure(self) -> "AiosPaths":
        for folder in (
            self.landing,
            self.warehouse.parent,
            self.review_store.parent,
            self.mlflow_artifacts,
            self.reports,
            self.control,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def aios_home() -> Path:
    """The data directory: ``$AIOS_HOME`` when set, else ``.aios_home`` in the checkout."""
    configured = os.environ.get("AIOS_HOME")
    return Path(configured).expanduser().resolve() if configured else DEFAULT_AIOS_HOME


def aios_paths() -> AiosPaths:
    return AiosPaths(aios_home())


def contract_path() -> Path:
    """The data contract in force: ``$AIOS_CONTRACT`` when set, else the shipped one."""
    configured = os.environ.get("AIOS_CONTRACT")
    return Path(configured).expanduser().resolve() if configured else DEFAULT_CONTRACT_PATH
