"""Predictive analytics on the marts: review workload forecast, expected loss of the
approved book, and where people override the model. Each reads a mart, calls a pure
function in ``aios_pipelines.analytics`` and writes its table back to the warehouse."""

import dagster as dg
import polars as pl

from aios_pipelines.analytics import expected_loss as el
from aios_pipelines.analytics import forecast as fc
from aios_pipelines.analytics import override_propensity as op
from aios_pipelines.defs.analytics.dbt_assets import ANALYTICS_GROUP
from aios_pipelines.defs.metadata import markdown_table
from aios_pipelines.defs.resources import WarehouseResource


def _numbers(values: dict) -> dict:
    """Metadata for the values that exist (a metric without data is left out, not zero)."""
    out = {}
    for name, value in values.items():
        if value is None:
            continue
        out[name] = dg.MetadataValue.int(value) if isinstance(value, int) else dg.MetadataValue.float(float(value))
    return out


class WorkloadForecastConfig(dg.Config):
    horizon_days: int = fc.HORIZON_DAYS
    lookback_weeks: int = fc.LOOKBACK_WEEKS
    interval_coverage: float = fc.INTERVAL_COVERAGE


@dg.asset(
    group_name=ANALYTICS_GROUP,
    kinds={"polars", "duckdb"},
    deps=["approval_funnel"],
    pool="warehouse",
)
def review_workload_forecast(config: WorkloadForecastConfig, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Applications people will have to review on each of the next days, with an interval:
    weekday means of the recent weeks, interval from their residuals, backtested by
    rolling origin against "same weekday last week"."""
    store = warehouse.get()
    history = store.query("select application_date, referred_to_review from approval_funnel order by application_date")
    result = fc.forecast_review_workload(
        history,
        horizon=config.horizon_days,
        lookback_weeks=config.lookback_weeks,
        coverage=config.interval_coverage,
    )
    store.replace_table("review_workload_forecast", result.forecast)
    backtest = result.backtest
    per_fold = (
        backtest.points.group_by("fold", "origin")
        .agg(
            (pl.col("expected_reviews") - pl.col("actual")).abs().mean().round(2).alias("mae"),
            pl.col("actual").sum().alias("actual_reviews"),
        )
        .sort("fold")
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.forecast.height,
            "history_days": result.history_days,
            "method": dg.MetadataValue.text(
                f"weekday means of the last {config.lookback_weeks} weeks; "
                f"{config.interval_coverage:.0%} interval from their residuals"
            ),
            "expected_reviews_next_period": float(result.forecast["expected_reviews"].sum() or 0.0),
            **_numbers(backtest.as_dict()),
            "backtest_by_fold": markdown_table(per_fold),
            "forecast": markdown_table(result.forecast.with_columns(pl.col(pl.Float64).round(1)), max_rows=31),
        }
    )


class ExpectedLossConfig(dg.Config):
    lgd: float = el.DEFAULT_LGD  # loss given default, a share of the exposure


@dg.asset(
    group_name=ANALYTICS_GROUP,
    kinds={"polars", "duckdb"},
    deps=["fct_application_decisions"],
    pool="warehouse",
)
def expected_loss(config: ExpectedLossConfig, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Expected loss of the approved book by vintage (PD x loan amount x LGD), and the
    realised loss of the loans whose outcome has matured beside the loss expected of them."""
    store = warehouse.get()
    loans = store.query(
        "select application_date, pd, loan_amount, has_matured_outcome, defaulted "
        "from fct_application_decisions where final_decision = 'approve'"
    )
    table = el.expected_loss_by_vintage(loans, lgd=config.lgd)
    store.replace_table("expected_loss", table)
    totals = el.book_totals(table)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.height,
            "lgd": config.lgd,
            **_numbers(totals),
            "by_vintage": markdown_table(
                table.select(
                    "vintage", "approved_loans", "exposure", "expected_loss", "expected_loss_rate",
                    "matured_loans", "realised_loss", "realised_to_expected",
                ).with_columns(pl.col(pl.Float64).round(4)),
                max_rows=24,
            ),
        }
    )


class OverridePropensityConfig(dg.Config):
    prior_strength: float = op.PRIOR_STRENGTH
    regularisation_c: float = op.REGULARISATION_C


@dg.asset(
    group_name=ANALYTICS_GROUP,
    kinds={"scikitlearn", "polars", "duckdb"},
    deps=["fct_review_decisions"],
    pool="warehouse",
)
def override_propensity(config: OverridePropensityConfig, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Where people override the model: per score band, policy rule, reviewer and channel,
    the override rate shrunk towards the overall rate, and the segment's adjusted odds
    ratio from a small regularised logistic regression."""
    store = warehouse.get()
    verdicts = store.query(
        "select score_band, policy_rule, reviewer, channel, is_override, override_direction "
        "from fct_review_decisions where is_verdict and model_recommendation is not null"
    )
    result = op.override_propensity(
        verdicts, prior_strength=config.prior_strength, regularisation_c=config.regularisation_c
    )
    store.replace_table("override_propensity", result.segments)
    top = result.top_segments(8).select(
        "dimension", "segment", "verdicts", "overrides", "override_rate", "shrunk_override_rate", "odds_ratio"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.segments.height,
            "verdicts": result.verdicts,
            "overrides": result.overrides,
            "model": dg.MetadataValue.text(result.model),
            **_numbers({"overall_override_rate": result.overall_rate, "in_sample_auc": result.in_sample_auc}),
            "top_segments": markdown_table(top.with_columns(pl.col(pl.Float64).round(3))),
        }
    )
