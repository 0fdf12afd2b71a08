"""Running the platform's jobs from the command line (``aios demo`` and friends).

Runs execute in this process against the persistent instance, so they appear in the Dagster
UI afterwards exactly as if launched from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date

import dagster as dg

from aios_pipelines.defs.instance import get_instance

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


class JobFailedError(RuntimeError):
    pass


def user_error_message(error) -> str:
    """The message of the user's exception, not of the Dagster errors wrapped around it."""
    while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    return error.message.strip()


def run_job(
    job_name: str,
    *,
    first_day: date | None = None,
    last_day: date | None = None,
    instance: dg.DagsterInstance | None = None,
    tags: dict[str, str] | None = None,
    run_config: dict | None = None,
    progress: Callable[[str], None] = print,
) -> dg.ExecuteInProcessResult:
    # imported here: a Definitions object at module level would be loaded again by the defs folder loader
    from aios_pipelines.definitions import defs as load_defs

    definitions = load_defs()
    job = definitions.resolve_job_def(job_name)
    run_tags = dict(tags or {})
    if first_day is not None:
        run_tags[RANGE_START_TAG] = first_day.isoformat()
        run_tags[RANGE_END_TAG] = (last_day or first_day).isoformat()
    span = f" {first_day} .. {last_day or first_day}" if first_day else ""
    progress(f"  running {job_name}{span}")
    # The full event log is in the Dagster UI; the terminal shows progress and warnings.
    config = dict(run_config or {})
    config.setdefault("loggers", {"console": {"config": {"log_level": os.environ.get("AIOS_LOG_LEVEL", "WARNING")}}})
    result = job.execute_in_process(
        instance=instance or get_instance(),
        tags=run_tags,
        run_config=config,
        raise_on_error=False,
    )
    if not result.success:
        message = "see the run in the Dagster UI"
        for event in result.all_events:
            if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
                message = user_error_message(event.step_failure_data.error)
                break
        raise JobFailedError(f"{job_name} failed (run {result.run_id}): {message}")
    checks = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    failed = [c for c in checks if not c.passed]
    progress(
        f"    ok: run {result.run_id[:8]}, {len(checks)} checks, "
        f"{len(failed)} not passing{': ' + ', '.join(sorted({c.check_name for c in failed})) if failed else ''}"
    )
    return result
