"""Checks on the ingested tables, evaluated inside the asset run that wrote them.

Named ``check_<dimension>_<subject>``; each carries its threshold and sample failing rows.
"""

from __future__ import annotations

import dagster as dg
import polars as pl

from aios_pipelines.defs.metadata import markdown_table
from aios_pipelines.ingestion.contract import DatasetSpec
from aios_pipelines.ingestion.load import FileReconciliation

# Share of quarantined rows above which the quarantine check warns, and fails.
QUARANTINE_WARN_SHARE = 0.02
QUARANTINE_ERROR_SHARE = 0.25


def contract_check_specs(raw_key: str, quarantine_key: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            "check_validity_contract_expectations",
            asset=raw_key,
            blocking=True,
            description="Great Expectations suite derived from the data contract, run on the loaded rows.",
        ),
        dg.AssetCheckSpec(
            "check_consistency_file_reconciliation",
            asset=raw_key,
            blocking=True,
            description="For every landing file: rows read = rows loaded + rows quarantined.",
        ),
        dg.AssetCheckSpec(
            "check_validity_quarantine_share",
            asset=quarantine_key,
            description=(
                f"Share of rows quarantined: WARN above {QUARANTINE_WARN_SHARE:.0%}, "
                f"ERROR above {QUARANTINE_ERROR_SHARE:.0%}."
            ),
        ),
    ]


def check_validity_contract_expectations(raw_key: str, loaded: pl.DataFrame, dataset: DatasetSpec) -> dg.AssetCheckResult:
    # Great Expectations takes seconds to import: load it when a check runs, not when the
    # code location loads.
    from aios_pipelines.ingestion.expectations import validate_with_contract

    result = validate_with_contract(loaded, dataset)
    failures = result.failures()
    return dg.AssetCheckResult(
        asset_key=raw_key,
        check_name="check_validity_contract_expectations",
        passed=result.success,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "expectations_evaluated": result.evaluated,
            "expectations_failed": len(failures),
            "rows_validated": loaded.height,
            "suite": dg.MetadataValue.md(result.to_markdown()),
        },
    )


def check_consistency_file_reconciliation(raw_key: str, files: list[FileReconciliation]) -> dg.AssetCheckResult:
    broken = [f for f in files if not f.reconciles]
    table = pl.DataFrame(
        {
            "file": [f.file for f in files],
            "read": [f.rows_read for f in files],
            "loaded": [f.rows_loaded for f in files],
            "quarantined": [f.rows_quarantined for f in files],
        },
        schema={"file": pl.String, "read": pl.Int64, "loaded": pl.Int64, "quarantined": pl.Int64},
    )
    return dg.AssetCheckResult(
        asset_key=raw_key,
        check_name="check_consistency_file_reconciliation",
        passed=not broken,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "files": len(files),
            "files_not_reconciling": len(broken),
            "reconciliation": markdown_table(table, max_rows=15),
        },
    )


def check_validity_quarantine_share(
    quarantine_key: str, rows_read: int, quarantined: pl.DataFrame
) -> dg.AssetCheckResult:
    share = quarantined.height / rows_read if rows_read else 0.0
    severity = dg.AssetCheckSeverity.ERROR if share > QUARANTINE_ERROR_SHARE else dg.AssetCheckSeverity.WARN
    sample = quarantined.select("source_file", "source_row", "column_name", "reason").head(5)
    return dg.AssetCheckResult(
        asset_key=quarantine_key,
        check_name="check_validity_quarantine_share",
        passed=share <= QUARANTINE_WARN_SHARE,
        severity=severity,
        metadata={
            "quarantined_share": float(share),
            "warn_threshold": QUARANTINE_WARN_SHARE,
            "error_threshold": QUARANTINE_ERROR_SHARE,
            "sample_failing_rows": markdown_table(sample),
        },
    )
