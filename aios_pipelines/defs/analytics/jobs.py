"""``build_analytics``: dbt staging and marts, their tests, then the predictive analytics."""

import dagster as dg

from aios_pipelines.defs.analytics.dbt_assets import ANALYTICS_GROUP, dbt_source_check_keys

build_analytics = dg.define_asset_job(
    "build_analytics",
    # the group's assets and their checks, and dbt's tests on the sources (checks on the
    # Python assets that write them)
    selection=dg.AssetSelection.groups(ANALYTICS_GROUP) | dg.AssetSelection.checks(*dbt_source_check_keys()),
    executor_def=dg.in_process_executor,
    description=(
        "Build the analytics marts with dbt (override rates, time to decision, approval funnel, "
        "override outcomes, portfolio performance), run dbt's tests as checks, then the forecasts."
    ),
)
