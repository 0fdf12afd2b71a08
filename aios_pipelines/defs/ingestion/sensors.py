"""Dropping a file into the landing folder is all a user has to do."""


import json
from collections.abc import Callable

import dagster as dg

from aios_pipelines.defs.ingestion.jobs import ingest_applications, ingest_loan_outcomes
from aios_pipelines.defs.partitions import daily_partitions
from aios_pipelines.defs.resources import LandingResource
from aios_pipelines.ingestion.landing import discover_landing_files

JOB_FOR_DATASET = {"applications": ingest_applications, "outcomes": ingest_loan_outcomes}
RAW_ASSET_FOR_DATASET = {"applications": "raw_applications", "outcomes": "raw_loan_outcomes"}

# (raw asset key, day) -> when that partition was last materialized (epoch seconds), or None
LastMaterialized = Callable[[str, str], float | None]


def new_landing_requests(
    landing: LandingResource, cursor: str | None, last_materialized: LastMaterialized | None = None
) -> tuple[list[dg.RunRequest], str]:
    """Run requests for landing days whose files are new or changed since ``cursor``.

    The cursor maps each seen file to its signature (mtime and size), so a file is picked up
    once, and again only if it is replaced. A file older than its day's last materialization
    (ingested by ``aios demo`` or a backfill before the sensor first ran) is only recorded.
    """
    seen: dict[str, str] = json.loads(cursor) if cursor else {}
    contract = landing.contract()
    valid_keys = set(daily_partitions.get_partition_keys())
    requests: list[dg.RunRequest] = []
    for dataset_name, job in JOB_FOR_DATASET.items():
        changed_days: dict[str, list[str]] = {}
        for landing_file in discover_landing_files(landing.directory, contract.dataset(dataset_name)):
            key = landing_file.path.relative_to(landing.directory).as_posix()
            signature = landing_file.signature
            if seen.get(key) == signature:
                continue
            seen[key] = signature
            if last_materialized is not None:
                loaded_at = last_materialized(RAW_ASSET_FOR_DATASET[dataset_name], landing_file.day.isoformat())
                if loaded_at is not None and landing_file.path.stat().st_mtime <= loaded_at:
                    continue
            changed_days.setdefault(landing_file.day.isoformat(), []).append(f"{key}@{signature}")
        for day, files in sorted(changed_days.items()):
            if day not in valid_keys:
                continue
            requests.append(
                dg.RunRequest(
                    run_key=f"{dataset_name}:{day}:{'|'.join(sorted(files))}",
                    job_name=job.name,
                    partition_key=day,
                    tags={"aios/trigger": "landing_files", "aios/files": ",".join(sorted(files))[:1000]},
                )
            )
    return requests, json.dumps(seen, sort_keys=True)


@dg.sensor(
    jobs=[ingest_applications, ingest_loan_outcomes],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches an ingestion run for each landing day with new or replaced files.",
)
def landing_files_sensor(context: dg.SensorEvaluationContext, landing: LandingResource):
    def last_materialized(asset: str, day: str) -> float | None:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=1
        ).records
        return records[0].timestamp if records else None

    requests, cursor = new_landing_requests(landing, context.cursor, last_materialized)
    context.update_cursor(cursor)
    if not requests:
        return dg.SkipReason(f"no new files under {landing.directory}")
    return requests
