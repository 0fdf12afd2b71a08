"""Jobs that load landing days. In-process: two or three steps do not repay a process each."""

import dagster as dg

from aios_pipelines.defs.selection import own_checks_only

from aios_pipelines.defs.partitions import daily_partitions

ingest_applications = dg.define_asset_job(
    "ingest_applications",
    selection=own_checks_only("raw_applications", "quarantined_applications", "application_features"),
    partitions_def=daily_partitions,
    executor_def=dg.in_process_executor,
    description="Load a landing day of applications, quarantine what breaks the contract, build features.",
)

ingest_loan_outcomes = dg.define_asset_job(
    "ingest_loan_outcomes",
    selection=own_checks_only("raw_loan_outcomes", "quarantined_loan_outcomes"),
    partitions_def=daily_partitions,
    executor_def=dg.in_process_executor,
    description="Load a landing day of matured loan outcomes.",
)
