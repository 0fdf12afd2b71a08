"""What the dbt project reads: the review tables it needs to exist, and the names of the
contract's columns it maps to the platform's (its ``vars``). No Dagster here."""

from __future__ import annotations

import polars as pl

from aios_pipelines.analytics.review_tables import (
    HUMAN_DECISIONS_SCHEMA,
    ONLINE_DECISIONS_SCHEMA,
    REVIEW_CASES_SCHEMA,
    REVIEW_EVENTS_SCHEMA,
)
from aios_pipelines.ingestion.contract import DataContract, DatasetSpec
from aios_pipelines.ingestion.validation import loaded_schema
from aios_pipelines.storage.postgres_warehouse import PostgresWarehouse
from aios_pipelines.storage.warehouse import Warehouse, quote_identifier

REVIEW_TABLES: dict[str, dict[str, pl.DataType]] = {
    "review_cases": REVIEW_CASES_SCHEMA,
    "human_decisions": HUMAN_DECISIONS_SCHEMA,
    "review_events": REVIEW_EVENTS_SCHEMA,
}


def _create_missing(warehouse: Warehouse | PostgresWarehouse, tables: dict[str, dict[str, pl.DataType]]) -> list[str]:
    # asked before connecting to write: DuckDB refuses a second, read-only, connection to a
    # file this process holds open for writing
    missing = [table for table in tables if not warehouse.table_exists(table)]
    if not missing:
        return []
    with warehouse.connect() as con:
        for table in missing:
            con.register("empty_review_rows", pl.DataFrame(schema=tables[table]).to_arrow())
            con.execute(f"create table if not exists {quote_identifier(table)} as select * from empty_review_rows")
            con.unregister("empty_review_rows")
    return missing


def create_missing_review_tables(warehouse: Warehouse | PostgresWarehouse) -> list[str]:
    """Create, empty, each review table the warehouse lacks; return the ones created.

    The review plane's assets own these tables and write them before dbt reads them. On a
    fresh install, or before the review plane has copied anything, the marts still build:
    every referred application is then simply pending. A table that exists is never
    touched. The empty tables have exactly the columns and types the review plane writes
    (created from the same polars schemas), so its first write appends to them as is.
    """
    return _create_missing(warehouse, REVIEW_TABLES)


def create_missing_online_tables(warehouse: Warehouse | PostgresWarehouse, applications: DatasetSpec) -> list[str]:
    """Create, empty, ``online_decisions`` and ``online_applications`` when the warehouse lacks
    them; return the ones created. Staging unions them with the batch tables, so the marts
    build before the review service has decided anything online. Same rules as
    :func:`create_missing_review_tables`; ``online_applications`` has the columns of
    ``raw_applications`` under ``applications`` (the contract in force)."""
    return _create_missing(
        warehouse, {"online_decisions": ONLINE_DECISIONS_SCHEMA, "online_applications": loaded_schema(applications)}
    )


def contract_dbt_vars(contract: DataContract) -> dict[str, str | None]:
    """The dbt ``vars`` naming the contract's columns (see ``dbt_project/dbt_project.yml``).

    A lender whose contract lacks a loan amount or a channel column gets nulls for them in
    the marts rather than a failed build."""
    applications, outcomes = contract.applications, contract.outcomes
    amount = applications.by_meaning("loan_amount")
    channel = next((c for c in applications.columns if c.name == "channel"), None)
    return {
        "application_id_column": applications.id_column.name,
        "application_ts_column": applications.timestamp_column.name,
        "loan_amount_column": amount.name if amount else None,
        "channel_column": channel.name if channel else None,
        "outcome_application_id_column": outcomes.id_column.name,
        "outcome_date_column": outcomes.timestamp_column.name,
        "outcome_target_column": outcomes.target_column.name,
    }
