"""Scoring a day of applications: PD, band, reasons, confidence, data-quality flags, action.

The model plane and the policy meet here. With a champion model the PD comes from LightGBM
and the reasons from its own per-prediction contributions; without one (missing or corrupt
artifact, a failure while predicting) the policy's rule-based scorecard answers, every row
says so in ``decision_source``, and its reasons are the scorecard factors that cost the most
points. Reasons are computed only where the policy needs them (declines and referrals):
exact TreeSHAP, even tabulated per tree (``tree_shap``), costs several plain predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from aios_pipelines.features.build import APPLICATION_DATE, APPLICATION_ID, MISSING_SUFFIX
from aios_pipelines.modeling.explanations import explain_rows, prediction_confidence, ranked_lists, reason_code_columns
from aios_pipelines.modeling.training import FeatureSpec, predict_pd
from aios_pipelines.policy.evaluate import condition_expr, evaluate_frame
from aios_pipelines.policy.policy import NULL_OP, DecisionPolicy, iter_compares

MODEL_SOURCE = "model"
FALLBACK_SOURCE = "fallback_rules"


@dataclass(frozen=True)
class ScoringModel:
    """The champion as scoring needs it."""

    booster: lgb.Booster
    feature_spec: FeatureSpec
    version: str
    feature_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass
class ScoringOutcome:
    scored: pl.DataFrame
    decision_source: str
    model_version: str | None
    fallback_reason: str | None


def _quality_flag_rules(
    features: pl.DataFrame, feature_ranges: dict[str, tuple[float, float]]
) -> list[tuple[pl.Expr, pl.Expr]]:
    """(condition, message) per flag a reviewer should see: a missing input the model filled
    with its learned default, a value outside the training range."""
    rules: list[tuple[pl.Expr, pl.Expr]] = []
    for column in features.columns:
        if column.endswith(MISSING_SUFFIX):
            source = column[: -len(MISSING_SUFFIX)]
            rules.append((pl.col(column) == 1, pl.lit(f"{source}: missing, the model used its learned default for it")))
    for feature, (low, high) in sorted(feature_ranges.items()):
        if feature not in features.columns or feature.endswith(MISSING_SUFFIX):
            continue
        value = pl.col(feature)
        rules.append((
            value.is_not_null() & ((value < low) | (value > high)),
            pl.format(f"{feature}: {{}} is outside the training range [{low:.4g}, {high:.4g}]", value.round(4)),
        ))
    return rules


def quality_flags(features: pl.DataFrame, feature_ranges: dict[str, tuple[float, float]]) -> pl.Series:
    """Per row, the inputs a reviewer should not take at face value (a list, often empty),
    in rule order.

    Each message is formatted only on the rows its rule holds for: a polars ``when/then``
    evaluates its ``then`` on every row, and formatting every feature of a million rows
    cost seconds where one row in seven has a flag."""
    empty = pl.Series("quality_flags", [[]], dtype=pl.List(pl.String))
    rules = _quality_flag_rules(features, feature_ranges)
    held = features.select([condition.fill_null(False).alias(str(i)) for i, (condition, _) in enumerate(rules)])
    found: list[pl.DataFrame] = []
    for i, (_, message) in enumerate(rules):
        rows = np.flatnonzero(held.get_column(str(i)).to_numpy())
        if rows.size:
            # with_columns, not select: a literal message is repeated on every row
            text = features[rows].with_columns(message.cast(pl.String).alias("__flag")).get_column("__flag")
            found.append(pl.DataFrame({"row": rows, "rule": np.full(rows.size, i), "flag": text}))
    if not found:
        return empty.gather(np.zeros(features.height, dtype=np.int64))
    flagged = (
        pl.concat(found).sort("row", "rule").group_by("row", maintain_order=True).agg(pl.col("flag").alias("quality_flags"))
    )
    # every unflagged row points at the one empty list appended after the flagged rows' lists
    position = np.full(features.height, flagged.height, dtype=np.int64)
    position[flagged["row"].to_numpy()] = np.arange(flagged.height, dtype=np.int64)
    return pl.concat([flagged.get_column("quality_flags"), empty]).gather(position)


def _fallback_reason_columns(policy: DecisionPolicy, frame: pl.DataFrame, max_reasons: int) -> pl.Series:
    """For the scorecard: the factors that fell furthest short of their best points."""
    shortfalls: list[pl.Expr] = []
    names: list[str] = []
    for factor in policy.fallback.factors:
        best = max([b.points for b in factor.bins] + [factor.default_points])
        earned = pl.lit(float(factor.default_points))
        for scorecard_bin in reversed(factor.bins):  # first matching bin wins
            earned = pl.when(condition_expr(scorecard_bin.when, frame.schema)).then(float(scorecard_bin.points)).otherwise(earned)
        shortfalls.append((pl.lit(float(best)) - earned).alias(factor.id))
        names.append(_factor_column(factor))
    table = frame.select(shortfalls).to_numpy().astype(np.float64)
    reasons, _ = ranked_lists(table, names, max_reasons, 0.0)
    return reasons.alias("reason_features")


def _with_hard_rule_reasons(
    policy: DecisionPolicy,
    policy_view: pl.DataFrame,
    hard_rules: pl.Series,
    reason_features: pl.Series,
    rows: pl.Series,
    max_reasons: int,
) -> pl.Series:
    """``reason_features`` with the masked rows' reasons set to the columns of their hard
    rule's comparisons that hold on the row (a null test names the column's missing
    indicator, ``<column>__missing``), at most ``max_reasons``."""
    empty = pl.lit([], dtype=pl.List(pl.String))
    rule_ids = hard_rules.alias("__hard_rule")
    replacement: pl.Expr = pl.col("__reasons")
    for rule in reversed(policy.hard_rules):
        named: list[pl.Expr] = []
        for compare in iter_compares(rule.when):
            names = [f"{column}{MISSING_SUFFIX}" if compare.op == NULL_OP and compare.value else column
                     for column in compare.columns]
            held = condition_expr(compare, policy_view.schema).fill_null(False)
            named.append(pl.when(held).then(pl.lit(names, dtype=pl.List(pl.String))).otherwise(empty))
        if not named:
            continue
        own = pl.concat_list(named).list.unique(maintain_order=True).list.head(max_reasons)
        replacement = pl.when(pl.col("__hard_rule") == rule.id).then(own).otherwise(replacement)
    return (
        policy_view.with_columns(rule_ids, reason_features.alias("__reasons"), rows.fill_null(False).alias("__unexplained"))
        .select(pl.when(pl.col("__unexplained")).then(replacement).otherwise(pl.col("__reasons")).alias(reason_features.name))
        .to_series()
    )


def _factor_column(factor) -> str:
    """The contract column a scorecard factor reads (its reason-catalogue key)."""
    def columns(condition) -> list[str]:
        if hasattr(condition, "conditions"):
            return [c for sub in condition.conditions for c in columns(sub)]
        if getattr(condition, "column", None):
            return [condition.column]
        return list(getattr(condition, "ratio", None) or [])

    found = [c for b in factor.bins for c in columns(b.when)]
    return found[0] if found else factor.id


def score_applications(
    features: pl.DataFrame,
    applications: pl.DataFrame,
    policy: DecisionPolicy,
    reason_catalog: dict[str, dict[str, Any]],
    model: ScoringModel | None,
    *,
    automation_paused: bool = False,
    fallback_reason: str | None = None,
) -> ScoringOutcome:
    """Score ``features`` (one row per application) and route each through ``policy``.

    ``applications`` holds the same applications with the contract's raw columns (the policy
    names them), keyed by ``application_id``. ``model=None`` means the champion could not be
    loaded; ``fallback_reason`` says why.
    """
    # Policy conditions name contract columns; where a feature has the same name it is the
    # same value as a float (or a category code): give the policy the raw value.
    policy_view = features.select(APPLICATION_ID).join(applications, on=APPLICATION_ID, how="left")

    source = MODEL_SOURCE
    pd_values: np.ndarray | None = None
    if model is not None:
        try:
            pd_values = predict_pd(model.booster, features, model.feature_spec)
            if not np.isfinite(pd_values).all():
                raise ValueError("the model returned non-finite probabilities")
        except Exception as exc:  # a broken champion must not block the queue
            fallback_reason = f"champion {model.version} failed while predicting: {exc}"
            pd_values = None
    if pd_values is None:
        source = FALLBACK_SOURCE
        from aios_pipelines.policy.evaluate import fallback_pd

        pd_values = fallback_pd(policy, policy_view).to_numpy()
        model = None

    routed = evaluate_frame(
        policy,
        policy_view.with_columns(
            pl.Series("pd", pd_values, dtype=pl.Float64),
            # the policy's own vocabulary for the source: "model" or "fallback"
            pl.lit("fallback" if source == FALLBACK_SOURCE else "model").alias("decision_source"),
        ),
        pd_column="pd",
        automation_paused=automation_paused,
        decision_source_column="decision_source",
    )
    needs_reasons = routed["reasons_required"].fill_null(False)
    max_reasons = policy.reasons.max_reasons

    if model is not None:
        explained = explain_rows(model.booster, features, model.feature_spec, needs_reasons, max_reasons=max_reasons,
                                 predictions=pd_values)
        reason_features = (
            features.select(APPLICATION_ID)
            .join(explained.select(APPLICATION_ID, "reason_features"), on=APPLICATION_ID, how="left")
            .get_column("reason_features")
        )
    else:
        all_reasons = _fallback_reason_columns(policy, policy_view, max_reasons)
        reason_features = pl.select(
            pl.when(needs_reasons).then(all_reasons).otherwise(pl.lit(None, dtype=pl.List(pl.String)))
        ).to_series()
    reason_features = reason_features.fill_null(pl.lit([], dtype=pl.List(pl.String)))
    # A hard-rule decline must say why even when the model (or the scorecard) found nothing
    # in the row that raised the risk: the rule's own conditions that held are its reasons.
    unexplained = (
        (routed["action"] == "auto_decline")
        & routed["policy_hard_rule"].is_not_null()
        & (reason_features.list.len() == 0)
    ).fill_null(False)
    if unexplained.any():
        reason_features = _with_hard_rule_reasons(policy, policy_view, routed["policy_hard_rule"], reason_features,
                                                  unexplained, max_reasons)
    reason_codes, reason_texts = reason_code_columns(reason_features, reason_catalog)

    thresholds = [policy.auto_approve.max_pd, policy.auto_decline.min_pd]
    confidence = prediction_confidence(np.clip(pd_values, 1e-9, 1 - 1e-9), thresholds)
    ranges = model.feature_ranges if model is not None else {}

    scored = pl.DataFrame(
        {
            APPLICATION_ID: features[APPLICATION_ID],
            APPLICATION_DATE: features[APPLICATION_DATE],
        }
    ).with_columns(
        pl.Series("pd", pd_values, dtype=pl.Float64),
        routed["score_band"],
        pl.lit(model.version if model else None, dtype=pl.String).alias("model_version"),
        pl.lit(source).alias("decision_source"),
        pl.Series("confidence", confidence, dtype=pl.Float64),
        reason_features.cast(pl.List(pl.String)).alias("reason_features"),
        reason_codes,
        reason_texts,
        quality_flags(features, ranges),
        routed["action"],
        routed["policy_rule"],
        routed["policy_hard_rule"],
        routed["requires_four_eyes"],
        routed["review_priority"],
        routed["review_due_hours"],
        routed["policy_version"],
        pl.lit(policy.fingerprint).alias("policy_fingerprint"),
        pl.lit(automation_paused).alias("automation_paused"),
        pl.lit(fallback_reason if source == FALLBACK_SOURCE else None, dtype=pl.String).alias("fallback_reason"),
    )
    return ScoringOutcome(
        scored=scored,
        decision_source=source,
        model_version=model.version if model else None,
        fallback_reason=fallback_reason if source == FALLBACK_SOURCE else None,
    )
