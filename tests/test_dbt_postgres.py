"""The same dbt project on PostgreSQL (dbt-postgres) and on DuckDB (dbt-duckdb).

The hand-made warehouse of test_dbt_analytics (batch, review and online rows) is loaded into
a fresh database on the session's throwaway PostgreSQL server through ``PostgresWarehouse``,
and into a DuckDB file; the Dagster dbt assets build both, the dbt resource choosing its
target from the warehouse resource. Every model and every dbt test must pass on PostgreSQL,
and every model must hold the same rows on both engines.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from test_dbt_analytics import (  # noqa: F401 (dbt_manifest is a fixture)
    APPLICATIONS,
    MARTS,
    ONLINE,
    analytics_resources,
    dbt_manifest,
    write_fixture_warehouse,
    write_online_rows,
)

from aios_pipelines.settings import DEFAULT_CONTRACT_PATH, AiosPaths
from aios_pipelines.storage.postgres_warehouse import PostgresWarehouse
from aios_pipelines.storage.warehouse import Warehouse

STAGING = (
    "stg_applications",
    "stg_scored_applications",
    "stg_loan_outcomes",
    "stg_review_cases",
    "stg_human_decisions",
    "stg_review_events",
)
MODELS = (*STAGING, "int_review_cases", *MARTS)
UNIT_TESTS = {"approval_funnel_counts_each_route_once", "override_rates_splits_low_and_high_side_and_blind_agreement"}


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def postgres_resources(paths: AiosPaths, url: str) -> dict:
    from aios_pipelines.defs.analytics.resources import warehouse_dbt_resource
    from aios_pipelines.defs.resources import LandingResource, WarehouseResource

    # path stays set (the resource requires it): nothing may be written there
    warehouse = WarehouseResource(path=str(paths.warehouse), url=url, lock_timeout_seconds=10)
    return {
        "warehouse": warehouse,
        "landing": LandingResource(landing_dir=str(paths.landing), contract_path=str(DEFAULT_CONTRACT_PATH)),
        "dbt": warehouse_dbt_resource(warehouse),
    }


def dbt_models():
    from aios_pipelines.defs.analytics.dbt_assets import analytics_dbt_models

    return [analytics_dbt_models]


def run_artifacts(result: dg.ExecuteInProcessResult) -> Path:
    from aios_pipelines.defs.analytics.dbt_project import dbt_target_dir

    (folder,) = dbt_target_dir().glob(f"analytics_dbt_models-{result.run_id[:7]}-*")
    return folder


@pytest.fixture(scope="module")
def pg_url(postgres_server) -> str:
    return postgres_server.create_database("aios_test_dbt_postgres")


@pytest.fixture(scope="module")
def fresh_pg_build(dbt_manifest, instance, tmp_path_factory, contract, pg_url):
    """A fresh install on PostgreSQL: no review or online tables yet, so the dbt assets create
    them empty before dbt builds."""
    paths = AiosPaths(tmp_path_factory.mktemp("dbt_pg_fresh") / "home").ensure()
    warehouse = PostgresWarehouse(pg_url)
    write_fixture_warehouse(warehouse, contract, with_review_tables=False)
    result = dg.materialize(dbt_models(), resources=postgres_resources(paths, pg_url), instance=instance,
                            raise_on_error=False)
    return paths, warehouse, result


@pytest.fixture(scope="module")
def pg_build(fresh_pg_build, dbt_manifest, instance, contract, pg_url):
    """The full fixture warehouse (batch, review and online rows) written over the fresh
    install's tables, and the dbt assets materialized again."""
    paths, warehouse, _fresh = fresh_pg_build
    write_fixture_warehouse(warehouse, contract)
    write_online_rows(warehouse, contract)
    result = dg.materialize(dbt_models(), resources=postgres_resources(paths, pg_url), instance=instance,
                            raise_on_error=False)
    return paths, warehouse, result


@pytest.fixture(scope="module")
def duckdb_build(dbt_manifest, instance, tmp_path_factory, contract):
    paths = AiosPaths(tmp_path_factory.mktemp("dbt_duckdb") / "home").ensure()
    warehouse = Warehouse(paths.warehouse)
    write_fixture_warehouse(warehouse, contract)
    write_online_rows(warehouse, contract)
    result = dg.materialize(dbt_models(), resources=analytics_resources(paths), instance=instance)
    return paths, warehouse, result


