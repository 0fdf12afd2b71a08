"""The ``dbt`` resource: dbt on the warehouse the Python assets write, dbt-duckdb on the
DuckDB file (profiles.yml's default target) or dbt-postgres on a PostgreSQL server (target
``postgres``) when the warehouse resource has a ``url``."""

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
from sqlalchemy.engine import make_url

from aios_pipelines.defs.analytics.dbt_project import WAREHOUSE_PATH_ENV, dbt_project
from aios_pipelines.defs.resources import WarehouseResource, default_resources
from aios_pipelines.storage.postgres_warehouse import is_postgres_url

POSTGRES_TARGET = "postgres"
# what profiles.yml's postgres output reads
PG_HOST_ENV, PG_PORT_ENV, PG_USER_ENV = "AIOS_WAREHOUSE_PG_HOST", "AIOS_WAREHOUSE_PG_PORT", "AIOS_WAREHOUSE_PG_USER"
PG_PASSWORD_ENV, PG_DBNAME_ENV, PG_SCHEMA_ENV = (
    "AIOS_WAREHOUSE_PG_PASSWORD", "AIOS_WAREHOUSE_PG_DBNAME", "AIOS_WAREHOUSE_PG_SCHEMA")


def postgres_profile_env(url: str, schema: str = "public") -> dict[str, str]:
    """The AIOS_WAREHOUSE_PG_* variables of profiles.yml's postgres output, from a warehouse
    URL (``postgresql://user:password@host:port/dbname``; a SQLAlchemy driver suffix such as
    ``+psycopg`` is ignored)."""
    parsed = make_url(url)
    if not parsed.database:
        raise ValueError(f"the warehouse URL names no database: {parsed.render_as_string(hide_password=True)}")
    return {
        PG_HOST_ENV: parsed.host or "127.0.0.1",
        PG_PORT_ENV: str(parsed.port or 5432),
        PG_USER_ENV: parsed.username or "postgres",
        PG_PASSWORD_ENV: parsed.password or "",
        PG_DBNAME_ENV: parsed.database,
        PG_SCHEMA_ENV: schema,
    }


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
    """dbt on the warehouse of the nested warehouse resource. On the DuckDB file, every
    invocation sees ``AIOS_WAREHOUSE_PATH``, its absolute path, which ``dbt_project/profiles.yml``
    reads. When the warehouse resource has a PostgreSQL ``url``, every invocation sees the
    ``AIOS_WAREHOUSE_PG_*`` variables taken from it and runs with ``--target postgres``. Runs the
    dbt installed beside this interpreter, never asks the network for dbt's version and does
    not load dbt-core into the Dagster process."""

    warehouse: WarehouseResource

    @property
    def warehouse_url(self) -> str | None:
        """The PostgreSQL warehouse's URL, or None on the DuckDB file."""
        url = self.warehouse.url
        return url if is_postgres_url(url) else None

    @property
    def warehouse_file(self) -> Path:
        return Path(self.warehouse.path).expanduser().resolve()

    @property
    def warehouse_location(self) -> str:
        """Where dbt builds: the PostgreSQL URL, or the DuckDB file's absolute path."""
        return self.warehouse_url or str(self.warehouse_file)

    @property
    def dbt_target(self) -> str | None:
        """The profiles.yml output to run: ``postgres`` on PostgreSQL, else the resource's own
        target (None: the profile's default, the DuckDB file)."""
        return POSTGRES_TARGET if self.warehouse_url and not self.target else self.target

    def _profile_env(self) -> dict[str, str]:
        url = self.warehouse_url
        if url is None:
            return {WAREHOUSE_PATH_ENV: str(self.warehouse_file)}
        return postgres_profile_env(url, getattr(self.warehouse.get(), "schema", None) or "public")

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
        args = list(args)
        if self.dbt_target and self.dbt_target != self.target and "--target" not in args and "-t" not in args:
            args += ["--target", self.dbt_target]
        with _environment({**self._profile_env(), "DBT_INDIRECT_SELECTION": "cautious"}):
            return super().cli(args, **kwargs)


def dbt_executable() -> str:
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


def warehouse_dbt_resource(warehouse: WarehouseResource) -> WarehouseDbtResource:
    return WarehouseDbtResource(project_dir=dbt_project, warehouse=warehouse, dbt_executable=dbt_executable())


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"dbt": warehouse_dbt_resource(default_resources()["warehouse"])})
