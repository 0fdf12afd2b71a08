"""How the models did on the applications they scored, once the outcomes matured.

Scored applications are joined to their matured outcomes and grouped by application
vintage (the application day, or its ISO week starting Monday) and by the model version
that scored them. Each group gets the same discrimination and calibration figures the
model was validated with (``modeling.metrics.evaluate_predictions``: AUC, KS, Brier, mean
PD against the observed default rate) and is set against that version's out-of-time
figures from the registry.

A vintage's ``phase`` says what the comparison means: ``training`` (before the version's
out-of-time window: the model learned from these rows, so its AUC there is flattering),
``validation`` (overlapping the out-of-time window the registry figures come from) or
``production`` (after it: the only honest measure of decay). Only production vintages with
enough matured rows and defaults count for decay.

Nothing here imports Dagster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from aios_pipelines.modeling.metrics import evaluate_predictions

VINTAGES = ("day", "week")
MIN_VINTAGE_ROWS = 300
MIN_VINTAGE_DEFAULTS = 30
MIN_MATURED_SHARE = 0.8

TRAINING = "training"
VALIDATION = "validation"
PRODUCTION = "production"

PERFORMANCE_SCHEMA: dict[str, pl.DataType] = {
    "vintage": pl.String(),
    "vintage_start": pl.Date(),
    "vintage_end": pl.Date(),
    "model_version": pl.String(),
    "phase": pl.String(),
    "scored": pl.Int64(),
    "matured": pl.Int64(),
    "matured_share": pl.Float64(),
    "defaults": pl.Int64(),
    "default_rate": pl.Float64(),
    "mean_pd": pl.Float64(),
    "calibration_gap": pl.Float64(),
    "auc": pl.Float64(),
    "ks": pl.Float64(),
    "brier": pl.Float64(),
    "validation_auc": pl.Float64(),
    "validation_ks": pl.Float64(),
    "validation_brier": pl.Float64(),
    "auc_decay": pl.Float64(),
    "ks_decay": pl.Float64(),
    "enough_data": pl.Boolean(),
}


@dataclass(frozen=True)
class ValidationFigures:
    """A registered version's out-of-time figures and window (registry metrics and tag)."""

    auc: float | None
    ks: float | None
    brier: float | None
    oot_start: date | None
    oot_end: date | None

    @classmethod
    def from_registry(cls, metrics: Mapping[str, float], tags: Mapping[str, str]) -> "ValidationFigures":
        start = end = None
        window = tags.get("oot_window", "")
        if "/" in window:
            first, last = window.split("/", 1)
            try:
                start, end = date.fromisoformat(first), date.fromisoformat(last)
            except ValueError:
                start = end = None

        def number(key: str) -> float | None:
            value = metrics.get(key)
            return float(value) if value is not None and math.isfinite(float(value)) else None

        return cls(auc=number("auc"), ks=number("ks"), brier=number("brier"), oot_start=start, oot_end=end)


def vintage_bounds(day: date, vintage: str) -> tuple[date, date, str]:
    """(first day, last day, label) of the vintage holding ``day``."""
    if vintage == "day":
        return day, day, day.isoformat()
    if vintage == "week":
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return start, start + timedelta(days=6), f"{year}-W{week:02d}"
    raise ValueError(f"vintage must be one of {VINTAGES}, got {vintage!r}")


def phase_of(start: date, end: date, figures: ValidationFigures | None) -> str:
    if figures is None or figures.oot_start is None or figures.oot_end is None:
        return PRODUCTION
    if end < figures.oot_start:
        return TRAINING
    if start > figures.oot_end:
        return PRODUCTION
    return VALIDATION


