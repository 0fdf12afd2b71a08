"""Override propensity: shrunk segment rates and the adjusted logistic regression."""

from __future__ import annotations

import math

import polars as pl
import pytest

from aios_pipelines.analytics.override_propensity import override_propensity


def verdicts() -> pl.DataFrame:
    rows = []
    # dave overrides 6 of his 10 band-D verdicts; erin 1 of her 10 band-D and 0 of 20 band-B
    for i in range(10):
        rows.append(("D", "review:grey_zone", "dave", "web", i < 6, "low_side" if i < 6 else None))
        rows.append(("D", "review:grey_zone", "erin", "web", i < 1, "low_side" if i < 1 else None))
    for _ in range(20):
        rows.append(("B", "review:amount_over_limit", "erin", None, False, None))
    return pl.DataFrame(
        rows, schema=["score_band", "policy_rule", "reviewer", "channel", "is_override", "override_direction"], orient="row"
    )


def test_segment_rates_are_shrunk_towards_the_overall_rate():
    result = override_propensity(verdicts(), prior_strength=10.0)
    assert (result.verdicts, result.overrides) == (40, 7)
    assert result.overall_rate == pytest.approx(7 / 40)
    seg = {(r["dimension"], r["segment"]): r for r in result.segments.iter_rows(named=True)}
    dave = seg[("reviewer", "dave")]
    assert (dave["verdicts"], dave["overrides"], dave["low_side_overrides"], dave["high_side_overrides"]) == (10, 6, 6, 0)
    assert dave["override_rate"] == pytest.approx(0.6)
    assert dave["shrunk_override_rate"] == pytest.approx((6 + 10 * 7 / 40) / (10 + 10))
    assert dave["lift"] == pytest.approx(dave["shrunk_override_rate"] / (7 / 40))
    # a missing channel is its own segment
    assert seg[("channel", "unknown")]["verdicts"] == 20
    assert result.top_segments(1)["segment"].to_list() == ["dave"]


def test_logistic_regression_separates_the_reviewer_from_the_band():
    result = override_propensity(verdicts())
    seg = {(r["dimension"], r["segment"]): r for r in result.segments.iter_rows(named=True)}
    # same band, same rule: the difference is the reviewer
    assert seg[("reviewer", "dave")]["odds_ratio"] > 1.0 > seg[("reviewer", "erin")]["odds_ratio"]
    assert all(math.isclose(r["odds_ratio"], math.exp(r["coefficient"])) for r in result.segments.iter_rows(named=True))
    assert result.in_sample_auc > 0.8
    assert result.model.startswith("logistic regression")


def test_no_model_without_both_outcomes_and_nothing_without_verdicts():
    agreeing = verdicts().with_columns(pl.lit(False).alias("is_override"), pl.lit(None, pl.String).alias("override_direction"))
    result = override_propensity(agreeing)
    assert result.overall_rate == 0.0 and result.in_sample_auc is None
    assert result.segments["coefficient"].null_count() == result.segments.height
    assert "every verdict agrees" in result.model
    empty = override_propensity(verdicts().clear())
    assert empty.segments.is_empty() and empty.verdicts == 0 and empty.overall_rate is None
    with pytest.raises(ValueError):
        override_propensity(verdicts(), regularisation_c=0)
