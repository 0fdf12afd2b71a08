"""``training_set`` and ``credit_risk_model``: train on matured outcomes, register in MLflow,
and let the promotion gate decide whether the new version becomes the champion."""

from datetime import date, datetime, timezone

import dagster as dg
import polars as pl

from aios_pipelines.defs.metadata import markdown_table
from aios_pipelines.defs.resources import (
    LandingResource,
    ModelRegistryResource,
    PolicyResource,
    ReportsResource,
    WarehouseResource,
)
from aios_pipelines.features.build import feature_definition
from aios_pipelines.modeling import model_quality
from aios_pipelines.modeling.training_set import LABEL, OUTCOME_DATE, build_training_set

MODELING_GROUP = "modeling"
# Run tags set by whoever launches a retraining (see monitoring.triggers.run_tags).
TRIGGER_RUN_TAG = "aios/trigger"
TRIGGER_EVIDENCE_RUN_TAG = "aios/trigger_evidence"
REFERENCE_SAMPLE_ROWS = 20_000


class TrainingSetConfig(dg.Config):
    as_of: str | None = None  # YYYY-MM-DD; default: the newest outcome day loaded


@dg.asset(
    group_name=MODELING_GROUP,
    kinds={"polars", "duckdb"},
    deps=["application_features", "raw_loan_outcomes"],
    pool="warehouse",
)
def training_set(
    context: dg.AssetExecutionContext,
    config: TrainingSetConfig,
    landing: LandingResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """Application features joined to matured loan outcomes only (no label leakage)."""
    contract = landing.contract()
    store = warehouse.get()
    outcomes = store.read_table("raw_loan_outcomes")
    if outcomes.is_empty():
        raise ValueError("raw_loan_outcomes is empty: ingest matured outcomes before training")
    outcome_day = contract.outcomes.timestamp_column.name
    as_of = date.fromisoformat(config.as_of) if config.as_of else outcomes[outcome_day].max()
    from aios_pipelines.governance.retention import redacted_before

    features = store.read_table("application_features")
    redacted = redacted_before(store)
    if redacted is not None:  # retention removed the personal features of older applications
        features = features.filter(pl.col("application_date") >= redacted)
    frame = build_training_set(
        features,
        outcomes,
        contract.outcomes,
        as_of=as_of,
        performance_window_days=contract.performance_window_days,
    )
    store.replace_table("training_set", frame)
    by_day = frame.group_by("application_date").agg(pl.len().alias("rows"), pl.col(LABEL).mean().alias("default_rate"))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "as_of": as_of.isoformat(),
            "first_application_day": str(frame["application_date"].min()),
            "last_application_day": str(frame["application_date"].max()),
            "default_rate": float(frame[LABEL].mean() or 0.0),
            "days": by_day.height,
            "latest_outcome_day": str(frame[OUTCOME_DATE].max()),
            "preview": markdown_table(frame.head(5)),
        }
    )


class ModelTrainingConfig(dg.Config):
    """Training settings; defaults live in aios_pipelines.modeling (training, model_quality, promotion)."""

    oot_days: int = 14
    num_leaves: int = 8
    learning_rate: float = 0.05
    max_rounds: int = 400
    min_data_in_leaf: int = 50
    seed: int = 42
    min_oot_auc: float = model_quality.MIN_OOT_AUC
    max_oot_brier: float = model_quality.MAX_OOT_BRIER
    max_calibration_gap: float = model_quality.MAX_CALIBRATION_GAP
    gate_max_auc_drop: float = 0.01
    gate_max_brier_increase: float = 0.01


QUALITY_CHECKS = ("check_performance_oot_auc", "check_performance_oot_brier", "check_calibration_oot_mean_pd")


