"""Data-quality flags on scored rows: the messages a reviewer reads beside a case.

``quality_flags`` formats messages only for the flagged rows and puts them back in place;
these tests hold it to the row-by-row meaning: each row's flags, in rule order, exactly as
one ``when/then`` per rule over the whole frame gives them."""

import numpy as np
import polars as pl
import pytest

from aios_pipelines.modeling.scoring import _quality_flag_rules, quality_flags

RANGES = {"annual_income": (10_000.0, 250_000.0), "bureau_score": (300.0, 850.0), "not_a_column": (0.0, 1.0)}


def _every_row(features: pl.DataFrame, ranges) -> list[list[str]]:
    """The plain meaning: every rule evaluated on every row."""
    rules = _quality_flag_rules(features, ranges)
    if not rules:
        return [[] for _ in range(features.height)]
    return (
        features.select(pl.concat_list([pl.when(c).then(m) for c, m in rules]).list.drop_nulls())
        .to_series()
        .to_list()
    )


def _frame(rows: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.uniform(0, 300_000, rows)
    income[rng.random(rows) < 0.1] = np.nan
    score = rng.uniform(250, 900, rows)
    return pl.DataFrame(
        {
            "application_id": [f"A{i}" for i in range(rows)],
            "annual_income": pl.Series(income).fill_nan(None),
            "bureau_score": score,
            "bureau_score__missing": rng.integers(0, 2, rows),
            "employment_length_years__missing": pl.Series(rng.integers(0, 2, rows)).cast(pl.Int8),
        }
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_flags_are_every_rules_message_on_its_own_row_in_rule_order(seed):
    features = _frame(500, seed)
    flags = quality_flags(features, RANGES)
    assert flags.name == "quality_flags" and flags.dtype == pl.List(pl.String)
    assert flags.to_list() == _every_row(features, RANGES)
    # the frame exercises flagged and unflagged rows, and rows with several flags
    counts = flags.list.len()
    assert counts.min() == 0 and counts.max() >= 3


def test_flag_messages_name_the_input_and_the_range():
    features = pl.DataFrame(
        {
            "annual_income": [5_000.0, 50_000.0, None, 300_000.123456],
            "bureau_score": [700.0, 900.0, 700.0, 700.0],
            "bureau_score__missing": [0, 0, 1, None],
        }
    )
    assert quality_flags(features, RANGES).to_list() == [
        ["annual_income: 5000.0 is outside the training range [1e+04, 2.5e+05]"],
        ["bureau_score: 900.0 is outside the training range [300, 850]"],
        ["bureau_score: missing, the model used its learned default for it"],
        ["annual_income: 300000.1235 is outside the training range [1e+04, 2.5e+05]"],
    ]


def test_no_rules_no_flags_and_no_rows():
    features = _frame(20, 3).select("application_id", "annual_income")
    assert quality_flags(features, {}).to_list() == [[] for _ in range(20)]
    assert quality_flags(features.head(0), RANGES).len() == 0
    in_range = pl.DataFrame({"annual_income": [20_000.0, 30_000.0]})
    assert quality_flags(in_range, RANGES).to_list() == [[], []]
