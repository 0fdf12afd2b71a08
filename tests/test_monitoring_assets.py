"""The monitoring assets materialized for real: a champion trained by the credit_risk_model
asset (so it carries its reference sample), then a calm day, a day too small to judge and
a drifted day (the synthetic lender's 30% income cut) monitored against it.

One data directory per module: the training set is written straight into the warehouse
(ingestion has its own tests), the model is trained once, and the monitored days'
features, scores and outcomes are built from the generator.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from types import SimpleNamespace

import dagster as dg
import polars as pl
import pytest

from aios_pipelines.defs.modeling.assets import ModelTrainingConfig, credit_risk_model
from aios_pipelines.defs.monitoring.assets import (
    feature_drift_report,
    model_performance,
    monitor_applications,
    risk_report,
    score_stability,
)
from aios_pipelines.defs.resources import (
    LandingResource,
    ModelRegistryResource,
    PolicyResource,
    ReportsResource,
    WarehouseResource,
)
from aios_pipelines.features.build import build_features, feature_definition
from aios_pipelines.modeling.registry import ModelRegistry, default_registry_config
from aios_pipelines.modeling.training import FeatureSpec, predict_pd
from aios_pipelines.policy.policy import DEFAULT_POLICY_PATH
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH, AiosPaths
from aios_pipelines.storage.warehouse import Warehouse
from aios_pipelines.synthetic.generator import DriftSpec, generate_applications

START = date(2026, 3, 2)
TRAINING_DAYS = 12
PER_DAY = 400
SEED = 21
WINDOW = 60
CALM_DAY = START + timedelta(days=30)
TINY_DAY = CALM_DAY + timedelta(days=1)
DRIFT_DAY = CALM_DAY + timedelta(days=2)
DRIFT = DriftSpec(start=DRIFT_DAY, kind="income_shift", strength=1.0)
EXTERNAL_SRC = re.compile(r"<(?:script|link|img)\b[^>]*\b(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", re.IGNORECASE)


def resources(paths: AiosPaths) -> dict:
    return {
        "warehouse": WarehouseResource(path=str(paths.warehouse)),
        "landing": LandingResource(landing_dir=str(paths.landing), contract_path=str(DEFAULT_CONTRACT_PATH)),
        "reports": ReportsResource(reports_dir=str(paths.reports)),
        "model_registry": ModelRegistryResource(
            tracking_uri=paths.mlflow_tracking_uri, artifact_location=paths.mlflow_artifact_uri
        ),
        "policy": PolicyResource(policy_path=str(DEFAULT_POLICY_PATH), control_dir=str(paths.control)),
    }


def day_frames(contract, day: date, n: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    applications, truth = generate_applications(day, n, SEED, drift=DRIFT)
    return build_features(applications, contract.applications), truth


@pytest.fixture(scope="module")
def world(tmp_path_factory, contract):
    paths = AiosPaths(tmp_path_factory.mktemp("monitoring") / "home").ensure()
    store = Warehouse(paths.warehouse)
    training = []
    for offset in range(TRAINING_DAYS):
        day = START + timedelta(days=offset)
        features, truth = day_frames(contract, day, PER_DAY)
        training.append(
            features.join(truth.select("application_id", pl.col("defaulted").cast(pl.Int8)), on="application_id")
            .with_columns(pl.lit(day + timedelta(days=WINDOW)).alias("outcome_date"))
        )
    store.replace_table("training_set", pl.concat(training))

    with dg.instance_for_test() as instance:
        trained = dg.materialize(
            [credit_risk_model], resources=resources(paths), instance=instance,
            run_config=dg.RunConfig(ops={"credit_risk_model": ModelTrainingConfig(oot_days=3, min_data_in_leaf=20,
                                                                                  min_oot_auc=0.6)}),
        )
        assert trained.success
        registry = ModelRegistry(default_registry_config(paths))
        champion = registry.champion()
        booster, card = registry.load_booster("champion")
        spec = FeatureSpec.from_dict(card["feature_spec"])
        for day, n in ((CALM_DAY, PER_DAY), (TINY_DAY, 60), (DRIFT_DAY, PER_DAY)):
            features, truth = day_frames(contract, day, n)
            store.replace_partitions("application_features", features, "application_date", [day])
            scored = features.select("application_id", "application_date").with_columns(
                pl.Series("pd", predict_pd(booster, features, spec)),
                pl.lit(str(champion.version)).alias("model_version"),
                pl.lit("model").alias("decision_source"),
            )
            store.replace_partitions("scored_applications", scored, "application_date", [day])
            matured = day + timedelta(days=WINDOW)
            outcomes = truth.select(
                "application_id", pl.lit(matured).alias("outcome_date"), "defaulted", pl.lit(matured).alias("landing_date")
            )
            store.replace_partitions("raw_loan_outcomes", outcomes, "landing_date", [matured])
        yield SimpleNamespace(paths=paths, instance=instance, store=store, champion=champion, registry=registry,
                              features=feature_definition(contract.applications).features)


def materialize(world, assets, day: date | None = None, **kw) -> dg.ExecuteInProcessResult:
    return dg.materialize(assets, partition_key=day.isoformat() if day else None, resources=resources(world.paths),
                          instance=world.instance, **kw)


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [mat] = [m for m in result.get_asset_materialization_events() if m.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in mat.materialization.metadata.items()}


def check(result: dg.ExecuteInProcessResult, name: str):
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def drift_rows(world, day: date) -> pl.DataFrame:
    return world.store.query("select * from feature_drift where application_date = ?", [day])


def test_drift_check_turns_red_only_on_the_drifted_day(world):
    calm = materialize(world, [feature_drift_report], CALM_DAY)
    assert calm.success
    calm_check = check(calm, "check_drift_share_of_drifted_features")
    assert calm_check.passed
    calm_meta = metadata(calm, "feature_drift_report")
    assert calm_meta["share_of_drifted_features"] == 0.0
    assert calm_meta["champion_version"] == str(world.champion.version)

    drifted = materialize(world, [feature_drift_report], DRIFT_DAY)
    assert drifted.success  # a red check warns people; it does not fail the run
    red = check(drifted, "check_drift_share_of_drifted_features")
    assert not red.passed
    assert red.severity == dg.AssetCheckSeverity.ERROR
    assert red.metadata["red_days"].value == DRIFT_DAY.isoformat()
    meta = metadata(drifted, "feature_drift_report")
    assert meta["share_of_drifted_features"] >= 0.2
    assert "`annual_income`" in meta["drifted_features"] and "`loan_to_income`" in meta["drifted_features"]

    # the warehouse table: one row per day x feature, with the method used and the verdict
    calm_rows, drift_rows_ = drift_rows(world, CALM_DAY), drift_rows(world, DRIFT_DAY)
    assert calm_rows.height == drift_rows_.height == len(world.features)
    assert not calm_rows["drifted"].any()
    assert set(drift_rows_.filter(pl.col("drifted"))["feature"]) == {
        "annual_income", "debt_to_income", "loan_to_income", "existing_debt_to_income", "payment_burden"
    }
    assert set(drift_rows_["method"]) == {"Wasserstein distance (normed)", "Jensen-Shannon distance"}
    assert drift_rows_["score"].is_not_null().all() and drift_rows_["threshold"].is_not_null().all()
    assert set(drift_rows_["current_rows"]) == {PER_DAY}

    # the day's Evidently report is linked from the materialization and opens offline
    for result, day in ((calm, CALM_DAY), (drifted, DRIFT_DAY)):
        path = world.paths.reports / "drift" / f"{day.isoformat()}.html"
        assert metadata(result, "feature_drift_report")["report"] == str(path)
        assert metadata(result, "feature_drift_report")["report_url"] == path.resolve().as_uri()
        text = path.read_text(encoding="utf-8")
        assert not EXTERNAL_SRC.search(text)

    # re-materializing a day replaces its rows, never appends
    assert materialize(world, [feature_drift_report], CALM_DAY).success
    assert drift_rows(world, CALM_DAY).height == len(world.features)


def test_a_day_below_the_minimum_batch_is_not_judged(world):
    result = materialize(world, [feature_drift_report], TINY_DAY)
    assert result.success
    skipped = check(result, "check_drift_share_of_drifted_features")
    assert not skipped.passed and skipped.severity == dg.AssetCheckSeverity.WARN
    assert f"not judged on {TINY_DAY} (60 applications, fewer than 200)" in skipped.description
    assert skipped.metadata["days_not_judged"].value == {TINY_DAY.isoformat(): "60 applications, fewer than 200"}
    assert drift_rows(world, TINY_DAY).is_empty()
    assert not (world.paths.reports / "drift" / f"{TINY_DAY.isoformat()}.html").exists()

    # a single-run backfill over the three days: one check over the run, naming each kind of day
    backfill = dg.materialize(
        [feature_drift_report], resources=resources(world.paths), instance=world.instance,
        tags={"dagster/asset_partition_range_start": CALM_DAY.isoformat(),
              "dagster/asset_partition_range_end": DRIFT_DAY.isoformat()},
    )
    assert backfill.success
    result = check(backfill, "check_drift_share_of_drifted_features")
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["red_days"].value == DRIFT_DAY.isoformat()
    assert list(result.metadata["days_not_judged"].value) == [TINY_DAY.isoformat()]
    assert result.metadata["days_judged"].value == 2
    assert len(backfill.get_asset_materialization_events()) == 3  # one per day of the range
    days = world.store.query("select distinct application_date from feature_drift order by 1")["application_date"]
    assert days.to_list() == [CALM_DAY, DRIFT_DAY]


def test_score_stability_against_the_reference(world):
    calm = materialize(world, [score_stability], CALM_DAY)
    drifted = materialize(world, [score_stability], DRIFT_DAY)
    assert calm.success and drifted.success
    assert check(calm, "check_stability_pd_psi").passed
    table = world.store.query("select * from score_stability")
    pd_rows = table.filter(pl.col("variable") == "pd").sort("application_date")
    assert pd_rows["application_date"].to_list() == [CALM_DAY, DRIFT_DAY]
    assert set(pd_rows["model_version"]) == {str(world.champion.version)}
    calm_pd, drift_pd = pd_rows["psi"].to_list()
    # the income cut moves the PD distribution, though less than the income features
    assert calm_pd < drift_pd and calm_pd < 0.1
    features = table.filter((pl.col("kind") == "feature") & (pl.col("variable") == "annual_income"))
    bands = dict(zip(features["application_date"].to_list(), features["band"].to_list()))
    assert bands == {CALM_DAY: "stable", DRIFT_DAY: "significant"}
    assert metadata(drifted, "score_stability")["pd_psi"] == pytest.approx(drift_pd)
    # categorical codes and missing indicators are not numeric characteristics
    assert not table.filter(pl.col("variable").is_in(["purpose", "bureau_score__missing"])).height


def test_performance_by_vintage_and_the_risk_report(world):
    result = materialize(world, [model_performance, risk_report])
    assert result.success
    performance = world.store.query("select * from model_performance")
    assert performance.height >= 1
    assert set(performance["phase"]) == {"production"}  # the monitored days came after the out-of-time window
    assert performance["matured"].sum() == 2 * PER_DAY + 60
    champion_auc = world.registry.get_version(world.champion.version).metrics["auc"]
    assert performance["validation_auc"].to_list() == pytest.approx([champion_auc] * performance.height)
    decay = check(result, "check_performance_auc_decay")
    assert "auc_decay" in decay.metadata or decay.passed

    report = world.paths.reports / "risk_report.html"
    meta = metadata(result, "risk_report")
    assert meta["report"] == str(report)
    html = report.read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert not re.search(r"https?://", html)
    assert html.count("data:image/png;base64,") >= 3  # drift, stability, performance
    assert "override_rates table does not exist yet" in html and "time_to_decision table does not exist yet" in html
    assert meta["sections"] == {
        "override_rate": "skipped: the override_rates table does not exist yet (dbt builds it from human decisions)",
        "time_to_decision": "skipped: the time_to_decision table does not exist yet (dbt builds it from the review store)",
    }
    assert f'href="drift/{DRIFT_DAY.isoformat()}.html"' in html

    # once dbt has built the analytics tables, their sections appear
    days = [CALM_DAY, DRIFT_DAY]
    world.store.replace_table("override_rates", pl.DataFrame({
        "decision_date": days * 2, "reviewer": ["alice"] * 2 + ["bob"] * 2,
        "verdicts": [40, 50, 60, 50], "overrides": [4, 10, 6, 20], "override_rate": [0.1, 0.2, 0.1, 0.4],
    }))
    world.store.replace_table("time_to_decision", pl.DataFrame({
        "decision_date": days, "queue": ["standard", "standard"], "decided_cases": [30, 40], "p50_hours": [5.0, 2.0],
    }))
    try:
        again = materialize(world, [risk_report])
        assert again.success
        assert metadata(again, "risk_report")["sections"] == {"override_rate": "included", "time_to_decision": "included"}
        html = report.read_text(encoding="utf-8")
        assert html.count("data:image/png;base64,") >= 5
        assert "0.300" in html  # (10 + 20) / (50 + 50) on the drifted day
    finally:
        with world.store.connect() as con:
            con.execute("drop table override_rates")
            con.execute("drop table time_to_decision")


def test_monitor_job_selects_the_monitoring_assets_with_daily_partitions(world):
    defs = dg.Definitions(
        assets=[feature_drift_report, score_stability, model_performance, risk_report], jobs=[monitor_applications],
        resources=resources(world.paths),
    )
    job = defs.resolve_job_def("monitor_applications")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {
        "feature_drift_report", "score_stability", "model_performance", "risk_report"
    }
    assert job.partitions_def is not None and job.partitions_def.get_partition_keys()[0] == "2026-01-01"
    assert job.executor_def.name == "in_process"
