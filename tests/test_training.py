"""Training: determinism, monotone constraints, the out-of-time split and early stopping."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from aios_pipelines.modeling.training import (
    FeatureSpec,
    TrainingConfig,
    data_snapshot_hash,
    feature_matrix,
    lightgbm_params,
    predict_pd,
    split_out_of_time,
    train_credit_model,
)

FEATURES = ["risk_up", "risk_down", "free", "segment"]
SPEC = FeatureSpec(
    features=FEATURES, categorical=["segment"], monotone={"risk_up": 1, "risk_down": -1}
)
# Small and quick: one thread, few rounds; the determinism tests also use the default threads.
FAST = TrainingConfig(
    max_rounds=80, early_stopping_rounds=10, min_data_in_leaf=20, oot_days=7, num_threads=1
)
START = date(2024, 3, 1)


def make_applications(n: int = 3000, days: int = 40, seed: int = 7) -> pl.DataFrame:
    """Synthetic applications. ``risk_down`` lowers risk overall but has a bump in [0.4, 0.6]
    where risk goes up, so an unconstrained model is not monotone in it."""
    rng = np.random.default_rng(seed)
    risk_up = rng.uniform(0, 1, n)
    risk_down = rng.uniform(0, 1, n)
    free = rng.normal(0, 1, n)
    segment = rng.integers(0, 5, n)
    bump = ((risk_down > 0.4) & (risk_down < 0.6)).astype(float)
    z = -1.0 + 2.5 * risk_up - 2.0 * risk_down + 2.0 * bump + 0.3 * free + 0.4 * (segment == 2)
    defaulted = (rng.uniform(0, 1, n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    free_with_nulls = [None if rng.uniform() < 0.05 else float(v) for v in free]
    day_offsets = rng.integers(0, days, n)
    return pl.DataFrame(
        {
            "application_id": [f"APP-{i:06d}" for i in range(n)],
            "application_date": [START + timedelta(days=int(d)) for d in day_offsets],
            "risk_up": risk_up,
            "risk_down": risk_down,
            "free": pl.Series(free_with_nulls, dtype=pl.Float64),
            "segment": segment,
            "defaulted": defaulted,
            "outcome_date": [START + timedelta(days=int(d) + 90) for d in day_offsets],
        }
    )


@pytest.fixture(scope="module")
def applications() -> pl.DataFrame:
    return make_applications()


@pytest.fixture(scope="module")
def trained(applications):
    return train_credit_model(applications, SPEC, FAST)


def tree_structure(booster) -> list:
    """The trees alone (the model string also records parameters such as the seed)."""
    return booster.dump_model()["tree_info"]


# --- determinism ---------------------------------------------------------------------------


def test_same_data_and_config_give_an_identical_model(applications):
    # Default thread count (2): thread scheduling must not change the model either.
    config = TrainingConfig(max_rounds=30, early_stopping_rounds=10, min_data_in_leaf=20, oot_days=7)
    assert config.num_threads > 1
    first = train_credit_model(applications, SPEC, config)
    second = train_credit_model(applications, SPEC, config)
    assert first.booster.model_to_string() == second.booster.model_to_string()
    np.testing.assert_array_equal(first.oot_predictions, second.oot_predictions)
    np.testing.assert_array_equal(
        predict_pd(first.booster, applications, SPEC), predict_pd(second.booster, applications, SPEC)
    )
    assert first.data_hash == second.data_hash

    # The row order on input does not matter either.
    shuffled = applications.sample(fraction=1.0, shuffle=True, seed=3)
    assert shuffled["application_id"].to_list() != applications["application_id"].to_list()
    third = train_credit_model(shuffled, SPEC, config)
    assert third.booster.model_to_string() == first.booster.model_to_string()
    assert third.data_hash == first.data_hash
    # OOT arrays come in a canonical order (application date, then application id).
    np.testing.assert_array_equal(third.oot_predictions, first.oot_predictions)
    np.testing.assert_array_equal(third.oot_labels, first.oot_labels)


def test_params_pin_every_source_of_randomness():
    params = lightgbm_params(SPEC, TrainingConfig(seed=5, num_threads=3))
    assert params["deterministic"] is True
    assert params["force_row_wise"] is True
    assert params["num_threads"] == 3
    assert params["verbosity"] == -1
    for key in ("seed", "bagging_seed", "feature_fraction_seed", "data_random_seed"):
        assert params[key] == 5


def test_seed_does_not_matter_without_sampling_and_matters_with_it(applications):
    no_sampling = dict(
        max_rounds=40, early_stopping_rounds=10, min_data_in_leaf=20, oot_days=7, num_threads=1,
        feature_fraction=1.0,
    )
    seed_1 = train_credit_model(applications, SPEC, TrainingConfig(seed=1, **no_sampling))
    seed_2 = train_credit_model(applications, SPEC, TrainingConfig(seed=2, **no_sampling))
    assert tree_structure(seed_1.booster) == tree_structure(seed_2.booster)
    np.testing.assert_array_equal(seed_1.oot_predictions, seed_2.oot_predictions)

    # Control: with column sampling the seed is live, and each seed is still reproducible.
    sampling = {**no_sampling, "feature_fraction": 0.5}
    a = train_credit_model(applications, SPEC, TrainingConfig(seed=1, **sampling))
    a_again = train_credit_model(applications, SPEC, TrainingConfig(seed=1, **sampling))
    b = train_credit_model(applications, SPEC, TrainingConfig(seed=2, **sampling))
    assert a.booster.model_to_string() == a_again.booster.model_to_string()
    assert tree_structure(a.booster) != tree_structure(b.booster)


# --- monotone constraints ------------------------------------------------------------------


def pd_over_grid(booster, spec, base_rows: pl.DataFrame, feature: str, grid: np.ndarray) -> np.ndarray:
    """PD of each base row as ``feature`` runs over ``grid``: shape (rows, grid)."""
    repeated = base_rows.select(pl.all().repeat_by(len(grid)).explode())
    values = np.tile(grid, base_rows.height)
    varied = repeated.with_columns(pl.Series(feature, values))
    return predict_pd(booster, varied, spec).reshape(base_rows.height, len(grid))


def test_monotone_constraint_is_respected(applications, trained):
    grid = np.linspace(-0.2, 1.2, 57)
    base = applications.head(40)

    down = pd_over_grid(trained.booster, SPEC, base, "risk_down", grid)
    assert (np.diff(down, axis=1) <= 1e-12).all(), "PD rose while a -1 feature increased"
    assert (down[:, 0] > down[:, -1]).all()  # and it does fall over the range
    up = pd_over_grid(trained.booster, SPEC, base, "risk_up", grid)
    assert (np.diff(up, axis=1) >= -1e-12).all(), "PD fell while a +1 feature increased"

    # Control: without the constraint the model follows the bump in the data, so the check
    # above is one that a missing constraint would fail.
    unconstrained_spec = FeatureSpec(features=FEATURES, categorical=["segment"], monotone={})
    unconstrained = train_credit_model(applications, unconstrained_spec, FAST)
    free_pd = pd_over_grid(unconstrained.booster, unconstrained_spec, base, "risk_down", grid)
    assert (np.diff(free_pd, axis=1) > 1e-6).any()


def test_monotone_constraints_are_aligned_with_features():
    spec = FeatureSpec(
        features=["a", "b", "c", "d"], categorical=["c"], monotone={"d": -1, "a": 1}
    )
    assert lightgbm_params(spec, TrainingConfig())["monotone_constraints"] == [1, 0, 0, -1]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(features=["a", "c"], categorical=["c"], monotone={"c": 1}),  # categorical constrained
        dict(features=["a"], categorical=[], monotone={"zz": 1}),  # unknown feature
        dict(features=["a"], categorical=[], monotone={"a": 2}),  # not a direction
        dict(features=["a"], categorical=["b"], monotone={}),  # categorical not a feature
        dict(features=["a", "a"], categorical=[], monotone={}),  # duplicate
    ],
)
def test_feature_spec_rejects_inconsistent_specs(kwargs):
    with pytest.raises(ValueError):
        FeatureSpec(**kwargs)


def test_feature_spec_round_trips_through_a_dict():
    assert FeatureSpec.from_dict(SPEC.as_dict()) == SPEC


# --- out-of-time split and early stopping -------------------------------------------------


def test_split_out_of_time_takes_the_newest_application_days():
    # Days with gaps: the window counts days that have applications, not calendar days.
    offsets = [0, 0, 1, 3, 3, 4, 8, 9, 9, 9, 12]
    frame = pl.DataFrame(
        {
            "application_id": [f"A{i}" for i in range(len(offsets))],
            "application_date": [START + timedelta(days=o) for o in offsets],
        }
    )
    train, oot = split_out_of_time(frame, oot_days=3)
    newest = {START + timedelta(days=o) for o in (8, 9, 12)}
    assert set(oot["application_date"].to_list()) == newest
    assert oot.height == 5
    assert train.height == 6
    assert train["application_date"].max() < oot["application_date"].min()
    assert set(train["application_id"]).isdisjoint(set(oot["application_id"]))

    with pytest.raises(ValueError, match="too few application days"):
        split_out_of_time(frame, oot_days=7)  # only 7 distinct days: none left to train on
    with pytest.raises(ValueError):
        split_out_of_time(frame, oot_days=0)


def test_training_never_sees_the_out_of_time_window(applications, trained):
    newest_days = sorted(set(applications["application_date"].to_list()))[-FAST.oot_days :]
    assert trained.oot_start == newest_days[0]
    assert trained.oot_end == newest_days[-1]
    assert trained.train_end < trained.oot_start
    in_oot = pl.col("application_date") >= trained.oot_start
    assert trained.oot_rows == applications.filter(in_oot).height
    assert trained.train_rows == applications.filter(~in_oot).height

    # Scramble every label and feature in the OOT window: the model must not change at all.
    rng = np.random.default_rng(0)
    n = applications.height
    scrambled = applications.with_columns(
        pl.when(in_oot).then(1 - pl.col("defaulted")).otherwise(pl.col("defaulted")).alias("defaulted"),
        pl.when(in_oot).then(pl.lit(pl.Series(rng.uniform(5, 9, n)))).otherwise(pl.col("risk_up")).alias("risk_up"),
        pl.when(in_oot).then(pl.lit(pl.Series(rng.integers(5, 9, n)))).otherwise(pl.col("segment")).alias("segment"),
    )
    retrained = train_credit_model(scrambled, SPEC, FAST)
    assert retrained.booster.model_to_string() == trained.booster.model_to_string()
    assert retrained.data_hash != trained.data_hash
    oot_labels = scrambled.filter(in_oot).sort("application_date", "application_id")["defaulted"]
    np.testing.assert_array_equal(retrained.oot_labels, oot_labels.to_numpy())


def test_early_stopping_window_is_carved_from_the_end_of_the_training_period(applications, trained):
    train_days = sorted({d for d in applications["application_date"].to_list() if d < trained.oot_start})
    expected_es_days = max(1, round(FAST.early_stopping_fraction * len(train_days)))
    assert trained.early_stopping_start == train_days[-expected_es_days]
    assert trained.train_start == train_days[0] < trained.early_stopping_start <= trained.train_end
    es_window = (pl.col("application_date") >= trained.early_stopping_start) & (
        pl.col("application_date") < trained.oot_start
    )
    assert trained.early_stopping_rows == applications.filter(es_window).height
    assert 0 < trained.fit_rows < trained.train_rows

    # The early-stopping window really chooses the number of trees: with its labels flipped,
    # every new tree makes its loss worse and training stops at once. The OOT window (see the
    # test above) has no such effect.
    flipped = applications.with_columns(
        pl.when(es_window).then(1 - pl.col("defaulted")).otherwise(pl.col("defaulted")).alias("defaulted")
    )
    stopped = train_credit_model(flipped, SPEC, FAST)
    assert trained.best_iteration > 10
    assert stopped.best_iteration <= 3
    assert stopped.booster.num_trees() == stopped.best_iteration
    assert trained.booster.num_trees() == trained.best_iteration


def test_training_rejects_bad_inputs(applications):
    with pytest.raises(ValueError, match="null"):
        train_credit_model(
            applications.with_columns(pl.lit(None, dtype=pl.Int64).alias("defaulted")), SPEC, FAST
        )
    with pytest.raises(ValueError, match="too few application days"):
        train_credit_model(applications, SPEC, TrainingConfig(oot_days=39))
    with pytest.raises(ValueError, match="missing"):
        train_credit_model(applications.drop("free"), SPEC, FAST)
    with pytest.raises(ValueError, match="features must not include"):
        train_credit_model(applications, FeatureSpec(features=["risk_up", "defaulted"]), FAST)


# --- scoring and the model record ----------------------------------------------------------


def test_predict_pd_matches_the_oot_scores_and_checks_the_features(applications, trained):
    oot = applications.filter(pl.col("application_date") >= trained.oot_start).sort(
        "application_date", "application_id"
    )
    np.testing.assert_allclose(predict_pd(trained.booster, oot, SPEC), trained.oot_predictions)
    assert ((trained.oot_predictions > 0) & (trained.oot_predictions < 1)).all()
    reordered = FeatureSpec(features=list(reversed(FEATURES)), categorical=["segment"])
    with pytest.raises(ValueError, match="trained on features"):
        predict_pd(trained.booster, oot, reordered)
    assert predict_pd(trained.booster, oot.head(0), SPEC).shape == (0,)


def test_feature_ranges_cover_the_fit_rows_of_numeric_features(applications, trained):
    fit = applications.filter(pl.col("application_date") < trained.early_stopping_start)
    assert set(trained.feature_ranges) == {"risk_up", "risk_down", "free"}  # not the categorical
    for name, (low, high) in trained.feature_ranges.items():
        assert low == fit[name].min()
        assert high == fit[name].max()


def test_feature_matrix_is_float64_in_spec_order_with_nan_for_nulls():
    frame = pl.DataFrame({"b": [1, None, 3], "a": [0.5, 1.5, None]})
    matrix = feature_matrix(frame, FeatureSpec(features=["a", "b"]))
    assert matrix.dtype == np.float64 and matrix.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(matrix, np.array([[0.5, 1.0], [1.5, np.nan], [np.nan, 3.0]]))


def test_data_snapshot_hash_is_order_independent_and_value_sensitive(applications):
    columns = ["application_id", "application_date", "defaulted", *FEATURES]
    base = data_snapshot_hash(applications, columns)
    assert len(base) == 64
    assert data_snapshot_hash(applications.reverse(), columns) == base
    changed = applications.with_columns(
        pl.when(pl.col("application_id") == "APP-000010").then(0.123456).otherwise(pl.col("risk_up")).alias("risk_up")
    )
    assert data_snapshot_hash(changed, columns) != base
    assert data_snapshot_hash(applications, columns[:-1]) != base

    nulls = pl.DataFrame({"x": [1.0, None]})
    zeros = pl.DataFrame({"x": [1.0, 0.0]})
    assert data_snapshot_hash(nulls, ["x"]) != data_snapshot_hash(zeros, ["x"])
    with pytest.raises(ValueError, match="missing"):
        data_snapshot_hash(nulls, ["y"])
