"""Tabulated TreeSHAP gives LightGBM's own ``pred_contrib`` values, or falls back to it."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from aios_pipelines.modeling import tree_shap
from aios_pipelines.modeling.explanations import top_reasons
from aios_pipelines.modeling.tree_shap import MIN_TABULATED_ROWS, TABULATED, tree_shap_contributions

ROWS = 3 * MIN_TABULATED_ROWS
# a few ulp of the raw score: only the order of the additions across trees differs
TOLERANCE = 1e-12


def _data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Four numeric columns and one categorical code column (4)."""
    x = np.column_stack([
        rng.normal(0, 1, n),
        rng.uniform(0, 1, n),
        rng.poisson(1.0, n).astype(float),  # many exact zeros
        rng.normal(0, 1, n),
        rng.integers(0, 6, n).astype(float),
    ])
    z = x[:, 0] + 2 * x[:, 1] - 0.5 * x[:, 2] + 0.8 * (x[:, 4] == 2) - 0.6 * (x[:, 4] == 4)
    y = (rng.uniform(0, 1, n) < 1 / (1 + np.exp(-z))).astype(int)
    return x, y


def _train(x: np.ndarray, y: np.ndarray, **params) -> lgb.Booster:
    base = {"objective": "binary", "num_leaves": 8, "min_data_in_leaf": 10, "verbose": -1, "seed": 3,
            "deterministic": True, "force_row_wise": True, "num_threads": 1, "max_cat_to_onehot": 2}
    return lgb.train({**base, **params}, lgb.Dataset(x, y, categorical_feature=[4]), num_boost_round=40)


