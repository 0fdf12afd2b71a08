"""``application_features``: model inputs built from the contract's roles, one row per application."""


import dagster as dg
import polars as pl

from aios_pipelines.defs.metadata import markdown_table, partition_days
from aios_pipelines.defs.partitions import daily_partitions
from aios_pipelines.defs.resources import LandingResource, WarehouseResource
from aios_pipelines.features.build import build_features, feature_definition
from aios_pipelines.ingestion.validation import LANDING_DATE

# A feature missing on more than this share of a day's rows is worth a look.
MAX_MISSING_SHARE = 0.5


@dg.asset(
    group_name="features",
    kinds={"polars", "duckdb"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="warehouse",
    deps=["raw_applications"],
    check_specs=[
        dg.AssetCheckSpec(
            "check_consistency_one_row_per_application",
            asset="application_features",
            blocking=True,
            description="Exactly one feature row for every loaded application of the day.",
        ),
        dg.AssetCheckSpec(
            "check_completeness_feature_missing_share",
            asset="application_features",
            description=f"WARN when a feature is missing on more than {MAX_MISSING_SHARE:.0%} of rows.",
        ),
    ],
)
def application_features(context: dg.AssetExecutionContext, landing: LandingResource, warehouse: WarehouseResource):
    """Encodings, missing indicators and derived credit ratios; point-in-time correct."""
    dataset = landing.contract().applications
    definition = feature_definition(dataset)
    store = warehouse.get()
    days = partition_days(context)
    applications = store.query(
        f"select * from raw_applications where {LANDING_DATE} in (select unnest(?::date[]))", [days]
    )
    features = build_features(applications, dataset).with_columns(applications[LANDING_DATE])
    store.replace_partitions("application_features", features, LANDING_DATE, days)

    missing = features.select(
        [pl.col(f).null_count().alias(f) for f in definition.features]
    ).transpose(include_header=True, header_name="feature", column_names=["missing_rows"])
    missing = missing.with_columns((pl.col("missing_rows") / max(features.height, 1)).alias("missing_share"))
    too_sparse = missing.filter(pl.col("missing_share") > MAX_MISSING_SHARE)
    ids = features["application_id"]
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": features.height,
            "features": len(definition.features),
            "feature_list": dg.MetadataValue.json(definition.as_dict()),
            "missing_by_feature": markdown_table(missing.sort("missing_share", descending=True), max_rows=25),
            "preview": markdown_table(features.head(5)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="check_consistency_one_row_per_application",
                passed=features.height == applications.height and ids.n_unique() == ids.len(),
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"applications": applications.height, "feature_rows": features.height},
            ),
            dg.AssetCheckResult(
                check_name="check_completeness_feature_missing_share",
                passed=too_sparse.is_empty(),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"threshold": MAX_MISSING_SHARE, "sparse_features": markdown_table(too_sparse)},
            ),
        ],
    )