@dg.asset(
    group_name=MODELING_GROUP,
    kinds={"lightgbm", "mlflow"},
    deps=["training_set"],
    check_specs=[
        dg.AssetCheckSpec(
            "check_performance_oot_auc",
            asset="credit_risk_model",
            blocking=True,
            description="Out-of-time AUC at or above the configured minimum.",
        ),
        dg.AssetCheckSpec(
            "check_performance_oot_brier", asset="credit_risk_model", description="Out-of-time Brier score."
        ),
        dg.AssetCheckSpec(
            "check_calibration_oot_mean_pd",
            asset="credit_risk_model",
            description="Mean PD close to the observed default rate on the out-of-time window.",
        ),
        dg.AssetCheckSpec(
            "check_promotion_gate",
            asset="credit_risk_model",
            description="Whether the new version took the champion alias, and why (WARN when it stays a challenger).",
        ),
    ],
)
def credit_risk_model(
    context: dg.AssetExecutionContext,
    config: ModelTrainingConfig,
    landing: LandingResource,
    warehouse: WarehouseResource,
    model_registry: ModelRegistryResource,
    policy: PolicyResource,
    reports: ReportsResource,
):
    """LightGBM probability-of-default model, registered in MLflow; the gate picks the champion."""
    from aios_pipelines.modeling.metrics import calibration_markdown, evaluate_predictions, lift_markdown, plot_model_report
    from aios_pipelines.modeling.promotion import PromotionGateConfig, apply_gate, decide_promotion
    from aios_pipelines.modeling.registry import (
        TAG_EARLY_STOPPING_START,
        TAG_TRAINING_WINDOW,
        TAG_TRIGGER,
        TAG_TRIGGER_EVIDENCE,
        ModelUnavailableError,
    )
    from aios_pipelines.modeling.training import FeatureSpec, TrainingConfig, lightgbm_params, train_credit_model

    contract = landing.contract()
    definition = feature_definition(contract.applications)
    spec = FeatureSpec(
        features=list(definition.features), categorical=list(definition.categorical), monotone=dict(definition.monotone)
    )
    training_config = TrainingConfig(
        oot_days=config.oot_days,
        num_leaves=config.num_leaves,
        learning_rate=config.learning_rate,
        max_rounds=config.max_rounds,
        min_data_in_leaf=config.min_data_in_leaf,
        seed=config.seed,
    )
    frame = warehouse.get().read_table("training_set")
    trained = train_credit_model(frame, spec, training_config)
    metrics = evaluate_predictions(trained.oot_labels, trained.oot_predictions)
    checks = model_quality.quality_checks(metrics, config.min_oot_auc, config.max_oot_brier, config.max_calibration_gap)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    report_dir = reports.folder("models", f"{stamp}_{trained.data_hash[:8]}")
    plot = plot_model_report(metrics, report_dir / "model_report.png")
    (report_dir / "calibration.md").write_text(calibration_markdown(metrics))
    (report_dir / "lift.md").write_text(lift_markdown(metrics))

    # The drift reference travels with the model: a sample of the rows it was trained on,
    # with the PDs it gives them, so monitoring compares new days with *this* champion.
    from aios_pipelines.modeling.training import predict_pd, split_out_of_time

    train_rows = split_out_of_time(frame, config.oot_days)[0]
    reference = train_rows.sample(n=min(REFERENCE_SAMPLE_ROWS, train_rows.height), seed=config.seed, shuffle=False)
    reference = reference.with_columns(pl.Series("pd", predict_pd(trained.booster, reference, spec)))
    reference_path = report_dir / "reference_sample.parquet"
    reference.write_parquet(reference_path)

    registry = model_registry.get()
    version = registry.log_and_register(
        trained.booster,
        metrics=metrics.as_dict(),
        params={**lightgbm_params(spec, training_config), "best_iteration": trained.best_iteration,
                "train_rows": trained.train_rows, "oot_rows": trained.oot_rows},
        feature_spec=spec.as_dict(),
        feature_ranges={k: list(v) for k, v in trained.feature_ranges.items()},
        contract_fingerprint=contract.fingerprint,
        policy_version=policy.policy().version,
        data_snapshot_hash=trained.data_hash,
        dagster_run_id=context.run_id,
        artifacts={
            "model_report": plot,
            "calibration": report_dir / "calibration.md",
            "lift": report_dir / "lift.md",
            "reference_sample": reference_path,
        },
        oot_window=(trained.oot_start.isoformat(), trained.oot_end.isoformat()),
    )

    # What the version learnt from and why it was trained (the retraining trigger and its
    # evidence travel as run tags from the sensor or the demo; a scheduled run names its schedule).
    provenance = {
        TAG_TRAINING_WINDOW: f"{trained.train_start}/{trained.oot_end}",
        TAG_EARLY_STOPPING_START: trained.early_stopping_start.isoformat(),
    }
    run_tags = context.run.tags if context.run else {}
    if run_tags.get(TRIGGER_RUN_TAG):
        provenance[TAG_TRIGGER] = run_tags[TRIGGER_RUN_TAG]
    if run_tags.get(TRIGGER_EVIDENCE_RUN_TAG):
        provenance[TAG_TRIGGER_EVIDENCE] = run_tags[TRIGGER_EVIDENCE_RUN_TAG][:4000]
    version = registry.tag_version(version.version, provenance)

    champion = registry.champion()
    champion_metrics = None
    champion_note = "no champion yet"
    if champion is not None and champion.version != version.version:
        try:
            booster, card = registry.load_booster("champion")
            champion_spec = FeatureSpec.from_dict(card["feature_spec"])
            oot = model_quality.out_of_time_rows(frame, config.oot_days)
            champion_metrics = model_quality.champion_metrics_on(booster, champion_spec, oot).as_dict()
            champion_note = f"champion v{champion.version} re-scored on the same out-of-time window"
        except (ModelUnavailableError, ValueError, KeyError) as exc:
            champion_note = f"champion v{champion.version} cannot be re-scored ({exc}); judged on thresholds alone"
    decision = decide_promotion(
        metrics.as_dict(),
        champion_metrics,
        checks_passed=all(c.passed for c in checks),
        config=PromotionGateConfig(
            max_auc_drop=config.gate_max_auc_drop,
            min_auc=config.min_oot_auc,
            max_brier_increase=config.gate_max_brier_increase,
        ),
    )
    version = apply_gate(registry, version, decision)
    context.log.info(f"model version {version.version}: {decision.reason}")

    yield dg.MaterializeResult(
        metadata={
            "model_version": version.version,
            "mlflow_run_id": version.run_id,
            "mlflow_tracking_uri": model_registry.tracking_uri,
            "mlflow_ui": dg.MetadataValue.md(
                f"`mlflow ui --backend-store-uri {model_registry.tracking_uri}` then "
                f"Models → credit_risk_model → Version {version.version}"
            ),
            "aliases": ", ".join(version.aliases) or "none",
            "gate_decision": "promoted" if decision.promote else "kept as challenger",
            "gate_reason": decision.reason,
            "champion_comparison": champion_note,
            "oot_auc": float(metrics.auc),
            "oot_gini": float(metrics.gini),
            "oot_ks": float(metrics.ks),
            "oot_brier": float(metrics.brier),
            "training_window": f"{trained.train_start} .. {trained.oot_end} (early stopping from "
                               f"{trained.early_stopping_start}, out of time from {trained.oot_start})",
            "retrain_trigger": run_tags.get(TRIGGER_RUN_TAG, "none (launched by hand or by the demo)"),
            "oot_window": f"{trained.oot_start} .. {trained.oot_end} ({trained.oot_rows} rows)",
            "train_rows": trained.train_rows,
            "best_iteration": trained.best_iteration,
            "data_snapshot_hash": trained.data_hash,
            "calibration": dg.MetadataValue.md(calibration_markdown(metrics)),
            "lift": dg.MetadataValue.md(lift_markdown(metrics)),
            "model_report": dg.MetadataValue.path(str(plot)),
        }
    )
    for check in checks:
        yield dg.AssetCheckResult(
            check_name=check.name,
            passed=check.passed,
            severity=dg.AssetCheckSeverity.ERROR if check.name == "check_performance_oot_auc" else dg.AssetCheckSeverity.WARN,
            metadata={"value": check.value, "threshold": check.threshold, "rule": check.description},
        )
    yield dg.AssetCheckResult(
        check_name="check_promotion_gate",
        passed=decision.promote,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "decision": "promoted" if decision.promote else "kept as challenger",
            "reason": decision.reason,
            "champion_metrics_same_window": dg.MetadataValue.json(champion_metrics or {}),
        },
    )


retrain_credit_model = dg.define_asset_job(
    "retrain_credit_model",
    selection=dg.AssetSelection.assets("training_set", "credit_risk_model"),
    executor_def=dg.in_process_executor,
    description="Rebuild the training set from matured outcomes, train, register, and run the promotion gate.",
)
