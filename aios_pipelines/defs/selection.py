"""Job selections shared by the planes."""

import dagster as dg


def own_checks_only(*asset_keys: str) -> dg.AssetSelection:
    """The assets with the checks they emit themselves, but not the dbt source tests that
    target them: those run in ``build_analytics``, so an ingestion or scoring run does not
    start a dbt process."""
    from aios_pipelines.defs.analytics.dbt_assets import dbt_source_check_keys

    return dg.AssetSelection.assets(*asset_keys) - dg.AssetSelection.checks(*dbt_source_check_keys())
