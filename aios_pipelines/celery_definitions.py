"""The code location of a Celery deployment: the product's definitions, with every asset job's
executor set to Dagster's Celery executor (dagster-celery), so each step of a run is a Celery
task that any worker may take.

``aios_pipelines.definitions`` stays the default (every job in-process, one DuckDB writer);
a deployment that has moved its stores to servers (the Dagster instance, the warehouse, the
review store and the registry on PostgreSQL, see docs/DEPLOYMENT.md) loads this module instead:
``dagster code-server start -m aios_pipelines.celery_definitions`` (or
``run_job(..., code_location=CELERY_CODE_LOCATION)``), and starts workers with
``dagster-celery worker start -A dagster_celery.app -y <file written by worker_config_yaml>``.

Settings from the environment of the process that loads this module (the code server, the run
and every worker alike):

* ``AIOS_CELERY_BROKER_URL`` and ``AIOS_CELERY_BACKEND_URL``: the broker and the result backend
  (e.g. ``redis://redis.internal:6379/0`` and ``.../1``); read when a run starts.
* ``AIOS_WAREHOUSE_URL``, ``AIOS_REVIEW_STORE_URL``, ``AIOS_MLFLOW_TRACKING_URI``, ``AIOS_HOME``:
  the stores, as for the default code location (``aios_pipelines.defs.resources``). Workers on
  several machines need the warehouse on PostgreSQL (``AIOS_WAREHOUSE_URL``): the DuckDB file
  under ``AIOS_HOME`` only suits workers on the machine that holds it.

The op job ``sweep_review_slas`` (one op on the review store) keeps the in-process executor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

CELERY_CODE_LOCATION = "aios_pipelines.celery_definitions"
BROKER_ENV = "AIOS_CELERY_BROKER_URL"
BACKEND_ENV = "AIOS_CELERY_BACKEND_URL"

# Celery settings shared by the runs (executor) and the workers (worker_config_yaml). With
# late acknowledgement and a prefetch of one, a worker busy with a step holds no second step
# back from an idle worker: a step waits in the broker until some worker is free.
CELERY_SETTINGS: Mapping[str, Any] = {
    "task_acks_late": True,
    "worker_prefetch_multiplier": 1,
}


def celery_executor_def() -> dg.ExecutorDefinition:
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {
            "broker": {"env": BROKER_ENV},
            "backend": {"env": BACKEND_ENV},
            "config_source": dict(CELERY_SETTINGS),
        },
        name="celery",
    )


def worker_config_yaml(broker_url: str, backend_url: str) -> str:
    """The worker's ``-y`` file for ``dagster-celery worker start``: the same broker, backend
    and Celery settings as the runs' executor (a worker on another broker never sees a step)."""
    import yaml

    return yaml.safe_dump(
        {"execution": {"config": {"broker": broker_url, "backend": backend_url,
                                  "config_source": dict(CELERY_SETTINGS)}}},
        sort_keys=False,
    )


def with_executor(definitions: dg.Definitions, executor_def: dg.ExecutorDefinition) -> dg.Definitions:
    """The same definitions, every asset job with ``executor_def``; the schedules and sensors
    that target those jobs target the new ones (same names), and assets materialized from the
    UI (Dagster's implicit asset job) run with ``executor_def`` too."""
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
    from dagster_shared.record import copy, replace

    replaced: dict[str, Any] = {}
    jobs = []
    for job in definitions.jobs or []:
        if isinstance(job, UnresolvedAssetJobDefinition):
            job = replaced.setdefault(job.name, copy(job, executor_def=executor_def))
        if all(j is not job for j in jobs):
            jobs.append(job)

    def swap(target):
        return replaced.get(getattr(target, "name", None), target)

    schedules = []
    for schedule in definitions.schedules or []:
        if isinstance(schedule, dg.ScheduleDefinition) and schedule.has_job and schedule.job.name in replaced:
            schedule = schedule.with_updated_job(swap(schedule.job))
        schedules.append(schedule)
    sensors = []
    for sensor in definitions.sensors or []:
        if isinstance(sensor, dg.SensorDefinition) and sensor.has_jobs and any(
                j.name in replaced for j in sensor.jobs):
            sensor = sensor.with_updated_jobs([swap(j) for j in sensor.jobs])
        sensors.append(sensor)
    return replace(definitions, jobs=jobs, schedules=schedules, sensors=sensors, executor=executor_def)


@dg.definitions
def defs() -> dg.Definitions:
    from aios_pipelines.definitions import defs as product_defs

    return with_executor(product_defs(), celery_executor_def())

