"""One resource per store. Paths default to the data directory, ``AIOS_HOME``."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from aios_pipelines.ingestion.contract import DataContract, load_contract
from aios_pipelines.settings import AiosPaths, aios_paths, contract_path
from aios_pipelines.storage.warehouse import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The analytics warehouse (a DuckDB file by default). Writers use the ``warehouse`` pool."""

    path: str
    lock_timeout_seconds: float = 300.0

    def get(self) -> Warehouse:
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


class ReportsResource(dg.ConfigurableResource):
    """Where HTML and PNG reports are written; materializations link to them."""

    reports_dir: str

    def folder(self, *parts: str) -> Path:
        path = Path(self.reports_dir).joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


def default_resources(paths: AiosPaths | None = None) -> dict[str, dg.ConfigurableResource]:
    paths = (paths or aios_paths()).ensure()
    return {
        "warehouse": WarehouseResource(path=str(paths.warehouse)),
        "landing": LandingResource(landing_dir=str(paths.landing), contract_path=str(contract_path())),
        "reports": ReportsResource(reports_dir=str(paths.reports)),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=default_resources())
