"""The ``dbt`` resource: dbt-duckdb on the warehouse file the Python assets write."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource
from packaging import version

from aios_pipelines.defs.analytics.dbt_project import WAREHOUSE_PATH_ENV, dbt_project
from aios_pipelines.defs.resources import WarehouseResource, default_resources


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class WarehouseDbtResource(DbtCliResource):
    """dbt on the warehouse: every invocation sees ``AIOS_WAREHOUSE_PATH``, the absolute path
    of the nested warehouse resource, which ``dbt_project/profiles.yml`` reads. Runs the dbt
    installed beside this interpreter, never asks the network for dbt's version and does not
    load dbt-core into the Dagster process."""

    warehouse: WarehouseResource

    @property
    def warehouse_file(self) -> Path:
        return Path(self.warehouse.path).expanduser().resolve()

    @cached_property
    def _cli_version(self) -> version.Version:
        # dagster-dbt runs `dbt --version`, which looks up the newest release on PyPI
        return version.parse(installed_version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args):  # type: ignore[override]
        # dagster-dbt loads dbt-core and the project into this process for the adapter that
        # fetch_row_counts / fetch_column_metadata use; the dbt assets count rows themselves
        # once dbt has released the warehouse, so the long-running code location skips it
        return None

    def cli(self, args, **kwargs):  # type: ignore[override]
        # "cautious": a test runs only when every model it reads is selected, so building a
        # subset never runs a relationships test against a table that is not built yet
        # (dagster-dbt still sets its own indirect selection when it subsets checks).
        with _environment({WAREHOUSE_PATH_ENV: str(self.warehouse_file), "DBT_INDIRECT_SELECTION": "cautious"}):
            return super().cli(args, **kwargs)


def dbt_executable() -> str:
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


def warehouse_dbt_resource(warehouse: WarehouseResource) -> WarehouseDbtResource:
    return WarehouseDbtResource(project_dir=dbt_project, warehouse=warehouse, dbt_executable=dbt_executable())


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"dbt": warehouse_dbt_resource(default_resources()["warehouse"])})
