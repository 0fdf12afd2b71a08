"""Model-quality thresholds and the champion's figures on a challenger's out-of-time window."""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import polars as pl

from aios_pipelines.modeling.metrics import ModelMetrics, evaluate_predictions
from aios_pipelines.modeling.training import DEFAULT_DATE_COLUMN, FeatureSpec, predict_pd, split_out_of_time

# Defaults for the asset checks on a newly trained model (overridable in the run config).
MIN_OOT_AUC = 0.70
MAX_OOT_BRIER = 0.12
MAX_CALIBRATION_GAP = 0.03  # |mean PD - observed default rate| on the out-of-time window


@dataclass(frozen=True)
class QualityCheck:
    name: str
    passed: bool
    value: float
    threshold: float
    description: str


def quality_checks(metrics: ModelMetrics, min_auc: float, max_brier: float, max_calibration_gap: float) -> list[QualityCheck]:
    rows = sum(row["rows"] for row in metrics.calibration)
    mean_pd = sum(row["mean_pd"] * row["rows"] for row in metrics.calibration) / rows if rows else float("nan")
    gap = abs(mean_pd - metrics.default_rate)
    return [
        QualityCheck("check_performance_oot_auc", bool(metrics.auc >= min_auc), float(metrics.auc), min_auc,
                     f"Out-of-time AUC at least {min_auc}"),
        QualityCheck("check_performance_oot_brier", bool(metrics.brier <= max_brier), float(metrics.brier), max_brier,
                     f"Out-of-time Brier score at most {max_brier}"),
        QualityCheck("check_calibration_oot_mean_pd", bool(gap <= max_calibration_gap), float(gap), max_calibration_gap,
                     f"|mean PD - observed default rate| at most {max_calibration_gap} on the out-of-time window"),
    ]


def out_of_time_rows(training_set: pl.DataFrame, oot_days: int) -> pl.DataFrame:
    return split_out_of_time(training_set, oot_days, date_column=DEFAULT_DATE_COLUMN)[1]


def champion_metrics_on(
    booster: lgb.Booster, feature_spec: FeatureSpec, oot: pl.DataFrame, label: str = "defaulted"
) -> ModelMetrics:
    """The champion re-scored on the challenger's out-of-time rows: a like-for-like comparison."""
    pd_values = predict_pd(booster, oot, feature_spec)
    return evaluate_predictions(oot[label].to_numpy(), pd_values)
