"""Where people override the model: override rates by segment (score band, policy rule,
reviewer, channel) shrunk towards the overall rate, and a small L2-regularised logistic
regression that adjusts each segment for the others (a reviewer who sees mostly band-D
cases is not blamed for band D). Pure functions on polars frames; no Dagster."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

DIMENSIONS = ("score_band", "policy_rule", "reviewer", "channel")
# The prior counts as this many verdicts at the overall rate: a segment with 5 verdicts and
# 3 overrides is pulled most of the way back; one with 500 keeps its own rate.
PRIOR_STRENGTH = 20.0
REGULARISATION_C = 1.0
UNKNOWN = "unknown"

SEGMENT_SCHEMA = {
    "dimension": pl.String(),
    "segment": pl.String(),
    "verdicts": pl.Int64(),
    "overrides": pl.Int64(),
    "low_side_overrides": pl.Int64(),
    "high_side_overrides": pl.Int64(),
    "override_rate": pl.Float64(),
    "shrunk_override_rate": pl.Float64(),
    "lift": pl.Float64(),
    "coefficient": pl.Float64(),
    "odds_ratio": pl.Float64(),
}


@dataclass(frozen=True)
class OverridePropensity:
    segments: pl.DataFrame
    verdicts: int
    overrides: int
    overall_rate: float | None
    model: str  # what was fitted, or why nothing was
    in_sample_auc: float | None

    def top_segments(self, n: int = 5) -> pl.DataFrame:
        return self.segments.sort(["shrunk_override_rate", "verdicts"], descending=True, nulls_last=True).head(n)


def _prepared(verdicts: pl.DataFrame, dimensions: tuple[str, ...]) -> pl.DataFrame:
    return verdicts.select(
        *[pl.col(d).cast(pl.String).fill_null(UNKNOWN).alias(d) for d in dimensions],
        pl.col("is_override").cast(pl.Boolean).fill_null(False).alias("is_override"),
        pl.col("override_direction").cast(pl.String),
    )


def shrunk_rates(frame: pl.DataFrame, dimensions: tuple[str, ...], prior_strength: float) -> pl.DataFrame:
    """Per dimension and value: counts, the raw rate and (overrides + m p0) / (verdicts + m)."""
    overall = float(frame["is_override"].mean())
    parts = []
    for dimension in dimensions:
        parts.append(
            frame.group_by(dimension)
            .agg(
                pl.len().cast(pl.Int64).alias("verdicts"),
                pl.col("is_override").sum().cast(pl.Int64).alias("overrides"),
                (pl.col("override_direction") == "low_side").sum().cast(pl.Int64).alias("low_side_overrides"),
                (pl.col("override_direction") == "high_side").sum().cast(pl.Int64).alias("high_side_overrides"),
            )
            .rename({dimension: "segment"})
            .with_columns(pl.lit(dimension).alias("dimension"))
        )
    table = pl.concat(parts).with_columns(
        (pl.col("overrides") / pl.col("verdicts")).alias("override_rate"),
        ((pl.col("overrides") + prior_strength * overall) / (pl.col("verdicts") + prior_strength)).alias(
            "shrunk_override_rate"
        ),
    )
    lift = pl.col("shrunk_override_rate") / overall if overall > 0 else pl.lit(None, dtype=pl.Float64)
    return table.with_columns(lift.alias("lift"))


def _logistic_coefficients(
    frame: pl.DataFrame, dimensions: tuple[str, ...], c: float
) -> tuple[dict[tuple[str, str], float], float | None, str]:
    """One coefficient (log-odds) per dimension value, from a one-hot L2 logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    target = frame["is_override"].to_numpy().astype(int)
    if target.min() == target.max():
        return {}, None, "no logistic regression: every verdict agrees" if target.max() == 0 else (
            "no logistic regression: every verdict overrides"
        )
    columns: list[tuple[str, str]] = []
    blocks = []
    for dimension in dimensions:
        values = frame[dimension].to_numpy()
        for value in sorted(set(values.tolist())):
            columns.append((dimension, value))
            blocks.append((values == value).astype(float))
    design = np.column_stack(blocks)
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit(design, target)
    auc = float(roc_auc_score(target, model.predict_proba(design)[:, 1]))
    coefficients = dict(zip(columns, (float(v) for v in model.coef_[0])))
    return coefficients, auc, f"logistic regression, L2 (C={c}), one-hot {', '.join(dimensions)}"


def override_propensity(
    verdicts: pl.DataFrame,
    dimensions: tuple[str, ...] = DIMENSIONS,
    prior_strength: float = PRIOR_STRENGTH,
    regularisation_c: float = REGULARISATION_C,
) -> OverridePropensity:
    """``verdicts`` holds one row per human approve / decline verdict with ``is_override``,
    ``override_direction`` and the ``dimensions`` columns."""
    if prior_strength < 0 or regularisation_c <= 0:
        raise ValueError("prior_strength must be >= 0 and regularisation_c > 0")
    if verdicts.is_empty():
        return OverridePropensity(pl.DataFrame(schema=SEGMENT_SCHEMA), 0, 0, None, "no verdicts yet", None)
    frame = _prepared(verdicts, dimensions)
    table = shrunk_rates(frame, dimensions, prior_strength)
    coefficients, auc, description = _logistic_coefficients(frame, dimensions, regularisation_c)
    keys = list(zip(table["dimension"].to_list(), table["segment"].to_list()))
    table = table.with_columns(
        pl.Series("coefficient", [coefficients.get(k) for k in keys], dtype=pl.Float64),
    ).with_columns(pl.col("coefficient").exp().alias("odds_ratio"))
    table = table.select(list(SEGMENT_SCHEMA)).cast(SEGMENT_SCHEMA).sort(["dimension", "segment"])
    overrides = int(frame["is_override"].sum())
    return OverridePropensity(table, frame.height, overrides, overrides / frame.height, description, auc)
