"""The drift scenario of ``aios demo --drift-from DAY``: monitoring sees the drift, a
retraining trigger fires, time passes until the drifted applications' outcomes have
matured, and a challenger trained on them meets the promotion gate.

Why time has to pass: a loan's outcome is known only when its performance window (60 days
in the shipped contract) has closed, and the training set takes matured outcomes only. On
the day drift is detected, none of the drifted applications has an outcome yet, so a model
retrained that day would learn from exactly the rows the champion learnt from. A lender's
platform does not fake those labels; it keeps taking applications while the outcomes
arrive. The demo does the same with its simulated clock: the synthetic lender writes the
next days' applications and the outcomes that mature on them (``write_landing`` with a
later ``as_of``; nothing is labelled before its window closes), the platform ingests,
scores and monitors them, and the retraining runs once the training set would hold enough
drifted days for the trees to grow on (``MIN_DRIFTED_FIT_DAYS`` of them before the
early-stopping and out-of-time windows). The clock never passes today: applications from
the future would have no partition either.

The retraining run carries the trigger's name and evidence as tags, exactly as the
``retraining_trigger_sensor`` launches it, and the ``credit_risk_model`` asset records them
on the model version with its training window, so ``retraining_story`` tells the story from
the registry alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

MIN_DRIFTED_FIT_DAYS = 7
MONITOR_DAYS_BEFORE_DRIFT = 14


def demo_landing_writer(
    landing_dir: Path,
    *,
    start: date,
    seed: int,
    per_day: int,
    drift,
    performance_window_days: int,
) -> Callable[[date], object] | None:
    """``write(day)``: the demo lender writes its landing files from ``start`` up to ``day``
    (applications, and the outcomes matured by ``day``); unchanged files stay untouched.
    None when the newest application file under ``landing_dir`` is not what this lender
    writes (somebody else's data: the clock must not rewrite it)."""
    import tempfile

    from aios_pipelines.synthetic.generator import APPLICATIONS_FOLDER, write_landing

    def write(until: date, out: Path = Path(landing_dir)):
        return write_landing(out, start=start, days=(until - start).days + 1, per_day=per_day, seed=seed,
                             performance_window_days=performance_window_days, drift=drift)

    folders = sorted(p for p in (Path(landing_dir) / APPLICATIONS_FOLDER).glob("*") if p.is_dir())
    if not folders:
        return None
    try:
        newest = date.fromisoformat(folders[-1].name)
    except ValueError:
        return None
    if newest < start:
        return None
    with tempfile.TemporaryDirectory(prefix="aios-landing-probe-") as tmp:
        probe = write(newest, Path(tmp)).application_files[-1]
        ours = folders[-1] / probe.name
        if not ours.is_file() or ours.read_bytes() != probe.read_bytes():
            return None
    return write


def retraining_clock(
    first_day: date,
    today: date,
    drift_from: date,
    performance_window_days: int,
    latest: date,
    config=None,
    min_drifted_fit_days: int = MIN_DRIFTED_FIT_DAYS,
) -> date:
    """The first day, from ``today`` to ``latest``, on which a model retrained on the matured
    applications since ``first_day`` grows its trees on at least ``min_drifted_fit_days``
    days from ``drift_from`` on; ``latest`` when no day up to it does (and ``today`` when
    ``latest`` is earlier)."""
    from aios_pipelines.modeling.training import TrainingConfig, training_windows

    config = config or TrainingConfig()
    clock = today
    while clock < latest:
        last_matured = clock - timedelta(days=performance_window_days)
        days = [first_day + timedelta(days=i) for i in range((last_matured - first_day).days + 1)]
        if len(days) >= config.oot_days + 3:
            fit_end = training_windows(days, config).fit[1]
            if (fit_end - drift_from).days + 1 >= min_drifted_fit_days:
                return clock
        clock += timedelta(days=1)
    return max(today, min(clock, latest))


def _print_triggers(triggers, progress: Callable[[str], None]) -> None:
    for trigger in triggers:
        progress(f"  trigger {trigger.name} fired: {trigger.evidence.get('rule', '')}")
        days = sorted(trigger.evidence.get("days", {}))
        if days:
            progress(f"    red days: {days[0]} .. {days[-1]}")
        features = trigger.evidence.get("features") or {}
        if features:
            progress("    drifted features: " + describe_features(features))
        rest = {k: v for k, v in trigger.evidence.items() if k not in ("rule", "days", "features", "window")}
        if rest and not days:
            progress(f"    evidence: {json.dumps(rest, default=str)[:300]}")


def describe_features(features: dict) -> str:
    """'annual_income (drifted on 7 days, PSI 0.42), ...': most drifted days first, then the largest PSI."""
    parts = []
    ranked = sorted(features.items(), key=lambda kv: (-(kv[1].get("drifted_days") or 0),
                                                      -(kv[1].get("psi") if kv[1].get("psi") is not None else -1.0)))
    for name, facts in ranked:
        psi = facts.get("psi")
        parts.append(f"{name} (drifted on {facts.get('drifted_days')} days, "
                     + (f"PSI {psi:.2f})" if psi is not None else f"distance {facts.get('score', 0):.2f})"))
    return ", ".join(parts)


def _evaluate(paths):
    from aios_pipelines.monitoring.snapshot import champion_facts, load_snapshot
    from aios_pipelines.monitoring.triggers import evaluate_triggers, load_trigger_config
    from aios_pipelines.storage.warehouse import configured_warehouse

    from aios_pipelines.modeling.registry import ModelRegistry, configured_registry_config

    registry = ModelRegistry(configured_registry_config(paths))
    snapshot = load_snapshot(configured_warehouse(paths), champion_facts(registry))
    return registry, evaluate_triggers(snapshot, load_trigger_config())


def first_red_day(paths) -> date | None:
    """The first monitored day whose drift check is red (ERROR), against any champion."""
    from aios_pipelines.monitoring.snapshot import drift_by_day, drift_status
    from aios_pipelines.storage.warehouse import configured_warehouse

    days = drift_status(drift_by_day(configured_warehouse(paths)))
    red = days.filter(days["status"] == "error")["day"]
    return red.min() if red.len() else None


def _newest_outcome_day(paths) -> date | None:
    from aios_pipelines.storage.warehouse import configured_warehouse

    warehouse = configured_warehouse(paths)
    if not warehouse.table_exists("raw_loan_outcomes"):
        return None
    return warehouse.scalar("select max(outcome_date)::date from raw_loan_outcomes")


def run_drift_scenario(
    paths,
    span: tuple[date, date],
    drift_from: date,
    performance_window_days: int,
    advance_landing: Callable[[date], object] | None,
    progress: Callable[[str], None] = print,
    *,
    monitor_days_before: int = MONITOR_DAYS_BEFORE_DRIFT,
    min_drifted_fit_days: int = MIN_DRIFTED_FIT_DAYS,
    oot_days: int | None = None,
) -> None:
    """Monitor the days around the drift, evaluate the retraining triggers, let the clock run
    until the drifted outcomes have matured and retrain (what ``retraining_trigger_sensor``
    and ``daily_monitoring`` do under the Dagster daemon).

    ``advance_landing(day)`` makes the synthetic lender write its landing files up to
    ``day`` (applications, and the outcomes matured by then); None when the landing files
    are not the demo's own, and the clock cannot move. ``oot_days`` sets the retraining's
    out-of-time window (default: the credit_risk_model asset's)."""
    from aios_pipelines.defs.partitions import daily_partitions
    from aios_pipelines.defs.runner import run_job
    from aios_pipelines.modeling.training import TrainingConfig
    from aios_pipelines.monitoring.triggers import run_tags

    training = TrainingConfig() if oot_days is None else TrainingConfig(oot_days=oot_days)
    retrain_config = None if oot_days is None else {"ops": {"credit_risk_model": {"config": {"oot_days": oot_days}}}}
    today = span[1]
    first = max(span[0], min(drift_from, today) - timedelta(days=monitor_days_before))
    progress(f"[monitoring] drift (Evidently), stability and performance of {first} .. {today} against the champion, "
             "and the risk report")
    run_job("monitor_applications", first_day=first, last_day=today, progress=progress)
    progress(f"[retraining triggers] evaluating the configured triggers on the monitoring tables (clock: {today})")
    registry, triggers = _evaluate(paths)
    if not triggers:
        progress("  no trigger fires: the champion stays")
        return
    _print_triggers(triggers, progress)

    matured_through = (_newest_outcome_day(paths) or today) - timedelta(days=performance_window_days)
    latest = date.fromisoformat(daily_partitions.get_last_partition_key())
    target = retraining_clock(span[0], today, drift_from, performance_window_days, latest, training,
                              min_drifted_fit_days)
    if target > today:
        progress(
            f"  outcomes are known up to application day {matured_through}; the drifted applications' outcomes "
            f"mature from {drift_from + timedelta(days=performance_window_days)} ({performance_window_days}-day "
            "performance window). Retrained now, a model would learn from exactly the champion's rows, so the "
            "retraining waits for them."
        )
        if advance_landing is None:
            progress("  the landing files were not written by this demo, so its clock cannot move on: no retraining")
            return
        new_first = today + timedelta(days=1)
        progress(
            f"[time passes] the simulated clock moves from {today} to {target}: the lender keeps taking "
            f"applications ({new_first} .. {target}) and the outcomes of application days "
            f"{matured_through + timedelta(days=1)} .. {target - timedelta(days=performance_window_days)} mature"
            + (f" (the clock stops at today, {latest})" if target == latest else "")
        )
        advance_landing(target)
        run_job("ingest_applications", first_day=new_first, last_day=target, progress=progress)
        run_job("ingest_loan_outcomes", first_day=new_first, last_day=target, progress=progress)
        run_job("score_applications", first_day=new_first, last_day=target, progress=progress)
        run_job("monitor_applications", first_day=new_first, last_day=target, progress=progress)
        progress(f"[retraining triggers] evaluating them again (clock: {target})")
        registry, triggers = _evaluate(paths)
        if not triggers:
            progress("  no trigger fires any more: the champion stays")
            return
        _print_triggers(triggers, progress)
    champion = registry.champion()
    progress(f"  launching retrain_credit_model for {', '.join(t.name for t in triggers)} "
             "(tags aios/trigger and aios/trigger_evidence, as the retraining_trigger_sensor does)")
    run_job("retrain_credit_model", tags=run_tags(triggers), run_config=retrain_config, progress=progress)
    story = retraining_story(registry, first_drift_day=first_red_day(paths))
    if story:
        for line in story.lines(champion_before=champion.version if champion else None):
            progress(line)


@dataclass(frozen=True)
class RetrainingStory:
    """The newest retraining launched by a trigger, as the registry recorded it."""

    version: int
    trigger: str
    evidence: dict
    training_window: tuple[str, str]
    early_stopping_start: str
    oot_window: tuple[str, str]
    data_hash: str
    previous_version: int | None
    previous_data_hash: str | None
    gate_decision: str
    gate_reason: str
    champion_now: int | None
    first_drift_day: date | None = None

    def drifted_training_days(self) -> int:
        if self.first_drift_day is None:
            return 0
        last = date.fromisoformat(self.training_window[1])
        return max(0, (last - self.first_drift_day).days + 1)

    def lines(self, champion_before: int | None = None) -> list[str]:
        out = []
        for name in self.trigger.split(","):
            facts = self.evidence.get(name, {})
            days = sorted(facts.get("days", {}))
            text = f"  retraining trigger: {name} fired: {facts.get('rule', '')}"
            if days:
                text += f"; red days {days[0]} .. {days[-1]}"
            out.append(text)
            if facts.get("features"):
                out.append("    drifted features: " + describe_features(facts["features"]))
        previous = self.previous_version
        trained_on = f"application days {self.training_window[0]} .. {self.training_window[1]}"
        if self.first_drift_day is not None:
            drifted = self.drifted_training_days()
            trained_on += (f", {drifted} of them drifted (from {self.first_drift_day})" if drifted else
                           f", none drifted (drift from {self.first_drift_day})")
        out.append(
            f"  challenger v{self.version} trained on {trained_on}: trees grown up to "
            f"{date.fromisoformat(self.early_stopping_start) - timedelta(days=1)}, early stopping from "
            f"{self.early_stopping_start}, out of time {self.oot_window[0]} .. {self.oot_window[1]}; "
            f"data hash {self.data_hash[:12]}"
            + (f" (champion v{previous}: {(self.previous_data_hash or '?')[:12]})" if previous else "")
        )
        reason = self.gate_reason.removeprefix(f"{self.gate_decision}: ")
        out.append(f"  promotion gate: {self.gate_decision}: {reason}")
        before = champion_before if champion_before is not None else previous
        out.append(f"  champion: v{before if before is not None else '-'} -> "
                   f"v{self.champion_now if self.champion_now is not None else '-'}")
        return out


def retraining_story(registry, first_drift_day: date | None = None) -> RetrainingStory | None:
    """The newest model version trained because a retraining trigger fired, or None."""
    from aios_pipelines.modeling.registry import (
        TAG_DATA_SNAPSHOT_HASH,
        TAG_EARLY_STOPPING_START,
        TAG_GATE_DECISION,
        TAG_GATE_REASON,
        TAG_OOT_WINDOW,
        TAG_TRAINING_WINDOW,
        TAG_TRIGGER,
        TAG_TRIGGER_EVIDENCE,
    )

    versions = registry.list_versions()
    triggered = [v for v in versions if v.tags.get(TAG_TRIGGER) and v.tags.get(TAG_TRIGGER_EVIDENCE)]
    if not triggered:
        return None
    newest = triggered[0]
    try:
        evidence = json.loads(newest.tags[TAG_TRIGGER_EVIDENCE])
    except ValueError:
        evidence = {}
    previous_version = next(
        (facts.get("champion_version") for facts in evidence.values() if isinstance(facts, dict)
         and facts.get("champion_version") is not None), None)
    previous_hash = None
    if previous_version is not None:
        previous_hash = registry.get_version(int(previous_version)).tags.get(TAG_DATA_SNAPSHOT_HASH)
    champion = registry.champion()
    window = newest.tags.get(TAG_TRAINING_WINDOW, "?/?").split("/")
    oot = newest.tags.get(TAG_OOT_WINDOW, "?/?").split("/")
    return RetrainingStory(
        version=newest.version,
        trigger=newest.tags[TAG_TRIGGER],
        evidence=evidence if isinstance(evidence, dict) else {},
        training_window=(window[0], window[-1]),
        early_stopping_start=newest.tags.get(TAG_EARLY_STOPPING_START, window[0]),
        oot_window=(oot[0], oot[-1]),
        data_hash=newest.tags.get(TAG_DATA_SNAPSHOT_HASH, ""),
        previous_version=None if previous_version is None else int(previous_version),
        previous_data_hash=previous_hash,
        gate_decision=newest.tags.get(TAG_GATE_DECISION, "?"),
        gate_reason=newest.tags.get(TAG_GATE_REASON, ""),
        champion_now=champion.version if champion else None,
        first_drift_day=first_drift_day,
    )


__all__ = [
    "MIN_DRIFTED_FIT_DAYS",
    "RetrainingStory",
    "demo_landing_writer",
    "first_red_day",
    "retraining_clock",
    "retraining_story",
    "run_drift_scenario",
]
