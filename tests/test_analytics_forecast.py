"""The review workload forecast and its backtest, on series whose answer is known."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from aios_pipelines.analytics.forecast import backtest, daily_series, forecast_review_workload

START = date(2026, 1, 5)  # a Monday
PATTERN = {1: 120.0, 2: 110.0, 3: 100.0, 4: 100.0, 5: 90.0, 6: 20.0, 7: 10.0}  # ISO weekday -> reviews


def history(days: int, noise: float = 0.0, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    dates = [START + timedelta(d) for d in range(days)]
    volume = [PATTERN[d.isoweekday()] + (rng.normal(0, noise) if noise else 0.0) for d in dates]
    return pl.DataFrame({"application_date": dates, "referred_to_review": volume})


def test_a_pure_weekly_pattern_is_forecast_exactly_and_backtests_without_error():
    result = forecast_review_workload(history(70), horizon=14)
    fc = result.forecast
    assert fc.height == 14
    assert fc["forecast_date"][0] == START + timedelta(70)
    assert fc["expected_reviews"].to_list() == [PATTERN[d.isoweekday()] for d in fc["forecast_date"]]
    assert (fc["lower"] == fc["expected_reviews"]).all() and (fc["upper"] == fc["expected_reviews"]).all()
    bt = result.backtest
    # 70 days: origins every 14 days, each fold keeping at least 14 days to fit on -> 4 folds
    assert bt.folds == 4 and bt.points.height == 4 * 14
    assert bt.mae == 0.0 and bt.mape == 0.0 and bt.bias == 0.0 and bt.interval_coverage == 1.0
    assert bt.seasonal_naive_mae == 0.0 and bt.skill_vs_seasonal_naive is None


def test_backtest_folds_use_only_the_days_before_their_origin():
    series = daily_series(history(42), "application_date", "referred_to_review")
    # a spike in the last week: the fold whose test window holds it cannot have seen it
    series = series.with_columns(
        pl.when(pl.col("day") >= START + timedelta(35)).then(pl.col("volume") + 50).otherwise(pl.col("volume"))
    )
    bt = backtest(series, horizon=7, lookback_weeks=4, max_folds=2, min_training_days=14)
    last_fold = bt.points.filter(pl.col("origin") == START + timedelta(35))
    assert last_fold.height == 7
    assert (last_fold["actual"] - last_fold["expected_reviews"]).to_list() == [50.0] * 7
    earlier = bt.points.filter(pl.col("origin") == START + timedelta(28))
    assert (earlier["actual"] == earlier["expected_reviews"]).all()
    assert bt.mae == pytest.approx(25.0) and bt.bias == pytest.approx(-25.0)


def test_noisy_history_interval_covers_about_its_target_and_beats_seasonal_naive():
    result = forecast_review_workload(history(140, noise=8.0), horizon=14, coverage=0.8, max_folds=6)
    bt = result.backtest
    assert bt.folds == 6
    assert 0.6 <= bt.interval_coverage <= 0.95
    # averaging several weeks beats copying last week when the noise is independent
    assert bt.mae < bt.seasonal_naive_mae and bt.skill_vs_seasonal_naive > 0
    assert bt.mape == pytest.approx(
        float(((bt.points["expected_reviews"] - bt.points["actual"]).abs() / bt.points["actual"]).mean())
    )
    fc = result.forecast
    assert (fc["lower"] <= fc["expected_reviews"]).all() and (fc["expected_reviews"] <= fc["upper"]).all()
    assert (fc["lower"] >= 0).all()


def test_missing_days_count_as_no_reviews_and_short_history_still_forecasts():
    gappy = pl.DataFrame({"application_date": [START, START + timedelta(2)], "referred_to_review": [6, 3]})
    series = daily_series(gappy, "application_date", "referred_to_review")
    assert series["volume"].to_list() == [6.0, 0.0, 3.0]
    result = forecast_review_workload(gappy, horizon=7)
    assert result.backtest.folds == 0 and result.backtest.mae is None
    by_day = dict(zip(result.forecast["day_of_week"], result.forecast["expected_reviews"]))
    assert by_day["Mon"] == 6.0 and by_day["Tue"] == 0.0 and by_day["Wed"] == 3.0
    assert by_day["Sun"] == pytest.approx(3.0)  # a weekday never seen: the overall mean


def test_empty_history_gives_an_empty_forecast_and_bad_settings_are_refused():
    empty = pl.DataFrame(schema={"application_date": pl.Date, "referred_to_review": pl.Int64})
    result = forecast_review_workload(empty)
    assert result.forecast.is_empty() and result.history_days == 0 and result.backtest.folds == 0
    with pytest.raises(ValueError, match="coverage"):
        forecast_review_workload(history(14), coverage=1.0)
    with pytest.raises(ValueError, match="positive"):
        forecast_review_workload(history(14), horizon=0)
