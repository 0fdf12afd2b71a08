"""Reason codes from LightGBM's own feature contributions, and a decision-confidence score.

LightGBM's ``pred_contrib=True`` returns exact TreeSHAP values: for each row one value per
feature plus a bias (last column), in log-odds (raw score) space, summing to the raw score.
For a day's batch they are computed per tree for each distinct way a row goes through it
(:mod:`aios_pipelines.modeling.tree_shap`): the same values, about seven times faster.
A reason is a feature whose contribution pushed the row's risk UP (adverse-action style); a
feature that lowered the risk is never a reason. Contributions still cost several plain
predictions, so the pipeline computes them only for the rows that need them (declines and
referrals), through :func:`explain_rows`.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from aios_pipelines.modeling.tree_shap import tree_shap_contributions
from aios_pipelines.modeling.training import (
    ID_COLUMN,
    FeatureSpec,
    check_booster_features,
    feature_matrix,
    logit,
)

MISSING_SUFFIX = "__missing"
OTHER_CODE = "OTHER"
DEFAULT_MAX_REASONS = 4
# Log-odds distance at which prediction_confidence reaches tanh(1) ≈ 0.76.
DEFAULT_CONFIDENCE_SCALE = 1.0


def contributions(booster: lgb.Booster, matrix: np.ndarray, predictions: np.ndarray | None = None) -> np.ndarray:
    """``(n, n_features + 1)`` contributions in log-odds space; the last column is the bias
    (the expected raw score), and each row sums to the row's raw score.

    LightGBM's exact TreeSHAP, tabulated per tree for large batches (:mod:`tree_shap`);
    ``predictions`` (``booster.predict(matrix)``, when the caller has them) spare its
    additivity check a prediction of its own.
    """
    n_features = booster.num_feature()
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != n_features:
        raise ValueError(f"expected a matrix with {n_features} columns, got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        return np.empty((0, n_features + 1), dtype=np.float64)
    contribs, _ = tree_shap_contributions(booster, matrix, predictions)
    if contribs.shape != (matrix.shape[0], n_features + 1):
        raise ValueError(f"unexpected contribution shape {contribs.shape}")
    return contribs


def _feature_block(contribs: np.ndarray, feature_names: list[str]) -> np.ndarray:
    contribs = np.asarray(contribs, dtype=np.float64)
    if contribs.ndim != 2:
        raise ValueError(f"contributions must be a 2-d array, got shape {contribs.shape}")
    n = len(feature_names)
    if contribs.shape[1] == n + 1:  # with the bias column
        return contribs[:, :n]
    if contribs.shape[1] == n:
        return contribs
    raise ValueError(
        f"contributions have {contribs.shape[1]} columns for {n} features "
        f"(expected {n} or {n + 1} with the bias)"
    )


def ranked_lists(
    scores: np.ndarray, names: list[str], keep: int, threshold: float
) -> tuple[pl.Series, pl.Series]:
    """Per row of ``scores`` (rows x len(names)), the names whose score is strictly above
    ``threshold``, largest first (ties keep column order), at most ``keep``; and their scores.

    Built column-wise in polars from the sorted numpy block, never row by row in Python: a
    million rows of Python lists cost far more than the predictions they explain.
    """
    n_rows = scores.shape[0]
    keep = min(keep, len(names))
    if n_rows == 0 or keep == 0:
        empty = pl.Series([[]] * n_rows, dtype=pl.List(pl.String))
        return empty, pl.Series([[]] * n_rows, dtype=pl.List(pl.Float64))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :keep]
    values = np.take_along_axis(scores, order, axis=1)
    qualifies = values > threshold  # NaN never qualifies; qualifying values lead a descending row
    # flat, vectorised lookups, then one fixed-width row per application with the
    # non-qualifying slots null and dropped (list.eval would run an expression per row)
    lookup: dict[int, str | None] = {**dict(enumerate(names)), -1: None}
    name_lists = (
        pl.Series("names", np.where(qualifies, order, -1).astype(np.int64).ravel())
        .replace_strict(lookup, return_dtype=pl.String)
        .reshape((n_rows, keep))
        .arr.to_list()
        .list.drop_nulls()
    )
    amount_lists = (
        pl.Series("amounts", np.where(qualifies, values, np.nan).ravel())
        .fill_nan(None)
        .reshape((n_rows, keep))
        .arr.to_list()
        .list.drop_nulls()
    )
    return name_lists, amount_lists


def _top_positive(
    contribs: np.ndarray, feature_names: list[str], max_reasons: int, min_contribution: float
) -> tuple[pl.Series, pl.Series]:
    if max_reasons < 0:
        raise ValueError(f"max_reasons must be non-negative, got {max_reasons}")
    if not min_contribution >= 0:
        raise ValueError(
            f"min_contribution must be non-negative (a reason must raise the risk), "
            f"got {min_contribution}"
        )
    block = _feature_block(contribs, feature_names)
    return ranked_lists(block, feature_names, max_reasons, min_contribution)


def top_reasons(
    contribs: np.ndarray,
    feature_names: list[str],
    max_reasons: int = DEFAULT_MAX_REASONS,
    min_contribution: float = 0.0,
) -> list[list[str]]:
    """Per row, the features with the largest positive contributions (those that pushed the
    risk up), largest first, at most ``max_reasons``, only those strictly above
    ``min_contribution`` (which must be >= 0). ``contribs`` may include the bias column."""
    names, _ = _top_positive(contribs, feature_names, max_reasons, min_contribution)
    return names.to_list()


def _lookup(feature: str, reason_catalog: dict[str, dict]) -> dict[str, Any]:
    entry = reason_catalog.get(feature)
    if entry is not None:
        return {"feature": feature, "code": str(entry["code"]), "text": str(entry["text"])}
    if feature.endswith(MISSING_SUFFIX):
        base = feature[: -len(MISSING_SUFFIX)]
        entry = reason_catalog.get(base)
        if entry is not None:
            return {
                "feature": feature,
                "code": str(entry.get("missing_code", entry["code"])),
                "text": str(entry.get("missing", entry["text"])),
            }
    return {"feature": feature, "code": OTHER_CODE, "text": f"Other factor: {feature}"}


def map_reason_codes(
    reasons: list[list[str]], reason_catalog: dict[str, dict]
) -> list[list[dict]]:
    """Turn reason features into catalog entries ``{"feature", "code", "text"}``.

    A catalog entry is ``{"code": ..., "text": ..., "missing": ..., "missing_code": ...}``
    (the last two optional). A feature ``x__missing`` (a missing-value indicator) not listed
    itself maps to the entry of ``x``, with its ``missing`` text (and ``missing_code``) when
    present. A feature absent from the catalog maps to code ``OTHER`` with its name in the
    text, so no reason is ever dropped silently.
    """
    return [[_lookup(feature, reason_catalog) for feature in row] for row in reasons]


def reason_code_columns(reason_features: pl.Series, reason_catalog: dict[str, dict]) -> tuple[pl.Series, pl.Series]:
    """:func:`map_reason_codes` for a whole column: (``reason_codes``, ``reason_texts``), each
    a list column in the order of the features. Each distinct feature is looked up once."""
    distinct = reason_features.explode().drop_nulls().unique().to_list()
    entries = {feature: _lookup(feature, reason_catalog) for feature in distinct}

    def mapped(field: str, name: str) -> pl.Series:
        if not entries:
            return pl.Series(name, [[]] * reason_features.len(), dtype=pl.List(pl.String))
        table = {feature: entry[field] for feature, entry in entries.items()}
        return pl.select(
            reason_features.list.eval(pl.element().replace_strict(table, return_dtype=pl.String))
        ).to_series().alias(name)

    return mapped("code", "reason_codes"), mapped("text", "reason_texts")


def explain_rows(
    booster: lgb.Booster,
    frame: pl.DataFrame,
    spec: FeatureSpec,
    rows_mask: pl.Series | np.ndarray | list[bool],
    max_reasons: int = DEFAULT_MAX_REASONS,
    min_contribution: float = 0.0,
    predictions: np.ndarray | None = None,
) -> pl.DataFrame:
    """Reasons for the masked rows only (contributions cost ~20 plain predictions).

    ``predictions``: the model's predictions for every row of ``frame`` (``predict_pd``),
    when the caller has them, for the contributions' additivity check.

    Returns one row per masked application: ``application_id``, ``reason_features``
    (list[str], largest risk-raising contribution first) and ``reason_contributions``
    (list[float], the matching log-odds contributions). A null in the mask counts as False.
    """
    check_booster_features(booster, spec)
    if ID_COLUMN not in frame.columns:
        raise ValueError(f"the frame has no {ID_COLUMN!r} column")
    if isinstance(rows_mask, pl.Series):
        mask = rows_mask.cast(pl.Boolean)
    else:
        mask = pl.Series("mask", np.asarray(rows_mask, dtype=bool))
    if mask.len() != frame.height:
        raise ValueError(f"rows_mask has {mask.len()} values for {frame.height} rows")
    keep = mask.fill_null(False)
    selected = frame.filter(keep)
    if predictions is not None:
        predictions = np.asarray(predictions, dtype=np.float64)
        if predictions.shape != (frame.height,):
            raise ValueError(f"predictions have shape {predictions.shape} for {frame.height} rows")
        predictions = predictions[keep.to_numpy()]
    contribs = contributions(booster, feature_matrix(selected, spec), predictions)
    names, amounts = _top_positive(contribs, list(spec.features), max_reasons, min_contribution)
    return pl.DataFrame(
        {
            ID_COLUMN: selected.get_column(ID_COLUMN),
            "reason_features": names.alias("reason_features"),
            "reason_contributions": amounts.alias("reason_contributions"),
        }
    )


def prediction_confidence(
    pd: np.ndarray | list[float] | float,
    thresholds: list[float],
    scale: float = DEFAULT_CONFIDENCE_SCALE,
) -> np.ndarray:
    """How far each PD is from the nearest policy threshold, squashed to [0, 1].

    ``confidence = tanh(d / scale)`` where ``d = min_t |logit(pd) - logit(t)|`` is the
    distance in log-odds to the closest decision threshold ``t``. 0 means the PD sits on a
    boundary (a small change in the inputs could flip the decision); it approaches 1 far
    from every boundary. Log-odds, not PD, because that is the space in which the model adds
    up its evidence: 1% vs 2% is as far apart as 33% vs 50% (both a doubling of the odds).
    With the default scale of 1, a PD whose odds differ from the nearest threshold's by a
    factor e (≈2.7) scores 0.76, a factor e² scores 0.96. PDs are clipped to [1e-12, 1 − 1e-12].
    """
    if not len(thresholds):
        raise ValueError("prediction_confidence needs at least one threshold")
    t = np.asarray(thresholds, dtype=np.float64)
    if not ((t > 0) & (t < 1)).all():
        raise ValueError(f"thresholds must lie strictly between 0 and 1, got {list(thresholds)}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    p = np.asarray(pd, dtype=np.float64)
    if np.isnan(p).any():
        raise ValueError("pd holds NaN values")
    distance = np.min(np.abs(logit(p)[..., None] - logit(t)), axis=-1)
    return np.tanh(distance / scale)


__all__ = [
    "contributions",
    "explain_rows",
    "map_reason_codes",
    "ranked_lists",
    "reason_code_columns",
    "prediction_confidence",
    "top_reasons",
]
