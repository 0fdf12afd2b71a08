"""Population stability index: hand-computed examples, bands, and the binning conventions."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from aios_pipelines.monitoring.stability import EMPTY_BIN_SHARE, psi, psi_bins, quantile_edges, stability_table
from aios_pipelines.monitoring.thresholds import ERROR, OK, WARN, grade, psi_band


def test_psi_matches_a_hand_computation_with_four_bins():
    # reference 1..8: quartile edges (smallest value with CDF >= q) 2, 4, 6 -> bins {1,2} {3,4} {5,6} {7,8}
    reference = [1, 2, 3, 4, 5, 6, 7, 8]
    current = [1, 1, 1, 1, 3, 5, 7, 8]  # shares 4/8, 1/8, 1/8, 2/8 against 1/4 each
    bins = psi_bins(reference, current, bins=4)
    assert bins.edges.tolist() == [2.0, 4.0, 6.0]
    assert bins.reference_share.tolist() == [0.25, 0.25, 0.25, 0.25]
    assert bins.current_share.tolist() == [0.5, 0.125, 0.125, 0.25]
    # (0.5-0.25) ln 2 + (0.125-0.25) ln 0.5 + (0.125-0.25) ln 0.5 + 0 = 0.5 ln 2
    assert psi(reference, current, bins=4) == pytest.approx(0.5 * math.log(2), abs=1e-12)


def test_psi_with_ten_decile_bins_and_an_empty_bin():
    reference = list(range(100))  # decile edges 9, 19, ..., 89 -> ten bins of ten values
    current = [0] * 10 + [5] * 10 + list(range(10, 90))  # 20% in the first bin, 10% in eight, none in the last
    bins = psi_bins(reference, current)
    assert bins.edges.tolist() == [9.0, 19.0, 29.0, 39.0, 49.0, 59.0, 69.0, 79.0, 89.0]
    assert np.allclose(bins.reference_share, 0.1)
    assert bins.current_share.tolist() == pytest.approx([0.2] + [0.1] * 8 + [0.0])
    # first bin: (0.2-0.1) ln(0.2/0.1); last bin: empty, counted as a 0.0001 share
    expected = 0.1 * math.log(2) + (EMPTY_BIN_SHARE - 0.1) * math.log(EMPTY_BIN_SHARE / 0.1)
    assert expected == pytest.approx(0.759399, abs=1e-6)
    assert psi(reference, current) == pytest.approx(expected, abs=1e-12)


def test_bins_are_right_closed_at_the_reference_quantiles():
    reference = [1, 2, 3, 4, 5, 6, 7, 8]
    # values on an edge fall in the bin that ends there
    assert psi_bins(reference, [2.0, 4.0, 6.0, 9.0], bins=4).current_share.tolist() == [0.25, 0.25, 0.25, 0.25]
    assert psi_bins(reference, [2.5, 4.5, 6.5, 7.0], bins=4).current_share.tolist() == [0.0, 0.25, 0.25, 0.5]


def test_identical_distributions_are_stable_and_sampling_noise_stays_below_the_first_band():
    rng = np.random.default_rng(3)
    reference = rng.lognormal(10.8, 0.5, 5000)
    assert psi(reference, reference) == pytest.approx(0.0, abs=1e-12)
    noise = [psi(reference, rng.lognormal(10.8, 0.5, 400)) for _ in range(20)]
    assert max(noise) < 0.1
    shifted = psi(reference, rng.lognormal(10.8 + np.log(0.7), 0.5, 400))  # incomes cut by 30%
    assert psi_band(shifted) == "significant"


def test_a_discrete_variable_gets_fewer_bins_and_missing_values_are_left_out():
    reference = pl.Series([0] * 70 + [1] * 20 + [2] * 10, dtype=pl.Int64)
    assert quantile_edges(reference).tolist() == [0.0, 1.0]  # bins: 0, 1, 2 and above
    current = pl.Series([0] * 35 + [1] * 10 + [2] * 5 + [None] * 50, dtype=pl.Int64)
    assert psi(reference, current) == pytest.approx(0.0, abs=1e-12)  # same shares once nulls are dropped
    with_nan = np.array([0.0] * 7 + [1.0] * 2 + [2.0] + [np.nan] * 5)
    assert psi(reference, with_nan) == pytest.approx(0.0, abs=1e-12)


def test_psi_needs_values_on_both_sides():
    with pytest.raises(ValueError, match="current batch"):
        psi([1.0, 2.0], [None, float("nan")])
    with pytest.raises(ValueError, match="reference"):
        psi([float("nan")], [1.0])
    with pytest.raises(ValueError, match="at least 2"):
        psi([1.0, 2.0], [1.0], bins=1)


def test_bands_and_grades():
    assert [psi_band(v) for v in (0.0, 0.099, 0.1, 0.2499, 0.25, 3.0)] == [
        "stable", "stable", "moderate", "moderate", "significant", "significant"
    ]
    assert psi_band(None) == psi_band(float("nan")) == "n/a"
    assert [grade(v, 0.1, 0.25) for v in (0.05, 0.1, 0.3, None)] == [OK, WARN, ERROR, OK]


def test_stability_table_has_a_row_per_variable():
    reference = pl.DataFrame({"a": list(range(100)), "b": [1.0] * 100, "c": [None] * 100}, schema={"a": pl.Int64, "b": pl.Float64, "c": pl.Float64})
    current = pl.DataFrame({"a": list(range(50, 100)), "b": [1.0] * 50, "c": [1.0] * 50})
    table = stability_table(reference, current, ["a", "b", "c"])
    assert table.columns == ["variable", "psi", "band", "current_rows", "reference_rows"]
    rows = {r["variable"]: r for r in table.iter_rows(named=True)}
    assert rows["a"]["psi"] > 0.25 and rows["a"]["band"] == "significant"  # the upper half of 0..99 only
    assert rows["b"]["psi"] == pytest.approx(0.0) and rows["b"]["band"] == "stable"
    assert rows["c"]["psi"] is None and rows["c"]["band"] == "n/a" and rows["c"]["reference_rows"] == 0
