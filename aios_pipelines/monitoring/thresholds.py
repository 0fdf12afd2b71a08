"""The monitoring thresholds in one place: the asset checks' WARN / ERROR lines.

The Dagster assets take these as defaults of their ``dg.Config``; the retraining triggers
(``triggers.TriggerConfig``) start from the ERROR lines. Nothing here imports Dagster.
"""

from __future__ import annotations

# Share of monitored features whose distribution drifted on a day. The synthetic lender's
# 30% income cut drifts 5 of 18 features (0.28); same-distribution days drift none.
DRIFT_WARN_SHARE = 0.10
DRIFT_ERROR_SHARE = 0.20

# Population stability index, the usual bands: below 0.1 stable, 0.1 to 0.25 a moderate
# shift worth watching, 0.25 and above a significant shift.
PSI_WARN = 0.10
PSI_ERROR = 0.25

# Out-of-time AUC (from the registry) minus the AUC of a matured production vintage.
AUC_DECAY_WARN = 0.03
AUC_DECAY_ERROR = 0.05

OK = "ok"
WARN = "warn"
ERROR = "error"


def grade(value: float | None, warn: float, error: float) -> str:
    """``error`` at or above ``error``, ``warn`` at or above ``warn``, else ``ok`` (also for None/NaN)."""
    if value is None or value != value:  # NaN
        return OK
    if value >= error:
        return ERROR
    if value >= warn:
        return WARN
    return OK


def worst(grades: list[str]) -> str:
    order = {OK: 0, WARN: 1, ERROR: 2}
    return max(grades, key=lambda g: order[g]) if grades else OK


def psi_band(value: float | None) -> str:
    """stable (< 0.1), moderate (0.1 to 0.25), significant (>= 0.25); "n/a" without a value."""
    if value is None or value != value:
        return "n/a"
    return {OK: "stable", WARN: "moderate", ERROR: "significant"}[grade(value, PSI_WARN, PSI_ERROR)]
