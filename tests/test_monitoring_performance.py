"""Performance by vintage: matured outcomes only, phases against the out-of-time window,
decay against the registry's figures."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from aios_pipelines.modeling.metrics import evaluate_predictions
from aios_pipelines.monitoring.performance import (
    PRODUCTION,
    TRAINING,
    VALIDATION,
    ValidationFigures,
    decay_evidence,
    phase_of,
    vintage_bounds,
    vintage_performance,
)

OOT = (date(2026, 4, 6), date(2026, 4, 19))  # Monday .. Sunday two weeks later
FIGURES = ValidationFigures(auc=0.80, ks=0.45, brier=0.08, oot_start=OOT[0], oot_end=OOT[1])


def book(days: list[date], per_day: int, rng, signal: float, version: str = "1") -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scored applications and their outcomes; ``signal`` sets how well the PD ranks them."""
    rows, outcomes = [], []
    for day in days:
        y = (rng.random(per_day) < 0.1).astype(int)
        logit = -2.2 + signal * (y - 0.1) + rng.normal(0, 1, per_day)
        pd_ = 1 / (1 + np.exp(-logit))
        for i in range(per_day):
            application_id = f"{day}-{version}-{i}"
            rows.append({"application_id": application_id, "application_date": day, "pd": float(pd_[i]),
                         "model_version": version})
            outcomes.append({"application_id": application_id, "defaulted": int(y[i])})
    return pl.DataFrame(rows), pl.DataFrame(outcomes)


def test_vintage_bounds_and_phases():
    assert vintage_bounds(date(2026, 4, 8), "week") == (date(2026, 4, 6), date(2026, 4, 12), "2026-W15")
    assert vintage_bounds(date(2026, 4, 8), "day") == (date(2026, 4, 8), date(2026, 4, 8), "2026-04-08")
    with pytest.raises(ValueError):
        vintage_bounds(date(2026, 4, 8), "month")
    assert phase_of(date(2026, 3, 30), date(2026, 4, 5), FIGURES) == TRAINING
    assert phase_of(date(2026, 4, 13), date(2026, 4, 19), FIGURES) == VALIDATION
    assert phase_of(date(2026, 4, 1), date(2026, 4, 7), FIGURES) == VALIDATION  # overlaps the window
    assert phase_of(date(2026, 4, 20), date(2026, 4, 26), FIGURES) == PRODUCTION
    assert phase_of(date(2026, 1, 1), date(2026, 1, 7), None) == PRODUCTION  # no window known: judged


def test_validation_figures_from_the_registry():
    figures = ValidationFigures.from_registry({"auc": 0.8, "ks": 0.4, "brier": float("nan")}, {"oot_window": "2026-04-06/2026-04-19"})
    assert (figures.auc, figures.ks, figures.brier, figures.oot_start, figures.oot_end) == (
        0.8, 0.4, None, date(2026, 4, 6), date(2026, 4, 19)
    )
    assert ValidationFigures.from_registry({}, {"oot_window": "garbage"}).oot_start is None


def test_vintages_measure_matured_rows_and_decay_against_the_out_of_time_auc():
    rng = np.random.default_rng(11)
    trained = [date(2026, 3, 30) + timedelta(days=i) for i in range(7)]  # W14: training
    later = [date(2026, 4, 27) + timedelta(days=i) for i in range(7)]  # W18: production
    scored_a, outcomes_a = book(trained, 80, rng, signal=3.0)
    scored_b, outcomes_b = book(later, 80, rng, signal=0.3)  # the model ranks much worse there
    scored = pl.concat([scored_a, scored_b])
    # half of the later week has not matured yet; one fallback row has no model version
    outcomes = pl.concat([outcomes_a, outcomes_b.head(outcomes_b.height // 2 + 100)])
    scored = pl.concat([scored, pl.DataFrame({"application_id": ["fb"], "application_date": [later[0]], "pd": [0.5],
                                              "model_version": [None]}, schema=scored.schema)])

    table = vintage_performance(scored, outcomes, {"1": FIGURES}, vintage="week", min_rows=100, min_defaults=10,
                                min_matured_share=0.5)
    assert table["vintage"].to_list() == ["2026-W14", "2026-W18"]
    first, second = table.row(0, named=True), table.row(1, named=True)
    assert first["phase"] == TRAINING and second["phase"] == PRODUCTION
    assert first["scored"] == 560 and first["matured"] == 560 and first["matured_share"] == 1.0
    assert second["scored"] == 560 and second["matured"] == 380  # the fallback row is not counted

    matured = scored_b.join(outcomes, on="application_id")
    expected = evaluate_predictions(matured["defaulted"].to_numpy(), matured["pd"].to_numpy())
    assert second["auc"] == pytest.approx(expected.auc)
    assert second["ks"] == pytest.approx(expected.ks)
    assert second["brier"] == pytest.approx(expected.brier)
    assert second["defaults"] == expected.positives
    assert second["calibration_gap"] == pytest.approx(float(matured["pd"].mean()) - expected.default_rate)
    assert second["auc_decay"] == pytest.approx(0.80 - expected.auc)
    assert second["auc_decay"] > 0.05 and second["enough_data"]

    evidence = decay_evidence(table, "1")
    assert evidence["vintage"].to_list() == ["2026-W18"]  # training vintages never count as decay
    assert decay_evidence(table, "2").is_empty()

    strict = vintage_performance(scored, outcomes, {"1": FIGURES}, vintage="week", min_rows=100, min_defaults=10)
    assert not strict.filter(pl.col("vintage") == "2026-W18")["enough_data"][0]  # 68% matured < 80%


def test_no_matured_outcomes_gives_an_empty_table():
    scored = pl.DataFrame({"application_id": ["a"], "application_date": [date(2026, 5, 1)], "pd": [0.1], "model_version": ["1"]})
    outcomes = pl.DataFrame({"application_id": ["zzz"], "defaulted": [1]})
    table = vintage_performance(scored, outcomes, {}, vintage="day")
    assert table.is_empty() and "auc_decay" in table.columns