def _awkward_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rows with every value class LightGBM decides specially."""
    x, _ = _data(rng, n)
    pick = lambda share: rng.uniform(0, 1, n) < share  # noqa: E731
    for column in range(4):
        x[pick(0.08), column] = np.nan
        x[pick(0.05), column] = 0.0
        x[pick(0.02), column] = 1e-40  # a dense row drops it as a sparse zero
        x[pick(0.02), column] = -1e-40
    cats = x[:, 4]
    cats[pick(0.05)] = np.nan
    cats[pick(0.03)] = -3.0  # negative categories go right
    cats[pick(0.03)] = -0.5  # truncates to category 0
    cats[pick(0.03)] = 2.7  # truncates to category 2
    cats[pick(0.03)] = 17.0  # never seen in training
    cats[pick(0.01)] = 3e9  # past int32
    return x


def _check_equal_to_pred_contrib(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    got, method = tree_shap_contributions(booster, x)
    assert method == TABULATED
    expected = booster.predict(x, pred_contrib=True)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(got.sum(axis=1), booster.predict(x, raw_score=True), rtol=0, atol=TOLERANCE)
    return got


@pytest.mark.parametrize(
    "params, training_nan",
    [
        pytest.param({}, True, id="missing-as-nan"),
        pytest.param({"zero_as_missing": True}, True, id="zero-as-missing"),
        pytest.param({}, False, id="no-missing-in-training"),
        pytest.param({"use_missing": False}, True, id="missing-off"),
    ],
)
def test_tabulated_contributions_equal_lightgbm_pred_contrib(params, training_nan):
    rng = np.random.default_rng(7)
    x, y = _data(rng, 4000)
    if training_nan:
        x[rng.uniform(0, 1, len(x)) < 0.1, 0] = np.nan
        x[rng.uniform(0, 1, len(x)) < 0.1, 4] = np.nan
    booster = _train(x, y, **params)
    missing_types = {n["missing_type"] for n in _split_nodes(booster)}
    assert missing_types  # the model split at all
    _check_equal_to_pred_contrib(booster, _awkward_rows(np.random.default_rng(8), ROWS))


def _split_nodes(booster: lgb.Booster) -> list[dict]:
    nodes, stack = [], [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_index" in node:
            nodes.append(node)
            stack += [node["left_child"], node["right_child"]]
    return nodes


def test_the_models_cover_categorical_and_every_missing_type():
    """The cases above are only worth something if their trees hold every kind of split."""
    seen = set()
    for params, training_nan in (({}, True), ({"zero_as_missing": True}, True), ({}, False)):
        rng = np.random.default_rng(7)
        x, y = _data(rng, 4000)
        if training_nan:
            x[rng.uniform(0, 1, len(x)) < 0.1, 0] = np.nan
            x[rng.uniform(0, 1, len(x)) < 0.1, 4] = np.nan
        seen |= {(n["decision_type"], n["missing_type"], n["default_left"]) for n in _split_nodes(_train(x, y, **params))}
    for kind in [("<=", "NaN", True), ("<=", "NaN", False), ("<=", "Zero", True), ("<=", "Zero", False),
                 ("<=", "None", True), ("==", "NaN", False), ("==", "None", False)]:
        assert kind in seen, (kind, seen)


def test_deep_trees_use_the_sparse_table_and_agree():
    rng = np.random.default_rng(9)
    x, y = _data(rng, 6000)
    booster = _train(x, y, num_leaves=40, min_data_in_leaf=5)
    assert max(t["num_leaves"] for t in booster.dump_model()["tree_info"]) - 1 > tree_shap.DENSE_TABLE_MAX_SPLITS
    _check_equal_to_pred_contrib(booster, _awkward_rows(np.random.default_rng(10), ROWS))


def test_a_rows_contributions_do_not_depend_on_the_rest_of_the_batch():
    rng = np.random.default_rng(11)
    x, y = _data(rng, 4000)
    booster = _train(x, y)
    rows = _awkward_rows(np.random.default_rng(12), ROWS)
    whole, _ = tree_shap_contributions(booster, rows)
    part, method = tree_shap_contributions(booster, rows[-MIN_TABULATED_ROWS:])
    assert method == TABULATED
    assert np.array_equal(part, whole[-MIN_TABULATED_ROWS:])  # to the bit


def test_reasons_are_the_same_as_from_pred_contrib():
    rng = np.random.default_rng(13)
    x, y = _data(rng, 4000)
    booster = _train(x, y)
    rows = _awkward_rows(np.random.default_rng(14), ROWS)
    names = ["a", "b", "c", "d", "cat"]
    got = _check_equal_to_pred_contrib(booster, rows)
    assert top_reasons(got, names, 3) == top_reasons(booster.predict(rows, pred_contrib=True), names, 3)


@pytest.mark.parametrize("with_predictions", [False, True])
def test_a_decision_rule_that_differs_from_lightgbm_falls_back_to_pred_contrib(monkeypatch, caplog, with_predictions):
    rng = np.random.default_rng(15)
    x, y = _data(rng, 4000)
    booster = _train(x, y)
    rows = _awkward_rows(np.random.default_rng(16), ROWS)
    predictions = booster.predict(rows) if with_predictions else None
    right = tree_shap._goes_left
    # a rule that treats missing values the other way: rows with NaN land in another leaf,
    # and their contributions no longer add up to LightGBM's prediction
    monkeypatch.setattr(tree_shap, "_goes_left", lambda column, split: right(np.nan_to_num(column, nan=1e9), split))
    with caplog.at_level("WARNING"):
        got, method = tree_shap_contributions(booster, rows, predictions)
    assert method.startswith("pred_contrib: the contributions of ")
    assert "do not add up to LightGBM's prediction" in caplog.text
    assert np.array_equal(got, booster.predict(rows, pred_contrib=True))


def test_the_callers_predictions_spare_the_guard_a_prediction_and_are_checked(monkeypatch):
    rng = np.random.default_rng(23)
    x, y = _data(rng, 4000)
    booster = _train(x, y)
    rows = _awkward_rows(np.random.default_rng(24), ROWS)
    predictions = booster.predict(rows)
    raw_calls = []
    predict = lgb.Booster.predict

    def counting(self, data, *args, **kwargs):
        if kwargs.get("raw_score"):
            raw_calls.append(len(data))
        return predict(self, data, *args, **kwargs)

    monkeypatch.setattr(lgb.Booster, "predict", counting)
    got, method = tree_shap_contributions(booster, rows, predictions)
    assert method == TABULATED and raw_calls == []
    assert np.abs(got - predict(booster, rows, pred_contrib=True)).max() < TOLERANCE
    # without them the guard predicts raw scores itself
    tree_shap_contributions(booster, rows)
    assert raw_calls == [ROWS]
    # predictions that are not this model's for these rows: one row off is caught
    wrong = predictions.copy()
    wrong[7] = min(wrong[7] + 1e-6, 1.0 - 1e-9)
    got, method = tree_shap_contributions(booster, rows, wrong)
    assert method.startswith("pred_contrib: the contributions of 1 rows (first row 7)")
    with pytest.raises(ValueError, match="predictions for"):
        tree_shap_contributions(booster, rows, predictions[:-1])


def test_a_regression_model_is_checked_against_its_raw_scores():
    rng = np.random.default_rng(25)
    x, _ = _data(rng, 4000)
    target = x[:, 0] * 3 + np.nan_to_num(x[:, 1])
    booster = lgb.train({"objective": "regression", "num_leaves": 8, "verbose": -1, "seed": 3, "deterministic": True,
                         "force_row_wise": True, "num_threads": 1}, lgb.Dataset(x, target, categorical_feature=[4]),
                        num_boost_round=20)
    rows = _awkward_rows(np.random.default_rng(26), ROWS)
    got, method = tree_shap_contributions(booster, rows, booster.predict(rows))
    assert method == TABULATED
    assert np.abs(got - booster.predict(rows, pred_contrib=True)).max() < 1e-9


def test_small_batches_and_unsupported_models_use_pred_contrib():
    rng = np.random.default_rng(17)
    x, y = _data(rng, 4000)
    booster = _train(x, y)
    few = _awkward_rows(np.random.default_rng(18), 5)
    got, method = tree_shap_contributions(booster, few)
    assert method.startswith("pred_contrib: 5 rows")
    assert np.array_equal(got, booster.predict(few, pred_contrib=True))

    multiclass = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1, "num_leaves": 4},
                           lgb.Dataset(x[:, :4], rng.integers(0, 3, len(x))), num_boost_round=3)
    rows = np.random.default_rng(19).normal(size=(ROWS, 4))
    got, method = tree_shap_contributions(multiclass, rows)
    assert method == "pred_contrib: 3 trees per iteration"
    assert np.array_equal(got, multiclass.predict(rows, pred_contrib=True))

    linear = lgb.train({"objective": "binary", "linear_tree": True, "verbose": -1, "num_leaves": 4},
                       lgb.Dataset(np.nan_to_num(x[:, :4]), y), num_boost_round=3)
    with pytest.raises(lgb.basic.LightGBMError, match="linear trees"):  # LightGBM's own refusal
        tree_shap_contributions(linear, np.nan_to_num(rows))


def test_an_empty_matrix_and_a_single_leaf_model():
    rng = np.random.default_rng(21)
    x, _ = _data(rng, 3000)
    constant = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(x, np.zeros(len(x), dtype=int)),
                         num_boost_round=2)
    _check_equal_to_pred_contrib(constant, _awkward_rows(np.random.default_rng(22), ROWS))
    booster = _train(*_data(rng, 3000))
    got, _ = tree_shap_contributions(booster, np.empty((0, 5)))
    assert got.shape == (0, 6)
