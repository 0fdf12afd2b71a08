"""Retraining triggers: the pure rules, the configuration file, the cursor logic that makes
the same evidence fire once, and the snapshot read from the monitoring and analytics tables.
(The sensor and the schedules: test_retraining_sensor.py.)"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import polars as pl
import pytest

from aios_pipelines.monitoring.drift import FEATURE_DRIFT_SCHEMA
from aios_pipelines.monitoring.performance import PERFORMANCE_SCHEMA
from aios_pipelines.monitoring.snapshot import (
    AnalyticsTableError,
    ChampionFacts,
    load_snapshot,
    override_rate_by_day,
    review_hours_by_day,
)
from aios_pipelines.monitoring.stability import STABILITY_SCHEMA
from aios_pipelines.monitoring.triggers import (
    DEFAULT_TRIGGERS_PATH,
    DayValue,
    MonitoringSnapshot,
    TriggerConfig,
    VintageDecay,
    evaluate_triggers,
    load_trigger_config,
    new_triggers,
    run_key,
    run_tags,
)
from aios_pipelines.storage.warehouse import Warehouse

NOW = datetime(2026, 9, 30, 6, 0, tzinfo=timezone.utc)
DAY = date(2026, 9, 29)
CONFIG = TriggerConfig()


def days(values: list[float], rows: int | None = 400) -> tuple[DayValue, ...]:
    first = DAY - timedelta(days=len(values) - 1)
    return tuple(DayValue(first + timedelta(days=i), v, rows) for i, v in enumerate(values))


def snapshot(**kw) -> MonitoringSnapshot:
    base = dict(as_of=NOW, champion_version=3, champion_created_at=NOW - timedelta(days=10),
                champion_data_hash="abcdef0123456789")
    return MonitoringSnapshot(**{**base, **kw})


def names(triggers) -> list[str]:
    return [t.name for t in triggers]


def test_a_calm_snapshot_fires_nothing():
    calm = snapshot(drift_shares=days([0.0, 0.06, 0.0, 0.11, 0.0]), pd_psi=days([0.02, 0.05, 0.04]),
                    production_vintages=(VintageDecay("2026-W38", date(2026, 9, 14), 0.79, 0.80, 0.01, 2000, 200),),
                    override_rates=days([0.12, 0.10, 0.14]), review_times=days([5.0, 4.5, 5.2, 4.8, 4.9]))
    assert evaluate_triggers(calm, CONFIG) == []


def test_no_champion_no_triggers():
    assert evaluate_triggers(MonitoringSnapshot(as_of=NOW, champion_version=None), CONFIG) == []


def test_drift_fires_on_enough_red_days_in_the_window_only():
    one_noisy_day = snapshot(drift_shares=days([0.0, 0.0, 0.28, 0.0, 0.0, 0.0, 0.0]))
    assert evaluate_triggers(one_noisy_day, CONFIG) == []

    # red on the three newest days (an eighth, older red day is outside the 7-day window)
    drifted = snapshot(drift_shares=days([0.5, 0.0, 0.0, 0.0, 0.0, 0.22, 0.28, 0.33]))
    [trigger] = evaluate_triggers(drifted, CONFIG)
    assert trigger.name == "drift_share"
    assert trigger.value == pytest.approx(0.22)  # the third-largest share of the window
    assert trigger.threshold == 0.20
    assert trigger.evidence["days"] == {"2026-09-27": 0.22, "2026-09-28": 0.28, "2026-09-29": 0.33}
    assert trigger.evidence["window"] == ["2026-09-23", "2026-09-29"]
    assert trigger.key == "drift_share:data-abcdef012345"


def test_pd_psi_auc_decay_and_model_age():
    fired = evaluate_triggers(
        snapshot(
            pd_psi=days([0.3, 0.27, 0.26]),
            production_vintages=(
                VintageDecay("2026-W37", date(2026, 9, 7), 0.70, 0.80, 0.10, 2000, 200),
                VintageDecay("2026-W38", date(2026, 9, 14), 0.74, 0.80, 0.06, 1900, 190),
            ),
            champion_created_at=NOW - timedelta(days=95),
        ),
        CONFIG,
    )
    assert names(fired) == ["pd_psi", "auc_decay", "model_age"]
    psi, decay, age = fired
    assert psi.value == pytest.approx(0.26) and psi.threshold == 0.25
    assert decay.value == pytest.approx(0.06) and decay.evidence["vintage"] == "2026-W38"  # the newest vintage
    assert decay.key == "auc_decay:data-abcdef012345:2026-W38"
    assert age.value == pytest.approx(95.0) and age.threshold == 90
    assert age.key == "model_age:data-abcdef012345:1"
    # a newest vintage within tolerance does not fire, whatever older ones said
    recovered = snapshot(production_vintages=(VintageDecay("2026-W37", date(2026, 9, 7), 0.70, 0.80, 0.10, 2000, 200),
                                              VintageDecay("2026-W38", date(2026, 9, 14), 0.78, 0.80, 0.02, 2000, 200)))
    assert evaluate_triggers(recovered, CONFIG) == []


def test_override_rate_both_ways_and_falling_review_times():
    high = evaluate_triggers(snapshot(override_rates=days([0.1, 0.35])), CONFIG)
    assert names(high) == ["override_rate_high"] and high[0].evidence["day"] == "2026-09-29"
    low = evaluate_triggers(snapshot(override_rates=days([0.1, 0.01])), CONFIG)
    assert names(low) == ["override_rate_low"] and "rubber-stamping" in low[0].evidence["rule"]
    # a day with too few verdicts is not judged: the newest day with enough volume counts
    thin = snapshot(override_rates=(DayValue(DAY - timedelta(days=1), 0.12, 300), DayValue(DAY, 0.0, 12)))
    assert evaluate_triggers(thin, CONFIG) == []

    falling = evaluate_triggers(snapshot(review_times=days([4.0, 6.0, 5.0, 5.0, 2.4])), CONFIG)
    assert names(falling) == ["review_time_falling"]
    assert falling[0].value == pytest.approx(2.4 / 5.0)
    assert falling[0].evidence["baseline_hours"] == 5.0
    # without enough history there is no baseline
    assert evaluate_triggers(snapshot(review_times=days([5.0, 1.0])), CONFIG) == []
    # the tables are absent: the rules are silent
    assert evaluate_triggers(snapshot(override_rates=None, review_times=None), CONFIG) == []


def test_without_a_data_hash_the_key_names_the_version():
    fired = evaluate_triggers(snapshot(champion_data_hash=None, pd_psi=days([0.3, 0.3, 0.3])), CONFIG)
    assert fired[0].key == "pd_psi:v3"


def test_the_same_evidence_fires_once_and_new_evidence_fires_again():
    first = evaluate_triggers(snapshot(drift_shares=days([0.3, 0.3, 0.3])), CONFIG)
    fresh, cursor = new_triggers(first, None)
    assert fresh == first
    assert set(json.loads(cursor)) == {"drift_share:data-abcdef012345"}
    # next tick, one more red day: same champion data, same trigger: nothing new
    again = evaluate_triggers(snapshot(drift_shares=days([0.3, 0.3, 0.3, 0.4])), CONFIG)
    assert new_triggers(again, cursor)[0] == []
    # a champion trained on other data drifting too is new evidence
    retrained = evaluate_triggers(snapshot(champion_version=4, champion_data_hash="ffff000011112222",
                                           drift_shares=days([0.3, 0.3, 0.3])), CONFIG)
    fresh, cursor = new_triggers(retrained, cursor)
    assert [t.key for t in fresh] == ["drift_share:data-ffff00001111"]
    assert len(json.loads(cursor)) == 2


def test_run_key_and_tags_name_the_triggers_and_their_evidence():
    fired = evaluate_triggers(snapshot(drift_shares=days([0.3, 0.3, 0.3]), pd_psi=days([0.3, 0.3, 0.3])), CONFIG)
    assert run_key(fired) == "retrain:drift_share:data-abcdef012345+pd_psi:data-abcdef012345"
    tags = run_tags(fired)
    assert tags["aios/trigger"] == "drift_share,pd_psi"
    evidence = json.loads(tags["aios/trigger_evidence"])
    assert evidence["drift_share"]["threshold"] == 0.2 and len(evidence["drift_share"]["days"]) == 3
    assert all(isinstance(v, str) for v in tags.values())


def test_the_shipped_configuration_is_the_documented_default(tmp_path, monkeypatch):
    assert load_trigger_config(DEFAULT_TRIGGERS_PATH) == TriggerConfig()
    custom = tmp_path / "triggers.yaml"
    custom.write_text("drift_share: 0.3\ndrift_min_days: 1\n")
    monkeypatch.setenv("AIOS_RETRAINING_TRIGGERS", str(custom))
    config = load_trigger_config()
    assert (config.drift_share, config.drift_min_days, config.pd_psi) == (0.3, 1, 0.25)
    custom.write_text("drift_shares: 0.3\n")
    with pytest.raises(ValueError, match="unknown trigger settings"):
        load_trigger_config()
    with pytest.raises(ValueError, match="min_days"):
        TriggerConfig(drift_min_days=8)
    with pytest.raises(ValueError, match="override_rate_low"):
        TriggerConfig(override_rate_low=0.5, override_rate_high=0.3)


# ---------------------------------------------------------------------- the snapshot from the warehouse


def test_snapshot_reads_the_champions_figures_from_the_warehouse(tmp_path):
    store = Warehouse(tmp_path / "aios.duckdb")
    champion = ChampionFacts(version=3, created_at=NOW - timedelta(days=5), data_snapshot_hash="abcdef0123456789")
    # nothing monitored yet
    empty = load_snapshot(store, champion, now=NOW)
    assert (empty.drift_shares, empty.pd_psi, empty.production_vintages) == ((), (), ())
    assert empty.override_rates is None and empty.review_times is None

    drift_rows = []
    for offset, (version, drifted) in enumerate([("2", 4), ("3", 0), ("3", 2)]):  # day 1 measured against v2
        day = DAY - timedelta(days=2 - offset)
        for i in range(4):
            drift_rows.append({"application_date": day, "feature": f"f{i}", "column_type": "numerical", "method": "m",
                               "score_kind": "distance", "score": 0.3, "threshold": 0.2, "drifted": i < drifted,
                               "current_rows": 400, "reference_rows": 5000, "champion_version": version,
                               "report_path": None})
    store.replace_table("feature_drift", pl.DataFrame(drift_rows, schema=FEATURE_DRIFT_SCHEMA))
    store.replace_table("score_stability", pl.DataFrame(
        [{"application_date": DAY, "variable": "pd", "kind": "score", "psi": 0.3, "band": "significant",
          "current_rows": 400, "reference_rows": 5000, "model_version": "3"},
         {"application_date": DAY, "variable": "annual_income", "kind": "feature", "psi": 0.9, "band": "significant",
          "current_rows": 400, "reference_rows": 5000, "model_version": "3"},
         {"application_date": DAY - timedelta(days=1), "variable": "pd", "kind": "score", "psi": 0.5,
          "band": "significant", "current_rows": 400, "reference_rows": 5000, "model_version": "2"}],
        schema=STABILITY_SCHEMA))
    base = {k: None for k in PERFORMANCE_SCHEMA}
    store.replace_table("model_performance", pl.DataFrame([
        {**base, "vintage": "2026-W38", "vintage_start": date(2026, 9, 14), "vintage_end": date(2026, 9, 20),
         "model_version": "3", "phase": "production", "matured": 2000, "defaults": 200, "auc": 0.7,
         "validation_auc": 0.8, "auc_decay": 0.1, "enough_data": True},
        {**base, "vintage": "2026-W37", "vintage_start": date(2026, 9, 7), "vintage_end": date(2026, 9, 13),
         "model_version": "3", "phase": "training", "matured": 2000, "defaults": 200, "auc": 0.9,
         "validation_auc": 0.8, "auc_decay": -0.1, "enough_data": True},
    ], schema=PERFORMANCE_SCHEMA))
    # the dbt marts' shapes: one row per day x model version x reviewer, per day x queue
    store.replace_table("override_rates", pl.DataFrame({
        "decision_date": [DAY, DAY, DAY], "model_version": ["3", "3", "fallback_rules"],
        "reviewer": ["alice", "bob", "carol"], "verdicts": [30, 30, 100], "overrides": [3, 15, 0],
        "override_rate": [0.1, 0.5, 0.0],
    }))
    store.replace_table("time_to_decision", pl.DataFrame({
        "decision_date": [DAY, DAY], "queue": ["standard", "senior"], "decided_cases": [30, 10],
        "p50_hours": [2.0, 6.0],
    }))

    snap = load_snapshot(store, champion, now=NOW)
    assert [(d.day, d.value) for d in snap.drift_shares] == [(DAY - timedelta(days=1), 0.0), (DAY, 0.5)]
    assert [(d.day, d.value) for d in snap.pd_psi] == [(DAY, 0.3)]
    assert [v.vintage for v in snap.production_vintages] == ["2026-W38"]
    assert [(d.day, d.value, d.rows) for d in snap.override_rates] == [(DAY, 0.3, 60)]  # (3 + 15) / 60, champion only
    assert [(d.day, d.value, d.rows) for d in snap.review_times] == [(DAY, 3.0, 40)]  # (2*30 + 6*10) / 40
    fired = evaluate_triggers(snap, TriggerConfig(drift_min_days=1, pd_psi_min_days=1, override_min_decisions=50))
    assert names(fired) == ["drift_share", "pd_psi", "auc_decay"]  # 0.3 is not above the 0.30 line


def test_analytics_tables_without_known_columns_are_reported():
    with pytest.raises(AnalyticsTableError, match="override_rates needs a day column"):
        override_rate_by_day(pl.DataFrame({"when": [DAY], "rate": [0.1]}))
    with pytest.raises(AnalyticsTableError, match="median hours column"):
        review_hours_by_day(pl.DataFrame({"decision_date": [DAY], "hours": [1.0]}))
    # a rate without counts is averaged per day
    rates = override_rate_by_day(pl.DataFrame({"decision_date": [DAY, DAY], "override_rate": [0.1, 0.3]}))
    assert rates["override_rate"].to_list() == [pytest.approx(0.2)] and rates["verdicts"].to_list() == [None]
