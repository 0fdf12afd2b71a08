"""Retraining triggers: pure rules over a monitoring snapshot.

``evaluate_triggers(snapshot, config)`` returns the triggers that fire, each with the value
it compared, the threshold and the evidence (days, vintages, periods and their numbers).
The ``retraining_trigger_sensor`` launches ``retrain_credit_model`` when one fires; the
demo calls the same function once.

The rules (thresholds in ``retraining_triggers.yaml`` beside this file, or the file named by
``$AIOS_RETRAINING_TRIGGERS``):

* ``drift_share``: the share of drifted features reached ``drift_share`` on at least
  ``drift_min_days`` of the newest ``drift_window_days`` monitored days (one noisy day does
  not retrain). The value is the ``drift_min_days``-th largest share in that window; the
  evidence names the features that drifted on the red days, with their PSI.
* ``pd_psi``: the same over the PSI of the PD distribution.
* ``auc_decay``: the champion's out-of-time AUC minus the AUC of its newest matured
  production vintage reached ``auc_decay``.
* ``model_age``: the champion is ``max_model_age_days`` old or older.
* ``override_rate_high`` / ``override_rate_low``: the newest day's override rate (with at
  least ``override_min_decisions`` verdicts) is above ``override_rate_high`` (reviewers
  keep overruling the model) or at or below ``override_rate_low`` (suspiciously few
  overrides: rubber-stamping);
* ``review_time_falling``: the newest day's median time to decision fell to
  ``review_time_drop`` of the median of the previous ``review_baseline_periods`` days or
  less (reviews too quick to be real).
  The last three need the analytics tables ``override_rates`` / ``time_to_decision``.

Every monitored figure in the snapshot is measured against the current champion, so
retraining to a new champion resets the evidence. A trigger's ``key`` names the rule and
the champion's training data (its data snapshot hash; plus the vintage for AUC decay and
the age period for model age): the same evidence against the same training data fires
once, and a retrain on unchanged data (outcomes not matured yet) cannot loop. A champion
the gate keeps despite persistent drift is retrained by the nightly schedule, not again by
the trigger. Nothing here imports Dagster.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from aios_pipelines.monitoring import thresholds

DEFAULT_TRIGGERS_PATH = Path(__file__).with_name("retraining_triggers.yaml")
TRIGGERS_ENV = "AIOS_RETRAINING_TRIGGERS"


@dataclass(frozen=True)
class TriggerConfig:
    drift_share: float = thresholds.DRIFT_ERROR_SHARE
    drift_min_days: int = 3
    drift_window_days: int = 7
    pd_psi: float = thresholds.PSI_ERROR
    pd_psi_min_days: int = 3
    pd_psi_window_days: int = 7
    auc_decay: float = thresholds.AUC_DECAY_ERROR
    max_model_age_days: int = 90
    override_rate_high: float = 0.30
    override_rate_low: float = 0.02
    override_min_decisions: int = 50
    review_time_drop: float = 0.5
    review_baseline_periods: int = 4

    def __post_init__(self) -> None:
        for name in ("drift_min_days", "drift_window_days", "pd_psi_min_days", "pd_psi_window_days",
                     "max_model_age_days", "review_baseline_periods"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.drift_min_days > self.drift_window_days or self.pd_psi_min_days > self.pd_psi_window_days:
            raise ValueError("min_days cannot exceed window_days")
        if not 0 <= self.override_rate_low < self.override_rate_high <= 1:
            raise ValueError("need 0 <= override_rate_low < override_rate_high <= 1")
        if not 0 < self.review_time_drop < 1:
            raise ValueError(f"review_time_drop must be between 0 and 1, got {self.review_time_drop!r}")

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def load_trigger_config(path: str | Path | None = None) -> TriggerConfig:
    """The thresholds from ``path``, else ``$AIOS_RETRAINING_TRIGGERS``, else the shipped file.
    Keys missing from the file keep their defaults; unknown keys are an error."""
    chosen = Path(path or os.environ.get(TRIGGERS_ENV) or DEFAULT_TRIGGERS_PATH)
    raw = yaml.safe_load(chosen.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{chosen}: expected a mapping of threshold names to values")
    known = {f.name: f.type for f in fields(TriggerConfig)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"{chosen}: unknown trigger settings {unknown}; known: {sorted(known)}")
    values = {k: (int(v) if known[k] == "int" else float(v)) for k, v in raw.items()}
    return TriggerConfig(**values)


@dataclass(frozen=True)
class DayValue:
    day: date
    value: float
    rows: int | None = None


@dataclass(frozen=True)
class FeatureDay:
    """One feature on one monitored day: did it drift (and by how much), and its PSI
    (None for categorical features and missing indicators, which have no PSI)."""

    day: date
    feature: str
    drifted: bool
    score: float
    psi: float | None = None


@dataclass(frozen=True)
class VintageDecay:
    vintage: str
    vintage_start: date
    auc: float
    validation_auc: float
    decay: float
    matured: int
    defaults: int


@dataclass(frozen=True)
class MonitoringSnapshot:
    """What the monitoring tables say about the current champion, oldest first.

    ``override_rates`` / ``review_times`` are None when the analytics tables do not exist.
    """

    as_of: datetime
    champion_version: int | None
    champion_created_at: datetime | None = None
    champion_data_hash: str | None = None
    drift_shares: tuple[DayValue, ...] = ()
    pd_psi: tuple[DayValue, ...] = ()
    production_vintages: tuple[VintageDecay, ...] = ()
    override_rates: tuple[DayValue, ...] | None = None
    review_times: tuple[DayValue, ...] | None = None
    feature_days: tuple[FeatureDay, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def champion_identity(self) -> str:
        if self.champion_data_hash:
            return f"data-{self.champion_data_hash[:12]}"
        return f"v{self.champion_version}"


@dataclass(frozen=True)
class Trigger:
    name: str
    value: float
    threshold: float
    evidence: dict[str, Any]
    key: str = ""

    def describe(self) -> str:
        return f"{self.name}: {self.evidence.get('rule', f'{self.value:.4g} vs {self.threshold:.4g}')}"


def _window_rule(
    name: str, series: tuple[DayValue, ...], threshold: float, min_days: int, window_days: int,
    snapshot: MonitoringSnapshot, what: str,
) -> Trigger | None:
    window = sorted(series, key=lambda d: d.day)[-window_days:]
    if len(window) < min_days:
        return None
    ranked = sorted((d.value for d in window), reverse=True)
    value = ranked[min_days - 1]
    if value < threshold:
        return None
    red = [d for d in window if d.value >= threshold]
    return Trigger(
        name=name,
        value=float(value),
        threshold=float(threshold),
        evidence={
            "rule": f"{what} >= {threshold:g} on {len(red)} of the newest {len(window)} monitored days "
                    f"(needs {min_days})",
            "champion_version": snapshot.champion_version,
            "window": [window[0].day.isoformat(), window[-1].day.isoformat()],
            "days": {d.day.isoformat(): round(d.value, 4) for d in red},
        },
        key=f"{name}:{snapshot.champion_identity}",
    )


EVIDENCE_FEATURES = 6


def drifted_feature_evidence(feature_days: tuple[FeatureDay, ...], days: list[date],
                             limit: int = EVIDENCE_FEATURES) -> dict[str, dict[str, Any]]:
    """The features that drifted on ``days``: feature -> drifted days, mean drift score and
    mean PSI over those days; most drifted days first, then the largest PSI."""
    wanted = set(days)
    by_feature: dict[str, list[FeatureDay]] = {}
    for row in feature_days:
        if row.day in wanted and row.drifted:
            by_feature.setdefault(row.feature, []).append(row)
    summary = []
    for feature, rows in by_feature.items():
        psis = [r.psi for r in rows if r.psi is not None and r.psi == r.psi]
        summary.append((feature, len(rows), sum(r.score for r in rows) / len(rows),
                        sum(psis) / len(psis) if psis else None))
    summary.sort(key=lambda f: (-f[1], -(f[3] if f[3] is not None else -1.0), f[0]))
    return {
        feature: {"drifted_days": n, "score": round(score, 4), "psi": None if psi is None else round(psi, 4)}
        for feature, n, score, psi in summary[:limit]
    }


def _newest_with_volume(series: tuple[DayValue, ...], min_rows: int) -> DayValue | None:
    eligible = [d for d in series if d.rows is None or d.rows >= min_rows]
    return max(eligible, key=lambda d: d.day) if eligible else None


def evaluate_triggers(snapshot: MonitoringSnapshot, config: TriggerConfig) -> list[Trigger]:
    """The triggers that fire on ``snapshot`` (see the module doc); none without a champion."""
    if snapshot.champion_version is None:
        return []
    fired: list[Trigger] = []
    identity = snapshot.champion_identity

    drift = _window_rule("drift_share", snapshot.drift_shares, config.drift_share, config.drift_min_days,
                         config.drift_window_days, snapshot, "share of drifted features")
    if drift:
        red_days = [date.fromisoformat(d) for d in drift.evidence["days"]]
        features = drifted_feature_evidence(snapshot.feature_days, red_days)
        if features:
            drift.evidence["features"] = features
        fired.append(drift)
    psi = _window_rule("pd_psi", snapshot.pd_psi, config.pd_psi, config.pd_psi_min_days,
                       config.pd_psi_window_days, snapshot, "PSI of the PD distribution")
    if psi:
        fired.append(psi)

    if snapshot.production_vintages:
        newest = max(snapshot.production_vintages, key=lambda v: v.vintage_start)
        if newest.decay >= config.auc_decay:
            fired.append(
                Trigger(
                    name="auc_decay",
                    value=float(newest.decay),
                    threshold=float(config.auc_decay),
                    evidence={
                        "rule": f"out-of-time AUC {newest.validation_auc:.4f} - vintage {newest.vintage} AUC "
                                f"{newest.auc:.4f} = {newest.decay:.4f} >= {config.auc_decay:g}",
                        "champion_version": snapshot.champion_version,
                        "vintage": newest.vintage,
                        "matured": newest.matured,
                        "defaults": newest.defaults,
                    },
                    key=f"auc_decay:{identity}:{newest.vintage}",
                )
            )

    if snapshot.champion_created_at is not None:
        age_days = (snapshot.as_of - snapshot.champion_created_at).total_seconds() / 86400.0
        if age_days >= config.max_model_age_days:
            fired.append(
                Trigger(
                    name="model_age",
                    value=float(age_days),
                    threshold=float(config.max_model_age_days),
                    evidence={
                        "rule": f"champion v{snapshot.champion_version} is {age_days:.0f} days old "
                                f">= {config.max_model_age_days}",
                        "champion_version": snapshot.champion_version,
                        "registered_at": snapshot.champion_created_at.isoformat(),
                    },
                    # once per champion and per age period: an old champion the gate keeps
                    # (a refused retrain) is retried one period later, not every tick
                    key=f"model_age:{identity}:{int(age_days // config.max_model_age_days)}",
                )
            )

    if snapshot.override_rates:
        newest = _newest_with_volume(snapshot.override_rates, config.override_min_decisions)
        if newest is not None:
            evidence = {"champion_version": snapshot.champion_version, "day": newest.day.isoformat(),
                        "verdicts": newest.rows, "override_rate": round(newest.value, 4)}
            if newest.value > config.override_rate_high:
                fired.append(Trigger(
                    "override_rate_high", float(newest.value), float(config.override_rate_high),
                    {**evidence, "rule": f"override rate {newest.value:.3f} on {newest.day} > {config.override_rate_high:g}: "
                                         "reviewers keep overruling the model"},
                    key=f"override_rate_high:{identity}",
                ))
            elif newest.value <= config.override_rate_low:
                fired.append(Trigger(
                    "override_rate_low", float(newest.value), float(config.override_rate_low),
                    {**evidence, "rule": f"override rate {newest.value:.3f} on {newest.day} <= {config.override_rate_low:g}: "
                                         "suspiciously few overrides (rubber-stamping?)"},
                    key=f"override_rate_low:{identity}",
                ))

    if snapshot.review_times and len(snapshot.review_times) > config.review_baseline_periods:
        ordered = sorted(snapshot.review_times, key=lambda d: d.day)
        newest = ordered[-1]
        baseline_values = sorted(d.value for d in ordered[-1 - config.review_baseline_periods:-1])
        middle = len(baseline_values) // 2
        baseline = (baseline_values[middle] if len(baseline_values) % 2 else
                    (baseline_values[middle - 1] + baseline_values[middle]) / 2)
        if baseline > 0:
            ratio = newest.value / baseline
            if ratio <= config.review_time_drop:
                fired.append(Trigger(
                    "review_time_falling", float(ratio), float(config.review_time_drop),
                    {"rule": f"median time to decision {newest.value:.2f} h on {newest.day} is {ratio:.0%} of the "
                             f"median {baseline:.2f} h of the previous {config.review_baseline_periods} days "
                             f"(<= {config.review_time_drop:.0%})",
                     "champion_version": snapshot.champion_version, "day": newest.day.isoformat(),
                     "median_hours": round(newest.value, 3), "baseline_hours": round(baseline, 3)},
                    key=f"review_time_falling:{identity}",
                ))
    return fired


# ---------------------------------------------------------------------- launching

MAX_REMEMBERED = 500


def run_key(triggers: list[Trigger]) -> str:
    return "retrain:" + "+".join(sorted(t.key for t in triggers))


def run_tags(triggers: list[Trigger]) -> dict[str, str]:
    """Tags of the retraining run: which triggers, and their evidence (JSON, bounded)."""
    evidence = {t.name: {"value": round(t.value, 6), "threshold": t.threshold, **t.evidence} for t in triggers}
    text = json.dumps(evidence, sort_keys=True, default=str)
    if len(text) > 4000:
        text = json.dumps({t.name: t.evidence.get("rule", "") for t in triggers}, sort_keys=True)[:4000]
    return {
        "aios/trigger": ",".join(sorted(t.name for t in triggers)),
        "aios/trigger_keys": ",".join(sorted(t.key for t in triggers))[:1000],
        "aios/trigger_evidence": text,
    }


def new_triggers(triggers: list[Trigger], cursor: str | None) -> tuple[list[Trigger], str]:
    """The triggers whose key has not fired before, and the updated cursor (JSON: key -> when
    it first fired, the newest ``MAX_REMEMBERED`` keys)."""
    fired: dict[str, str] = json.loads(cursor) if cursor else {}
    fresh = [t for t in triggers if t.key not in fired]
    now = datetime.now(timezone.utc).isoformat()
    for trigger in fresh:
        fired[trigger.key] = now
    if len(fired) > MAX_REMEMBERED:
        fired = dict(sorted(fired.items(), key=lambda kv: kv[1])[-MAX_REMEMBERED:])
    return fresh, json.dumps(fired, sort_keys=True)


__all__ = [
    "DEFAULT_TRIGGERS_PATH",
    "DayValue",
    "FeatureDay",
    "MonitoringSnapshot",
    "Trigger",
    "TriggerConfig",
    "VintageDecay",
    "drifted_feature_evidence",
    "evaluate_triggers",
    "load_trigger_config",
    "new_triggers",
    "run_key",
    "run_tags",
]
