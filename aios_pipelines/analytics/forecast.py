"""Human review workload forecast: how many applications people will have to review.

A seasonal model a risk analyst can check by hand: the forecast for a day is the mean
volume of the same weekday over the last few weeks, and its interval adds the quantiles of
the model's own residuals over those weeks. It is backtested by rolling origin on the
history it has (fit on the days before each origin, forecast the next ``horizon`` days,
compare), against the seasonal naive forecast (same weekday last week) as the benchmark.
Pure functions on polars frames; no Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import polars as pl

HORIZON_DAYS = 14
LOOKBACK_WEEKS = 8
INTERVAL_COVERAGE = 0.8
MAX_BACKTEST_FOLDS = 6
MIN_TRAINING_DAYS = 14

FORECAST_SCHEMA = {
    "forecast_date": pl.Date(),
    "day_of_week": pl.String(),
    "expected_reviews": pl.Float64(),
    "lower": pl.Float64(),
    "upper": pl.Float64(),
}
BACKTEST_SCHEMA = {
    "fold": pl.Int64(),
    "origin": pl.Date(),
    "forecast_date": pl.Date(),
    "actual": pl.Float64(),
    "expected_reviews": pl.Float64(),
    "lower": pl.Float64(),
    "upper": pl.Float64(),
    "seasonal_naive": pl.Float64(),
}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Backtest:
    folds: int
    points: pl.DataFrame
    mae: float | None
    mape: float | None
    bias: float | None
    interval_coverage: float | None
    seasonal_naive_mae: float | None

    @property
    def skill_vs_seasonal_naive(self) -> float | None:
        """1 - MAE / naive MAE: above 0 means the model beats "same weekday last week"."""
        if self.mae is None or not self.seasonal_naive_mae:
            return None
        return 1.0 - self.mae / self.seasonal_naive_mae

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "backtest_folds": self.folds,
            "backtest_mae": self.mae,
            "backtest_mape": self.mape,
            "backtest_bias": self.bias,
            "backtest_interval_coverage": self.interval_coverage,
            "backtest_seasonal_naive_mae": self.seasonal_naive_mae,
            "backtest_skill_vs_seasonal_naive": self.skill_vs_seasonal_naive,
        }


@dataclass(frozen=True)
class WorkloadForecast:
    forecast: pl.DataFrame
    backtest: Backtest
    history_days: int
    settings: dict = field(default_factory=dict)


def daily_series(history: pl.DataFrame, date_column: str, value_column: str) -> pl.DataFrame:
    """One row per calendar day from the first to the last day of ``history`` (columns
    ``day``, ``volume``); a day missing from the history had no volume."""
    if history.is_empty():
        return pl.DataFrame(schema={"day": pl.Date(), "volume": pl.Float64()})
    totals = history.group_by(date_column).agg(pl.col(value_column).sum().cast(pl.Float64).alias("volume"))
    totals = totals.rename({date_column: "day"}).with_columns(pl.col("day").cast(pl.Date))
    days = pl.DataFrame({"day": pl.date_range(totals["day"].min(), totals["day"].max(), "1d", eager=True)})
    return days.join(totals, on="day", how="left").with_columns(pl.col("volume").fill_null(0.0)).sort("day")


def _fit(train: pl.DataFrame, lookback_weeks: int) -> tuple[dict[int, float], np.ndarray]:
    """Weekday means over the last ``lookback_weeks`` weeks of ``train`` and their residuals."""
    window = train.tail(lookback_weeks * 7).with_columns(pl.col("day").dt.weekday().alias("weekday"))
    overall = float(window["volume"].mean())
    by_weekday = dict(window.group_by("weekday").agg(pl.col("volume").mean()).iter_rows())
    means = {wd: float(by_weekday.get(wd, overall)) for wd in range(1, 8)}
    fitted = np.array([means[wd] for wd in window["weekday"].to_list()])
    return means, window["volume"].to_numpy() - fitted


def _predict(
    train: pl.DataFrame, start: date, horizon: int, lookback_weeks: int, coverage: float
) -> pl.DataFrame:
    means, residuals = _fit(train, lookback_weeks)
    tail = (1.0 - coverage) / 2.0
    low, high = np.quantile(residuals, [tail, 1.0 - tail])
    rows = []
    for offset in range(horizon):
        day = start + timedelta(days=offset)
        expected = means[day.isoweekday()]
        rows.append((day, WEEKDAYS[day.weekday()], expected, max(0.0, expected + low), max(0.0, expected + high)))
    return pl.DataFrame(rows, schema=FORECAST_SCHEMA, orient="row")


def _seasonal_naive(train: pl.DataFrame, day: date) -> float | None:
    """The volume of the last same weekday in ``train`` (None when there is none)."""
    same = train.filter(pl.col("day").dt.weekday() == day.isoweekday())
    return float(same["volume"][-1]) if same.height else None


def backtest(
    series: pl.DataFrame,
    horizon: int = HORIZON_DAYS,
    lookback_weeks: int = LOOKBACK_WEEKS,
    coverage: float = INTERVAL_COVERAGE,
    max_folds: int = MAX_BACKTEST_FOLDS,
    min_training_days: int = MIN_TRAINING_DAYS,
) -> Backtest:
    """Rolling-origin backtest: origins ``horizon`` days apart, ending at the last day; each
    fold fits on the days before its origin only and forecasts up to ``horizon`` days."""
    folds = max(0, min(max_folds, (series.height - min_training_days) // horizon))
    parts = []
    last = series["day"].max() if series.height else None
    for fold in range(folds):
        origin = last - timedelta(days=(fold + 1) * horizon - 1)
        train = series.filter(pl.col("day") < origin)
        actual = series.filter((pl.col("day") >= origin) & (pl.col("day") < origin + timedelta(days=horizon)))
        predicted = _predict(train, origin, actual.height, lookback_weeks, coverage)
        parts.append(
            predicted.select("forecast_date", "expected_reviews", "lower", "upper").with_columns(
                pl.lit(fold, dtype=pl.Int64).alias("fold"),
                pl.lit(origin, dtype=pl.Date).alias("origin"),
                pl.Series("actual", actual["volume"].to_list(), dtype=pl.Float64),
                pl.Series(
                    "seasonal_naive", [_seasonal_naive(train, d) for d in actual["day"].to_list()], dtype=pl.Float64
                ),
            )
        )
    if not parts:
        return Backtest(0, pl.DataFrame(schema=BACKTEST_SCHEMA), None, None, None, None, None)
    points = pl.concat(parts).select(list(BACKTEST_SCHEMA)).sort("forecast_date")
    error = points["expected_reviews"] - points["actual"]
    nonzero = points.filter(pl.col("actual") > 0)
    naive = points.filter(pl.col("seasonal_naive").is_not_null())
    inside = (points["actual"] >= points["lower"]) & (points["actual"] <= points["upper"])
    return Backtest(
        folds=folds,
        points=points,
        mae=float(error.abs().mean()),
        mape=float(((nonzero["expected_reviews"] - nonzero["actual"]).abs() / nonzero["actual"]).mean())
        if nonzero.height
        else None,
        bias=float(error.mean()),
        interval_coverage=float(inside.mean()),
        seasonal_naive_mae=float((naive["seasonal_naive"] - naive["actual"]).abs().mean()) if naive.height else None,
    )


def forecast_review_workload(
    history: pl.DataFrame,
    date_column: str = "application_date",
    value_column: str = "referred_to_review",
    horizon: int = HORIZON_DAYS,
    lookback_weeks: int = LOOKBACK_WEEKS,
    coverage: float = INTERVAL_COVERAGE,
    max_folds: int = MAX_BACKTEST_FOLDS,
) -> WorkloadForecast:
    """Forecast the daily review volume for the ``horizon`` days after the history ends.

    ``history`` has one or more rows per day (e.g. the approval funnel's
    ``referred_to_review``). With no history the forecast is empty."""
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be between 0 and 1, got {coverage}")
    if horizon < 1 or lookback_weeks < 1:
        raise ValueError("horizon and lookback_weeks must be positive")
    series = daily_series(history, date_column, value_column)
    settings = {"horizon_days": horizon, "lookback_weeks": lookback_weeks, "interval_coverage": coverage}
    if series.is_empty():
        return WorkloadForecast(pl.DataFrame(schema=FORECAST_SCHEMA), backtest(series), 0, settings)
    start = series["day"].max() + timedelta(days=1)
    return WorkloadForecast(
        forecast=_predict(series, start, horizon, lookback_weeks, coverage),
        backtest=backtest(series, horizon, lookback_weeks, coverage, max_folds),
        history_days=series.height,
        settings=settings,
    )