def _minus(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a - b


def vintage_performance(
    scored: pl.DataFrame,
    outcomes: pl.DataFrame,
    validation: Mapping[str, ValidationFigures],
    *,
    vintage: str = "week",
    min_rows: int = MIN_VINTAGE_ROWS,
    min_defaults: int = MIN_VINTAGE_DEFAULTS,
    min_matured_share: float = MIN_MATURED_SHARE,
) -> pl.DataFrame:
    """One row per (vintage, model version) with at least one matured outcome.

    ``scored``: application_id, application_date, pd, model_version (rows scored by a
    model; fallback rows carry no version and are left out). ``outcomes``:
    application_id, defaulted. ``validation``: version -> its registry figures.
    """
    if vintage not in VINTAGES:
        raise ValueError(f"vintage must be one of {VINTAGES}, got {vintage!r}")
    frame = scored.filter(pl.col("model_version").is_not_null()).select(
        pl.col("application_id").cast(pl.String),
        pl.col("application_date").cast(pl.Date),
        pl.col("pd").cast(pl.Float64),
        pl.col("model_version").cast(pl.String),
    )
    labels = outcomes.select(pl.col("application_id").cast(pl.String), pl.col("defaulted").cast(pl.Int8)).unique(
        "application_id", keep="last"
    )
    frame = frame.join(labels, on="application_id", how="left")
    bounds = {d: vintage_bounds(d, vintage) for d in frame["application_date"].unique().to_list()}
    frame = frame.with_columns(
        pl.col("application_date").replace_strict({d: b[0] for d, b in bounds.items()}, return_dtype=pl.Date).alias("vintage_start")
    )
    rows = []
    for (start, version), group in frame.group_by(["vintage_start", "model_version"], maintain_order=False):
        matured = group.filter(pl.col("defaulted").is_not_null())
        if matured.is_empty():
            continue
        _, end, label = vintage_bounds(start, vintage)
        figures = validation.get(version)
        y = matured["defaulted"].to_numpy().astype(np.int64)
        p = np.clip(matured["pd"].to_numpy(), 0.0, 1.0)
        metrics = evaluate_predictions(y, p)
        share = matured.height / group.height
        enough = matured.height >= min_rows and metrics.positives >= min_defaults and share >= min_matured_share
        auc = metrics.auc if math.isfinite(metrics.auc) else None
        ks = metrics.ks if math.isfinite(metrics.ks) else None
        mean_pd = float(p.mean())
        rows.append(
            {
                "vintage": label,
                "vintage_start": start,
                "vintage_end": end,
                "model_version": version,
                "phase": phase_of(start, end, figures),
                "scored": group.height,
                "matured": matured.height,
                "matured_share": share,
                "defaults": metrics.positives,
                "default_rate": metrics.default_rate,
                "mean_pd": mean_pd,
                "calibration_gap": mean_pd - metrics.default_rate,
                "auc": auc,
                "ks": ks,
                "brier": metrics.brier,
                "validation_auc": figures.auc if figures else None,
                "validation_ks": figures.ks if figures else None,
                "validation_brier": figures.brier if figures else None,
                "auc_decay": _minus(figures.auc if figures else None, auc),
                "ks_decay": _minus(figures.ks if figures else None, ks),
                "enough_data": bool(enough),
            }
        )
    return pl.DataFrame(rows, schema=PERFORMANCE_SCHEMA).sort(["vintage_start", "model_version"])


def decay_evidence(performance: pl.DataFrame, version: str) -> pl.DataFrame:
    """The vintages that can show decay of ``version``: production, enough data, newest last."""
    if performance.is_empty():
        return performance
    return performance.filter(
        (pl.col("model_version") == version)
        & (pl.col("phase") == PRODUCTION)
        & pl.col("enough_data")
        & pl.col("auc_decay").is_not_null()
    ).sort("vintage_start")


__all__ = [
    "MIN_VINTAGE_DEFAULTS",
    "MIN_VINTAGE_ROWS",
    "PERFORMANCE_SCHEMA",
    "PRODUCTION",
    "TRAINING",
    "VALIDATION",
    "VINTAGES",
    "ValidationFigures",
    "decay_evidence",
    "phase_of",
    "vintage_bounds",
    "vintage_performance",
]
