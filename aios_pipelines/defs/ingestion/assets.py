"""Landing files into the warehouse: ``raw_applications``, ``raw_loan_outcomes`` and their
quarantine tables, one daily partition per landing day."""


import dagster as dg
import polars as pl

from aios_pipelines.defs.ingestion import checks
from aios_pipelines.defs.metadata import markdown_table, partition_days
from aios_pipelines.defs.partitions import daily_partitions
from aios_pipelines.defs.resources import LandingResource, WarehouseResource
from aios_pipelines.ingestion.load import LandingDayLoad, load_landing_day
from aios_pipelines.ingestion.validation import LANDING_DATE, empty_quarantine, loaded_schema

INGESTION_GROUP = "ingestion"


def _already_loaded_ids(warehouse, table: str, id_column: str, days: list) -> pl.DataFrame | None:
    """Ids stored under landing days outside this run: a repeat of one is quarantined."""
    if not warehouse.table_exists(table):
        return None
    return warehouse.query(
        f'select "{id_column}", cast({LANDING_DATE} as varchar) from "{table}" '
        f"where {LANDING_DATE} not in (select unnest(?::date[]))",
        [days],
    )


def _materialize_dataset(
    context: dg.AssetExecutionContext,
    dataset_name: str,
    raw_key: str,
    quarantine_key: str,
    landing: LandingResource,
    warehouse_resource: WarehouseResource,
):
    contract = landing.contract()
    dataset = contract.dataset(dataset_name)
    warehouse = warehouse_resource.get()
    days = partition_days(context)
    known_references = None
    if any(c.references for c in dataset.columns):
        ref_column = next(c.references for c in dataset.columns if c.references)
        known_references = (
            warehouse.query(f'select "{ref_column}" from raw_applications')[ref_column]
            if warehouse.table_exists("raw_applications")
            else pl.Series(ref_column, [], dtype=pl.String)
        )
    earlier_ids = _already_loaded_ids(warehouse, raw_key, dataset.id_column.name, days)

    # Read and check every day before writing any: an unreadable file fails the run and
    # leaves every stored partition as it was.
    loads: list[LandingDayLoad] = [
        load_landing_day(
            landing.directory, dataset, day, already_loaded_ids=earlier_ids, known_references=known_references
        )
        for day in days
    ]
    loaded = pl.concat([d.loaded for d in loads]) if loads else pl.DataFrame(schema=loaded_schema(dataset))
    quarantined = pl.concat([d.quarantined for d in loads]) if loads else empty_quarantine()
    files = [f for d in loads for f in d.files]
    rows_read = sum(f.rows_read for f in files)
    for day_load in loads:
        if not day_load.files:
            context.log.warning(f"no {dataset_name} landing files for {day_load.day} under {landing.directory}")

    warehouse.replace_partitions_together({raw_key: loaded, quarantine_key: quarantined}, LANDING_DATE, days)

    reasons = (
        quarantined.group_by("column_name").len("rows").sort("rows", descending=True)
        if quarantined.height
        else pl.DataFrame()
    )
    yield dg.MaterializeResult(
        asset_key=raw_key,
        metadata={
            "dagster/row_count": loaded.height,
            "rows_read": rows_read,
            "rows_loaded": loaded.height,
            "rows_quarantined": quarantined.height,
            "landing_files": len(files),
            "days": len(days),
            # a single-run backfill records these totals on every day of its range
            "run_covers": f"{days[0]} .. {days[-1]}" if days else "",
            "contract": dg.MetadataValue.text(f"{contract.name} {contract.version} ({contract.fingerprint})"),
            "extra_columns_ignored": dg.MetadataValue.json(
                {f.file: list(f.extra_columns) for f in files if f.extra_columns}
            ),
            "preview": markdown_table(loaded.head(5)),
            "warehouse": dg.MetadataValue.path(str(warehouse.path)),
        },
    )
    yield dg.MaterializeResult(
        asset_key=quarantine_key,
        metadata={
            "dagster/row_count": quarantined.height,
            "rows_quarantined": quarantined.height,
            "quarantined_by_column": markdown_table(reasons),
            "sample": markdown_table(quarantined.select("source_file", "source_row", "column_name", "reason")),
        },
    )
    yield checks.check_validity_contract_expectations(raw_key, loaded, dataset)
    yield checks.check_consistency_file_reconciliation(raw_key, files)
    yield checks.check_validity_quarantine_share(quarantine_key, rows_read, quarantined)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "raw_applications",
            group_name=INGESTION_GROUP,
            kinds={"duckdb", "polars"},
            description="Applications from the landing files of each day that satisfy the data contract, typed.",
        ),
        dg.AssetSpec(
            "quarantined_applications",
            group_name=INGESTION_GROUP,
            kinds={"duckdb"},
            description="Application rows that broke the contract: file, row number, column, reason, raw values.",
        ),
    ],
    check_specs=checks.contract_check_specs("raw_applications", "quarantined_applications"),
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="warehouse",
)
def raw_applications(context: dg.AssetExecutionContext, landing: LandingResource, warehouse: WarehouseResource):
    yield from _materialize_dataset(
        context, "applications", "raw_applications", "quarantined_applications", landing, warehouse
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "raw_loan_outcomes",
            group_name=INGESTION_GROUP,
            kinds={"duckdb", "polars"},
            description=(
                "Loan outcomes, partitioned by the day they were observed (application day plus the "
                "contract's performance window)."
            ),
            deps=[dg.AssetDep("raw_applications", partition_mapping=dg.AllPartitionMapping())],
        ),
        dg.AssetSpec(
            "quarantined_loan_outcomes",
            group_name=INGESTION_GROUP,
            kinds={"duckdb"},
            description="Outcome rows that broke the contract or point at no loaded application.",
        ),
    ],
    check_specs=checks.contract_check_specs("raw_loan_outcomes", "quarantined_loan_outcomes"),
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="warehouse",
)
def raw_loan_outcomes(context: dg.AssetExecutionContext, landing: LandingResource, warehouse: WarehouseResource):
    yield from _materialize_dataset(
        context, "outcomes", "raw_loan_outcomes", "quarantined_loan_outcomes", landing, warehouse
    )