def assert_every_model_and_test_passes(result: dg.ExecuteInProcessResult, adapter: str) -> None:
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert set(MODELS) <= materialized
    evaluations = result.get_asset_check_evaluations()
    assert [(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed] == []
    assert len(evaluations) > 80
    # dbt's own record of the build: which adapter ran it, and every node's status
    folder = run_artifacts(result)
    assert json.loads((folder / "manifest.json").read_text())["metadata"]["adapter_type"] == adapter
    results = json.loads((folder / "run_results.json").read_text())["results"]
    by_kind: dict[str, set[str]] = {}
    for r in results:
        by_kind.setdefault(r["unique_id"].split(".")[0], set()).add(r["status"])
    assert by_kind == {"model": {"success"}, "test": {"pass"}, "unit_test": {"pass"}}
    models = {r["unique_id"].split(".")[-1] for r in results if r["unique_id"].startswith("model.")}
    assert models == set(MODELS)
    assert {r["unique_id"].split(".")[-1] for r in results if r["unique_id"].startswith("unit_test.")} == UNIT_TESTS
    assert sum(r["unique_id"].startswith("test.") for r in results) > 150


# ---------------------------------------------------------------------------- the resource
def test_the_dbt_resource_picks_its_target_from_the_warehouse_resource(tmp_path):
    from aios_pipelines.defs.analytics.resources import postgres_profile_env, warehouse_dbt_resource
    from aios_pipelines.defs.resources import WarehouseResource

    on_file = warehouse_dbt_resource(WarehouseResource(path=str(tmp_path / "w.duckdb")))
    assert on_file.dbt_target is None and on_file.warehouse_url is None
    assert on_file._profile_env() == {"AIOS_WAREHOUSE_PATH": str((tmp_path / "w.duckdb").resolve())}

    url = "postgresql+psycopg://aios:s%40cret@db.internal:6543/warehouse"
    on_server = warehouse_dbt_resource(WarehouseResource(path=str(tmp_path / "w.duckdb"), url=url))
    assert on_server.dbt_target == "postgres" and on_server.warehouse_location == url
    env = on_server._profile_env()
    assert {k: v for k, v in env.items() if k.startswith("AIOS_WAREHOUSE_PG_")} == {
        "AIOS_WAREHOUSE_PG_HOST": "db.internal", "AIOS_WAREHOUSE_PG_PORT": "6543",
        "AIOS_WAREHOUSE_PG_USER": "aios", "AIOS_WAREHOUSE_PG_PASSWORD": "s@cret",
        "AIOS_WAREHOUSE_PG_DBNAME": "warehouse", "AIOS_WAREHOUSE_PG_SCHEMA": "public"}
    assert postgres_profile_env("postgresql://me@localhost/db")["AIOS_WAREHOUSE_PG_PORT"] == "5432"
    with pytest.raises(ValueError, match="names no database"):
        postgres_profile_env("postgresql://me@localhost")


# ---------------------------------------------------------------------------- builds
def test_a_fresh_install_builds_on_postgres(fresh_pg_build, tmp_path):
    paths, warehouse, result = fresh_pg_build
    assert_every_model_and_test_passes(result, "postgres")
    for table in ("review_cases", "human_decisions", "review_events", "online_decisions", "online_applications"):
        assert warehouse.table_exists(table), table
    # every scored application pending or automated: no review rows yet
    assert warehouse.scalar("select count(*) from fct_application_decisions") == len(APPLICATIONS)
    assert warehouse.scalar("select count(*) from fct_application_decisions where case_id is not null") == 0
    # nothing went to the DuckDB file the resource also names
    assert not paths.warehouse.exists()


def test_every_model_and_dbt_test_passes_on_postgres(pg_build, duckdb_build):
    paths, warehouse, result = pg_build
    assert_every_model_and_test_passes(result, "postgres")
    assert_every_model_and_test_passes(duckdb_build[2], "duckdb")
    assert not paths.warehouse.exists()
    # row counts come from PostgreSQL once dbt has finished
    counts = {m.asset_key.to_user_string(): m.materialization.metadata["dagster/row_count"].value
              for m in result.get_asset_materialization_events()}
    assert counts["approval_funnel"] == 2
    assert counts["fct_application_decisions"] == len(APPLICATIONS) + len(ONLINE) - 1  # A03 is in both
    for model in MODELS:
        assert counts[model] == warehouse.scalar(f"select count(*) from {model}") > 0, model


_FAMILIES = {
    "int": (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.Int128, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64),
    "float": (pl.Float32, pl.Float64, pl.Decimal),
    "string": (pl.String,),
    "bool": (pl.Boolean,),
    "date": (pl.Date,),
    "timestamp": (pl.Datetime,),
    "list": (pl.List,),
}


def family(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Decimal) and dtype.scale == 0:
        return "int"  # DuckDB's sum of integers is a HUGEINT (a 38-digit decimal in polars)
    for name, kinds in _FAMILIES.items():
        if any(dtype == kind or isinstance(dtype, kind) for kind in kinds):
            return name
    raise AssertionError(f"unexpected type {dtype}")


@pytest.mark.parametrize("model", MODELS)
def test_each_model_holds_the_same_rows_on_both_engines(pg_build, duckdb_build, model):
    pg = pg_build[1].query(f"select * from {model}")
    duck = duckdb_build[1].query(f"select * from {model}")
    assert pg.columns == duck.columns
    # same kind of value in each column (integer, float, text, date, ...) ...
    assert {c: family(t) for c, t in pg.schema.items()} == {c: family(t) for c, t in duck.schema.items()}
    assert pg.height == duck.height > 0
    # ... and the same rows (floats to a relative 1e-9)
    pg = pg.cast({c: duck.schema[c] for c in duck.columns if pg.schema[c] != duck.schema[c]})
    key = [c for c, t in duck.schema.items() if not isinstance(t, pl.List)]
    assert_frame_equal(pg.sort(key, nulls_last=True), duck.sort(key, nulls_last=True),
                       check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
