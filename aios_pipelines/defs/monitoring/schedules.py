"""``nightly_retraining`` (02:00) and ``daily_monitoring`` (01:00, yesterday's applications).

The execution timezone is UTC unless ``AIOS_SCHEDULE_TIMEZONE`` names another (an IANA
name such as ``Europe/Berlin``) when the code location loads.
"""


import os
from datetime import timedelta

import dagster as dg

from aios_pipelines.defs.modeling.assets import retrain_credit_model
from aios_pipelines.defs.monitoring.assets import monitor_applications

SCHEDULE_TIMEZONE = os.environ.get("AIOS_SCHEDULE_TIMEZONE", "UTC")

nightly_retraining = dg.ScheduleDefinition(
    name="nightly_retraining",
    cron_schedule="0 2 * * *",
    job=retrain_credit_model,
    execution_timezone=SCHEDULE_TIMEZONE,
    tags={"aios/trigger": "nightly_retraining"},
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Retrain on the newest matured outcomes every night; the promotion gate decides on the champion.",
)


@dg.schedule(
    name="daily_monitoring",
    cron_schedule="0 1 * * *",
    job=monitor_applications,
    execution_timezone=SCHEDULE_TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Drift, stability, performance and the risk report for yesterday's applications, before the nightly retraining.",
)
def daily_monitoring(context: dg.ScheduleEvaluationContext):
    day = (context.scheduled_execution_time.date() - timedelta(days=1)).isoformat()
    return dg.RunRequest(run_key=f"monitor:{day}", partition_key=day, tags={"aios/trigger": "daily_monitoring"})
