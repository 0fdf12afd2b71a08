"""The retraining trigger sensor (through Dagster's sensor machinery, with a real registry
and warehouse) and the schedules (validated against the jobs they launch)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import dagster as dg
import lightgbm as lgb
import numpy as np
import polars as pl
import pytest

from aios_pipelines.defs.modeling.assets import credit_risk_model, retrain_credit_model, training_set
from aios_pipelines.defs.monitoring.assets import (
    feature_drift_report,
    model_performance,
    monitor_applications,
    risk_report,
    score_stability,
)
from aios_pipelines.defs.monitoring.schedules import daily_monitoring, nightly_retraining
from aios_pipelines.defs.monitoring.sensors import build_retraining_trigger_sensor, retraining_trigger_sensor
from aios_pipelines.defs.resources import (
    LandingResource,
    ModelRegistryResource,
    PolicyResource,
    ReportsResource,
    WarehouseResource,
)
from aios_pipelines.modeling.registry import ModelRegistry, default_registry_config
from aios_pipelines.monitoring.drift import FEATURE_DRIFT_SCHEMA
from aios_pipelines.monitoring.triggers import TriggerConfig
from aios_pipelines.policy.policy import DEFAULT_POLICY_PATH
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH, AiosPaths
from aios_pipelines.storage.warehouse import Warehouse

FEATURES = ["x1", "x2", "x3", "x4", "x5"]
LAST_DAY = date(2026, 9, 29)


def register(registry: ModelRegistry, tmp_path, data_hash: str) -> int:
    rng = np.random.default_rng(len(data_hash))
    x = rng.normal(size=(300, len(FEATURES)))
    y = (x[:, 0] + rng.normal(size=300) > 1).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4},
                        lgb.Dataset(x, y, feature_name=FEATURES), num_boost_round=3)
    sample = tmp_path / f"reference_{data_hash}.parquet"
    pl.DataFrame(x, schema=FEATURES).write_parquet(sample)
    version = registry.log_and_register(
        booster, metrics={"auc": 0.8, "brier": 0.08}, params={}, feature_spec={"features": FEATURES, "categorical": []},
        feature_ranges={}, contract_fingerprint="test", policy_version=None, data_snapshot_hash=data_hash,
        dagster_run_id=None, artifacts={"reference_sample": sample}, oot_window=("2026-07-01", "2026-07-14"),
    )
    registry.promote(version.version, actor="test", reason="test champion")
    return version.version


def write_drift(store: Warehouse, version: int, shares: list[float]) -> None:
    """feature_drift rows as the monitoring asset writes them: 10 features a day."""
    days = [LAST_DAY - timedelta(days=len(shares) - 1 - i) for i in range(len(shares))]
    rows = []
    for day, share in zip(days, shares):
        drifted = round(share * 10)
        for i in range(10):
            rows.append({"application_date": day, "feature": f"f{i}", "column_type": "numerical",
                         "method": "Wasserstein distance (normed)", "score_kind": "distance",
                         "score": 0.5 if i < drifted else 0.05, "threshold": 0.2, "drifted": i < drifted,
                         "current_rows": 400, "reference_rows": 5000, "champion_version": str(version),
                         "report_path": None})
    store.replace_partitions("feature_drift", pl.DataFrame(rows, schema=FEATURE_DRIFT_SCHEMA), "application_date", days)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retraining")
    paths = AiosPaths(tmp / "home").ensure()
    with dg.instance_for_test() as instance:
        yield SimpleNamespace(
            paths=paths, tmp=tmp, registry=None, instance=instance, store=Warehouse(paths.warehouse),
            resources={
                "warehouse": WarehouseResource(path=str(paths.warehouse)),
                "model_registry": ModelRegistryResource(tracking_uri=paths.mlflow_tracking_uri,
                                                        artifact_location=paths.mlflow_artifact_uri),
            },
        )


def tick(world, sensor, cursor: str | None):
    context = dg.build_sensor_context(cursor=cursor, instance=world.instance, resources=world.resources)
    return sensor(context), context.cursor


def test_sensor_launches_retraining_once_per_evidence(world):
    # no registry database yet: the sensor does not create it (the first training run does)
    result, cursor = tick(world, retraining_trigger_sensor, None)
    assert isinstance(result, dg.SkipReason) and "no model registry yet" in result.skip_message
    assert not world.paths.mlflow_db.exists()

    # a registry without a champion: nothing to monitor
    registry = ModelRegistry(default_registry_config(world.paths))
    result, cursor = tick(world, retraining_trigger_sensor, cursor)
    assert isinstance(result, dg.SkipReason) and "no champion" in result.skip_message

    world.registry = registry
    first = register(registry, world.tmp, "a" * 64)
    # a champion, no monitoring tables yet: no trigger
    result, cursor = tick(world, retraining_trigger_sensor, cursor)
    assert isinstance(result, dg.SkipReason) and "no retraining trigger fires" in result.skip_message

    # three red days of the newest seven (the shipped configuration needs three)
    write_drift(world.store, first, [0.0, 0.0, 0.0, 0.1, 0.3, 0.3, 0.4])
    result, cursor = tick(world, retraining_trigger_sensor, cursor)
    [request] = result
    assert request.job_name == "retrain_credit_model"
    assert request.run_key == f"retrain:drift_share:data-{'a' * 12}"
    assert request.tags["aios/trigger"] == "drift_share"
    evidence = json.loads(request.tags["aios/trigger_evidence"])["drift_share"]
    assert evidence["champion_version"] == first
    assert evidence["days"] == {"2026-09-27": 0.3, "2026-09-28": 0.3, "2026-09-29": 0.4}
    assert evidence["value"] == pytest.approx(0.3) and evidence["threshold"] == 0.2
    assert json.loads(cursor).keys() == {f"drift_share:data-{'a' * 12}"}

    # the next tick sees the same evidence (one more red day): no second run
    write_drift(world.store, first, [0.0, 0.0, 0.1, 0.3, 0.3, 0.4, 0.5])
    again, cursor_again = tick(world, retraining_trigger_sensor, cursor)
    assert isinstance(again, dg.SkipReason) and "already acted on (drift_share)" in again.skip_message
    assert cursor_again == cursor

    # the retrained champion was trained on other data: drift against it is new evidence
    second = register(world.registry, world.tmp, "b" * 64)
    result, _ = tick(world, retraining_trigger_sensor, cursor)
    assert isinstance(result, dg.SkipReason)  # the drift rows were measured against the previous champion
    write_drift(world.store, second, [0.3, 0.3, 0.3])
    result, cursor = tick(world, retraining_trigger_sensor, cursor)
    [request] = result
    assert request.run_key == f"retrain:drift_share:data-{'b' * 12}"
    assert len(json.loads(cursor)) == 2


def test_sensor_thresholds_come_from_configuration(world):
    registry = world.registry or ModelRegistry(default_registry_config(world.paths))
    champion = registry.champion() or registry.get_version(register(registry, world.tmp, "c" * 64))
    write_drift(world.store, champion.version, [0.3, 0.3, 0.3])
    strict = build_retraining_trigger_sensor(TriggerConfig(drift_share=0.9, max_model_age_days=1), name="strict")
    result, _ = tick(world, strict, None)
    assert isinstance(result, dg.SkipReason) and "no retraining trigger fires" in result.skip_message
    eager = build_retraining_trigger_sensor(TriggerConfig(drift_share=0.25, drift_min_days=1), name="eager")
    [request], _ = tick(world, eager, None)
    assert request.tags["aios/trigger"] == "drift_share"


@pytest.fixture(scope="module")
def definitions(world):
    return dg.Definitions(
        assets=[training_set, credit_risk_model, feature_drift_report, score_stability, model_performance, risk_report],
        jobs=[retrain_credit_model, monitor_applications],
        schedules=[nightly_retraining, daily_monitoring],
        sensors=[retraining_trigger_sensor],
        resources={
            **world.resources,
            "landing": LandingResource(landing_dir=str(world.paths.landing), contract_path=str(DEFAULT_CONTRACT_PATH)),
            "reports": ReportsResource(reports_dir=str(world.paths.reports)),
            "policy": PolicyResource(policy_path=str(DEFAULT_POLICY_PATH), control_dir=str(world.paths.control)),
        },
    )


def test_nightly_retraining_runs_the_retraining_job_at_two_utc(definitions):
    schedule = definitions.resolve_schedule_def("nightly_retraining")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == "retrain_credit_model"
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 9, 30, 2, 0, tzinfo=timezone.utc),
                                        repository_def=definitions.get_repository_def())
    [request] = schedule.evaluate_tick(context).run_requests
    job = definitions.resolve_job_def("retrain_credit_model")
    assert dg.validate_run_config(job, request.run_config) is not None
    assert request.tags["aios/trigger"] == "nightly_retraining"
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {"training_set", "credit_risk_model"}


def test_daily_monitoring_covers_yesterday(definitions):
    schedule = definitions.resolve_schedule_def("daily_monitoring")
    assert (schedule.cron_schedule, schedule.execution_timezone, schedule.job_name) == (
        "0 1 * * *", "UTC", "monitor_applications"
    )
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 9, 30, 1, 0, tzinfo=timezone.utc),
                                        repository_def=definitions.get_repository_def())
    [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-09-29"
    assert dg.validate_run_config(definitions.resolve_job_def("monitor_applications"), request.run_config) is not None


def test_the_sensor_targets_the_retraining_job(definitions):
    sensor = definitions.resolve_sensor_def("retraining_trigger_sensor")
    assert [t.job_name for t in sensor.targets] == ["retrain_credit_model"]
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
