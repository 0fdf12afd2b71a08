"""One resource per store. Paths default to the data directory, ``AIOS_HOME``."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from aios_pipelines.ingestion.contract import DataContract, load_contract
from aios_pipelines.settings import AiosPaths, aios_paths, contract_path, mlflow_tracking_uri
from aios_pipelines.storage.postgres_warehouse import PostgresWarehouse
from aios_pipelines.storage.warehouse import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The analytics warehouse: a DuckDB file (``path``) by default, or PostgreSQL when ``url``
    is set (``postgresql://user@host:port/dbname``; ``AIOS_WAREHOUSE_URL`` in the environment).
    Both engines have the same methods, so the assets do not know which one they write.
    Writers use the ``warehouse`` pool."""

    path: str
    url: str | None = None
    lock_timeout_seconds: float = 300.0

    @property
    def engine(self) -> str:
        return "postgres" if self.url else "duckdb"

    def get(self) -> Warehouse | PostgresWarehouse:
        if self.url:
            return PostgresWarehouse(self.url)
        return Warehouse(Path(self.path), lock_timeout_seconds=self.lock_timeout_seconds)


class LandingResource(dg.ConfigurableResource):
    """The landing folder lenders drop files into, and the data contract they follow."""

    landing_dir: str
    contract_path: str

    @property
    def directory(self) -> Path:
        return Path(self.landing_dir)

    def contract(self) -> DataContract:
        return load_contract(self.contract_path)

    def reason_catalog(self) -> dict:
        """Reason codes declared beside the contract (``reason_codes.yaml`` in its folder)."""
        import yaml

        path = Path(self.contract_path).with_name("reason_codes.yaml")
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {} if path.exists() else {}


class ReportsResource(dg.ConfigurableResource):
    """Where HTML and PNG reports are written; materializations link to them."""

    reports_dir: str

    def folder(self, *parts: str) -> Path:
        path = Path(self.reports_dir).joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


class ReviewStoreResource(dg.ConfigurableResource):
    """The operational review store (SQLite in WAL mode by default, PostgreSQL by URL)."""

    url: str

    def get(self):
        from aios_pipelines.review.store import ReviewStore

        return ReviewStore(self.url).create_all()


def default_resources(paths: AiosPaths | None = None) -> dict[str, dg.ConfigurableResource]:
    from aios_pipelines.policy.policy import policy_path

    paths = (paths or aios_paths()).ensure()
    return {
        "warehouse": WarehouseResource(path=str(paths.warehouse), url=os.environ.get("AIOS_WAREHOUSE_URL") or None),
        "landing": LandingResource(landing_dir=str(paths.landing), contract_path=str(contract_path())),
        "reports": ReportsResource(reports_dir=str(paths.reports)),
        "model_registry": ModelRegistryResource(
            tracking_uri=mlflow_tracking_uri(paths),
            artifact_location=paths.mlflow_artifact_uri,
        ),
        "policy": PolicyResource(policy_path=str(policy_path()), control_dir=str(paths.control)),
        "review_store": ReviewStoreResource(
            url=os.environ.get("AIOS_REVIEW_STORE_URL", f"sqlite:///{paths.review_store.as_posix()}")
        ),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=default_resources())


class ModelRegistryResource(dg.ConfigurableResource):
    """The model registry: MLflow with a SQLite backend under AIOS_HOME, or a tracking server."""

    tracking_uri: str
    artifact_location: str

    def get(self):
        from aios_pipelines.modeling.registry import ModelRegistry, RegistryConfig

        return ModelRegistry(RegistryConfig(tracking_uri=self.tracking_uri, artifact_location=self.artifact_location))


class PolicyResource(dg.ConfigurableResource):
    """The decision policy in force and the operators' automation switch."""

    policy_path: str
    control_dir: str

    def policy(self):
        from aios_pipelines.policy.policy import load_policy

        return load_policy(self.policy_path)

    def automation_status(self):
        from aios_pipelines.policy.automation_switch import status

        return status(Path(self.control_dir))
