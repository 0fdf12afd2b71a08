"""``retraining_trigger_sensor``: retrain when monitoring says the champion no longer fits.

Each tick reads the monitoring snapshot of the current champion (warehouse tables and the
registry), evaluates the configured triggers (``aios_pipelines.monitoring.triggers``) and
launches ``retrain_credit_model`` for triggers it has not acted on before. The run carries
the triggers and their evidence as tags; its run key names the trigger keys, and the
cursor remembers them, so the same evidence launches one run. The promotion gate inside
the run decides whether the retrained model becomes the champion.
"""


from pathlib import Path

import dagster as dg

from aios_pipelines.defs.modeling.assets import retrain_credit_model
from aios_pipelines.defs.resources import ModelRegistryResource, WarehouseResource
from aios_pipelines.monitoring.triggers import (
    TriggerConfig,
    evaluate_triggers,
    load_trigger_config,
    new_triggers,
    run_key,
    run_tags,
)

# A sensor tick must stay short: wait this long for a warehouse writer, then skip the tick.
SENSOR_LOCK_TIMEOUT_SECONDS = 10.0


def retraining_requests(
    warehouse: WarehouseResource,
    model_registry: ModelRegistryResource,
    cursor: str | None,
    config: TriggerConfig,
) -> tuple[list[dg.RunRequest], str | None, str]:
    """(run requests, new cursor, what was seen): the sensor's logic without its context."""
    from aios_pipelines.monitoring.snapshot import champion_facts, load_snapshot
    from aios_pipelines.storage.warehouse import Warehouse

    uri = model_registry.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        # opening the registry would create its database, racing the first training run
        return [], cursor, "no model registry yet: nothing to monitor"
    store = (warehouse.get() if warehouse.url
             else Warehouse(Path(warehouse.path), lock_timeout_seconds=SENSOR_LOCK_TIMEOUT_SECONDS))
    snapshot = load_snapshot(store, champion_facts(model_registry.get()))
    if snapshot.champion_version is None:
        return [], cursor, "no champion model yet: nothing to monitor"
    triggers = evaluate_triggers(snapshot, config)
    fresh, new_cursor = new_triggers(triggers, cursor)
    if not fresh:
        seen = ", ".join(t.name for t in triggers)
        return [], new_cursor, (
            f"champion v{snapshot.champion_version}: "
            + (f"triggers already acted on ({seen})" if triggers else "no retraining trigger fires")
        )
    request = dg.RunRequest(run_key=run_key(fresh), job_name=retrain_credit_model.name, tags=run_tags(fresh))
    return [request], new_cursor, "; ".join(t.describe() for t in fresh)


def build_retraining_trigger_sensor(config: TriggerConfig, name: str = "retraining_trigger_sensor") -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
        job=retrain_credit_model,
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Launches retrain_credit_model when a retraining trigger fires (drift share, PD PSI, AUC decay, "
            "model age, override rate too high or too low, falling review times); once per evidence."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource, model_registry: ModelRegistryResource):
        from aios_pipelines.storage.warehouse import WarehouseLockedError

        try:
            requests, cursor, seen = retraining_requests(warehouse, model_registry, context.cursor, config)
        except WarehouseLockedError as exc:
            return dg.SkipReason(f"the warehouse is busy, trying again next tick: {exc}")
        if cursor is not None and cursor != context.cursor:
            context.update_cursor(cursor)
        if not requests:
            return dg.SkipReason(seen)
        context.log.info(f"retraining: {seen}")
        return requests

    return _sensor


retraining_trigger_sensor = build_retraining_trigger_sensor(load_trigger_config())
