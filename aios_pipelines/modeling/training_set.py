"""Matured outcomes joined to application features: what the model may learn from.

No label leakage: an outcome counts only when it was observed on or before ``as_of`` *and*
its application's performance window had closed by then. A default reported early, or an
outcome from after the cut-off, is not in the set.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from aios_pipelines.features.build import APPLICATION_DATE, APPLICATION_ID
from aios_pipelines.ingestion.contract import DatasetSpec

LABEL = "defaulted"
OUTCOME_DATE = "outcome_date"


def build_training_set(
    features: pl.DataFrame,
    outcomes: pl.DataFrame,
    outcome_spec: DatasetSpec,
    *,
    as_of: date,
    performance_window_days: int,
) -> pl.DataFrame:
    """One row per matured application: its features, ``outcome_date`` and ``defaulted``."""
    matured = outcomes.select(
        pl.col(outcome_spec.id_column.name).cast(pl.String).alias(APPLICATION_ID),
        pl.col(outcome_spec.timestamp_column.name).cast(pl.Date).alias(OUTCOME_DATE),
        pl.col(outcome_spec.target_column.name).cast(pl.Int8).alias(LABEL),
    ).filter(pl.col(OUTCOME_DATE) <= pl.lit(as_of))
    latest_application_day = as_of - timedelta(days=performance_window_days)
    return (
        features.filter(pl.col(APPLICATION_DATE) <= pl.lit(latest_application_day))
        .join(matured, on=APPLICATION_ID, how="inner")
        .filter(pl.col(OUTCOME_DATE) >= pl.col(APPLICATION_DATE) + pl.duration(days=performance_window_days))
        .sort([APPLICATION_DATE, APPLICATION_ID])
    )
