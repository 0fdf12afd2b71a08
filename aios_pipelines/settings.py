"""Where the platform keeps its state.

Everything a run reads or writes lives under one data directory, ``AIOS_HOME``, so two
data directories never share a file. Nothing here imports Dagster.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_ASSETS_DIR = PROJECT_ROOT / "assets"
DEFAULT_CONTRACT_PATH = SHIPPED_ASSETS_DIR / "contract" / "credit_applications.yaml"
DEFAULT_AIOS_HOME = PROJECT_ROOT / ".aios_home"


class DataDirectoryError(RuntimeError):
    """The data directory (or a folder in it) cannot be created or written: read-only, not
    ours, or on a full disk. The message names the path."""


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

    def _folders(self) -> tuple[Path, ...]:
        return (
            self.landing,
            self.warehouse.parent,
            self.review_store.parent,
            self.mlflow_artifacts,
            self.reports,
            self.control,
        )

    def ensure(self) -> "AiosPaths":
        for folder in self._folders():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DataDirectoryError(
                    f"cannot create {folder} in the data directory AIOS_HOME={self.home}: "
                    f"{exc.strerror or exc}. Point AIOS_HOME at a folder you can write to."
                ) from exc
        return self

    def check_writable(self, extra: Iterable[Path] = ()) -> "AiosPaths":
        """Fail early, naming the path, when a run could not write its stores: a folder or a
        store file is read-only, or the disk refuses a new file."""
        for folder in (*self._folders(), *extra):
            try:
                with tempfile.TemporaryFile(dir=folder, prefix=".aios-write-check-"):
                    pass
            except OSError as exc:
                raise DataDirectoryError(
                    f"cannot write to {folder} (AIOS_HOME={self.home}): {exc.strerror or exc}. "
                    "Point AIOS_HOME at a folder you can write to, or free space on its disk."
                ) from exc
        for store in (self.warehouse, self.review_store, self.mlflow_db):
            if store.exists() and not os.access(store, os.W_OK):
                raise DataDirectoryError(
                    f"cannot write to {store} (AIOS_HOME={self.home}): the file is read-only."
                )
        return self


def aios_home() -> Path:
    """The data directory: ``$AIOS_HOME`` when set, else ``.aios_home`` in the checkout."""
    configured = os.environ.get("AIOS_HOME")
    return Path(configured).expanduser().resolve() if configured else DEFAULT_AIOS_HOME


def aios_paths() -> AiosPaths:
    return AiosPaths(aios_home())


MLFLOW_TRACKING_URI_ENV = "AIOS_MLFLOW_TRACKING_URI"


def mlflow_tracking_uri(paths: AiosPaths) -> str:
    """The model registry in force: ``$AIOS_MLFLOW_TRACKING_URI`` (a tracking server or a
    database) when set, else the data directory's embedded SQLite one. The pipeline's
    resources, the online decisions and every ``aios`` command read it here, so an
    operator's promote or rollback reaches the registry that scores."""
    return os.environ.get(MLFLOW_TRACKING_URI_ENV) or paths.mlflow_tracking_uri


def contract_path() -> Path:
    """The data contract in force: ``$AIOS_CONTRACT`` when set, else the shipped one."""
    configured = os.environ.get("AIOS_CONTRACT")
    return Path(configured).expanduser().resolve() if configured else DEFAULT_CONTRACT_PATH
