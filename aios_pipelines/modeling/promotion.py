"""The promotion gate: does a newly trained version take the ``champion`` alias?

``decide_promotion`` is a pure function of numbers; ``apply_gate`` writes its decision into
the registry. The champion's metrics must come from the SAME out-of-time window as the
candidate's: the caller re-scores the champion on the candidate's OOT window, because
metrics logged when the champion was trained describe another period and are not
comparable.

Nothing here imports Dagster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aios_pipelines.modeling.registry import (
    CHALLENGER_ALIAS,
    TAG_GATE_DECISION,
    TAG_GATE_REASON,
    ModelRegistry,
    ModelVersionInfo,
)

AUC_KEY = "auc"
BRIER_KEY = "brier"
DECISION_PROMOTED = "promoted"
DECISION_REFUSED = "refused"


@dataclass(frozen=True)
class PromotionGateConfig:
    """Thresholds of the gate (AUC and Brier score on the out-of-time window)."""

    max_auc_drop: float = 0.01
    min_auc: float = 0.65
    max_brier_increase: float = 0.01


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    candidate_metrics: dict
    champion_metrics: dict | None

    @property
    def label(self) -> str:
        return DECISION_PROMOTED if self.promote else DECISION_REFUSED


def decide_promotion(
    candidate_metrics: Mapping[str, Any],
    champion_metrics_same_window: Mapping[str, Any] | None,
    checks_passed: bool,
    config: PromotionGateConfig = PromotionGateConfig(),
) -> GateDecision:
    """Promote or refuse a candidate; the reason names the numbers compared.

    Refused when the model checks failed, when the candidate's AUC is missing or below
    ``min_auc``, or, when a champion exists, when the candidate's AUC is more than
    ``max_auc_drop`` below the champion's or its Brier score more than
    ``max_brier_increase`` above the champion's (both measured on the candidate's
    out-of-time window). Every failed condition is named, not only the first.
    """
    candidate = dict(candidate_metrics)
    champion = None if champion_metrics_same_window is None else dict(champion_metrics_same_window)

    def decision(promote: bool, reason: str) -> GateDecision:
        return GateDecision(promote, reason, candidate, champion)

    if not checks_passed:
        return decision(False, "refused: the candidate's model checks failed")

    cand_auc = _number(candidate, AUC_KEY)
    if cand_auc is None:
        return decision(False, "refused: the candidate has no finite 'auc' metric")
    if cand_auc < config.min_auc:
        return decision(
            False, f"refused: candidate AUC {cand_auc:.4f} is below the minimum {config.min_auc:.4f}"
        )
    if champion is None:
        return decision(
            True,
            f"promoted: no champion yet; candidate AUC {cand_auc:.4f} >= minimum {config.min_auc:.4f}",
        )

    champ_auc = _number(champion, AUC_KEY)
    if champ_auc is None:
        return decision(
            False,
            "refused: the champion has no finite 'auc' on the candidate's out-of-time window, "
            "so the two cannot be compared",
        )
    cand_brier = _number(candidate, BRIER_KEY)
    champ_brier = _number(champion, BRIER_KEY)
    if cand_brier is None or champ_brier is None:
        missing = "candidate" if cand_brier is None else "champion"
        return decision(False, f"refused: the {missing} has no finite 'brier' metric to compare")

    auc_floor = champ_auc - config.max_auc_drop
    brier_ceiling = champ_brier + config.max_brier_increase
    failures = []
    if cand_auc < auc_floor:
        failures.append(
            f"candidate AUC {cand_auc:.4f} < champion AUC {champ_auc:.4f} - "
            f"max drop {config.max_auc_drop:.4f} = {auc_floor:.4f}"
        )
    if cand_brier > brier_ceiling:
        failures.append(
            f"candidate Brier {cand_brier:.4f} > champion Brier {champ_brier:.4f} + "
            f"max increase {config.max_brier_increase:.4f} = {brier_ceiling:.4f}"
        )
    if failures:
        return decision(False, "refused: " + "; ".join(failures) + " (same out-of-time window)")
    return decision(
        True,
        f"promoted: candidate AUC {cand_auc:.4f} vs champion {champ_auc:.4f} "
        f"(allowed drop {config.max_auc_drop:.4f}), Brier {cand_brier:.4f} vs champion "
        f"{champ_brier:.4f} (allowed increase {config.max_brier_increase:.4f}) on the same "
        "out-of-time window",
    )


def apply_gate(
    registry: ModelRegistry,
    candidate: ModelVersionInfo,
    decision: GateDecision,
    actor: str = "promotion_gate",
) -> ModelVersionInfo:
    """Write a gate decision into the registry.

    Promote: the candidate becomes the champion (the previous one stays on the rollback
    stack). Refuse: the candidate takes the ``challenger`` alias and the champion is left
    alone. Either way the version is tagged with ``gate_decision`` and ``gate_reason``.
    """
    registry.tag_version(
        candidate.version,
        {TAG_GATE_DECISION: decision.label, TAG_GATE_REASON: decision.reason},
    )
    if decision.promote:
        return registry.promote(candidate.version, actor=actor, reason=decision.reason)
    return registry.set_alias(CHALLENGER_ALIAS, candidate.version, actor=actor, reason=decision.reason)


def _number(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
