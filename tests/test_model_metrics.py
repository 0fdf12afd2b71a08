"""Model metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aios_pipelines.modeling.metrics import (
    calibration_markdown,
    evaluate_predictions,
    ks_statistic,
    lift_markdown,
    plot_model_report,
)


def test_perfect_separation_gives_auc_and_ks_of_one():
    m = evaluate_predictions([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert m.auc == 1.0
    assert m.gini == 1.0
    assert m.ks == 1.0
    assert m.brier == pytest.approx((0.01 + 0.04 + 0.04 + 0.01) / 4)
    assert (m.rows, m.positives, m.default_rate) == (4, 2, 0.5)


def test_reversed_ranking_gives_auc_zero():
    m = evaluate_predictions([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9])
    assert m.auc == 0.0
    assert m.gini == -1.0
    assert m.ks == 1.0  # KS measures separation, whatever its direction


def test_small_example_by_hand():
    # defaulters score 0.2, 0.5, 0.9; non-defaulters 0.1, 0.3, 0.6.
    # AUC: pairs won by the defaulter: 0.2>0.1 (1), 0.5>0.1,0.3 (2), 0.9>all (3) -> 6/9.
    # KS, CDFs after each score 0.1 .2 .3 .5 .6 .9:
    #   defaulters     0  1/3 1/3 2/3 2/3 1
    #   non-defaulters 1/3 1/3 2/3 2/3 1  1   -> largest gap 1/3.
    # Brier: (.01 + .09 + .64 + .36 + .25 + .01) / 6.
    m = evaluate_predictions([0, 0, 1, 0, 1, 1], [0.1, 0.3, 0.2, 0.6, 0.5, 0.9])
    assert m.auc == pytest.approx(2 / 3)
    assert m.gini == pytest.approx(1 / 3)
    assert m.ks == pytest.approx(1 / 3)
    assert m.brier == pytest.approx(1.36 / 6)


def test_tied_scores_move_both_cdfs_at_once():
    # defaulters 0.5, 0.9; non-defaulters 0.2, 0.5.
    # AUC: 0.5 vs 0.2 wins (1), 0.5 vs 0.5 ties (0.5), 0.9 wins twice (2) -> 3.5/4.
    # KS at 0.2: |0 - 1/2|; at 0.5: |1/2 - 1| ; at 0.9: 0 -> 1/2. Walking the rows one by one
    # (non-defaulter 0.5 before defaulter 0.5) would wrongly report 1.
    m = evaluate_predictions([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.9])
    assert m.auc == pytest.approx(0.875)
    assert m.ks == pytest.approx(0.5)
    assert evaluate_predictions([0, 1], [0.4, 0.4]).ks == 0.0


def test_ks_agrees_with_the_two_sample_statistic_on_random_scores():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    pd = np.round(np.clip(rng.normal(0.3 + 0.1 * y, 0.15), 0, 1), 2)  # rounding makes ties
    expected = ks_2samp(pd[y == 1], pd[y == 0]).statistic
    assert ks_statistic(y, pd) == pytest.approx(expected)


def test_calibration_and_lift_tables_by_hand():
    # 20 rows, PD 0.05, 0.10, ... 1.00; the 4 riskiest and 2 of the others default.
    pd = np.arange(1, 21) / 20
    y = np.zeros(20, dtype=int)
    y[[19, 18, 17, 16, 3, 8]] = 1
    m = evaluate_predictions(y, pd)

    assert [row["bin"] for row in m.calibration] == list(range(1, 11))
    assert all(row["rows"] == 2 for row in m.calibration)
    assert m.calibration[0]["mean_pd"] == pytest.approx(0.075)  # 0.05, 0.10
    assert m.calibration[0]["observed_rate"] == 0.0
    assert m.calibration[1]["observed_rate"] == 0.5  # rows 2, 3 -> y[3] = 1
    assert m.calibration[-1]["mean_pd"] == pytest.approx(0.975)
    assert m.calibration[-1]["observed_rate"] == 1.0

    # decile 1 = riskiest pair (rows 19, 18): 2 defaults, rate 1.0, lift 1.0 / 0.3.
    first, second, third = m.lift[:3]
    assert (first["decile"], first["rows"], first["defaults"]) == (1, 2, 2)
    assert first["lift"] == pytest.approx(1 / 0.3)
    assert first["cumulative_capture"] == pytest.approx(2 / 6)
    assert second["cumulative_capture"] == pytest.approx(4 / 6)
    assert third["defaults"] == 0
    assert sum(row["defaults"] for row in m.lift) == 6
    assert sum(row["rows"] for row in m.lift) == 20
    assert m.lift[-1]["cumulative_capture"] == pytest.approx(1.0)
    captures = [row["cumulative_capture"] for row in m.lift]
    assert captures == sorted(captures)


def test_fewer_rows_than_deciles_give_one_row_bins():
    m = evaluate_predictions([0, 1, 1], [0.2, 0.7, 0.4])
    assert [row["rows"] for row in m.calibration] == [1, 1, 1]
    assert [row["mean_pd"] for row in m.calibration] == [0.2, 0.4, 0.7]
    assert [row["defaults"] for row in m.lift] == [1, 1, 0]


def test_single_class_reports_nan_discrimination_and_float_dict():
    m = evaluate_predictions([0, 0, 0], [0.1, 0.2, 0.3])
    assert math.isnan(m.auc) and math.isnan(m.gini) and math.isnan(m.ks)
    assert m.brier == pytest.approx((0.01 + 0.04 + 0.09) / 3)
    scalars = m.as_dict()
    assert set(scalars) == {"auc", "gini", "ks", "brier", "rows", "positives", "default_rate"}
    assert all(type(v) is float for v in scalars.values())
    assert scalars["rows"] == 3.0
    assert math.isnan(m.lift[0]["lift"])


@pytest.mark.parametrize(
    "y, pd",
    [
        ([0, 1], [0.1]),  # lengths differ
        ([], []),  # empty
        ([0, 2], [0.1, 0.2]),  # label not 0/1
        ([0, 1], [0.1, 1.2]),  # PD above 1
        ([0, 1], [0.1, float("nan")]),  # NaN PD
    ],
)
def test_invalid_inputs_are_rejected(y, pd):
    with pytest.raises(ValueError):
        evaluate_predictions(y, pd)


def test_markdown_tables_have_a_row_per_bin():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    m = evaluate_predictions(y, np.clip(0.3 + 0.2 * y + rng.normal(0, 0.1, 200), 0, 1))
    calib = calibration_markdown(m).splitlines()
    lift = lift_markdown(m).splitlines()
    assert calib[0].startswith("| bin |") and len(calib) == 2 + 10
    assert lift[0].startswith("| decile |") and len(lift) == 2 + 10
    assert lift[2].startswith(f"| 1 | {m.lift[0]['rows']} | {m.lift[0]['defaults']} |")


def test_plot_model_report_writes_a_png(tmp_path):
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)
    m = evaluate_predictions(y, np.clip(0.2 + 0.3 * y + rng.normal(0, 0.15, 300), 0, 1))
    target = tmp_path / "reports" / "model.png"
    written = plot_model_report(m, target)
    assert written == target
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
