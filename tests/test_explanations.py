"""Reason codes from LightGBM contributions, and the decision-confidence helper."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from aios_pipelines.modeling.explanations import (
    contributions,
    explain_rows,
    map_reason_codes,
    prediction_confidence,
    top_reasons,
)
from aios_pipelines.modeling.training import (
    FeatureSpec,
    TrainingConfig,
    feature_matrix,
    predict_pd,
    train_credit_model,
)

FEATURES = ["debt_ratio", "income", "inquiries", "tenure", "noise", "purpose"]
SPEC = FeatureSpec(
    features=FEATURES,
    categorical=["purpose"],
    monotone={"debt_ratio": 1, "income": -1, "inquiries": 1, "tenure": -1},
)
CONFIG = TrainingConfig(
    max_rounds=60, early_stopping_rounds=10, min_data_in_leaf=20, oot_days=5, num_threads=1
)


def make_applications(n: int = 3000, seed: int = 11) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    debt_ratio = rng.uniform(0, 1, n)
    income = rng.normal(0, 1, n)
    inquiries = rng.poisson(1.5, n).astype(float)
    tenure = rng.uniform(0, 10, n)
    purpose = rng.integers(0, 4, n)
    z = -1.2 + 2.0 * debt_ratio - 0.8 * income + 0.3 * inquiries - 0.1 * tenure + 0.5 * (purpose == 1)
    defaulted = (rng.uniform(0, 1, n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    tenure_with_nulls = pl.Series([None if rng.uniform() < 0.05 else float(v) for v in tenure])
    start = date(2024, 5, 1)
    return pl.DataFrame(
        {
            "application_id": [f"A{i:05d}" for i in range(n)],
            "application_date": [start + timedelta(days=int(d)) for d in rng.integers(0, 30, n)],
            "debt_ratio": debt_ratio,
            "income": income,
            "inquiries": inquiries,
            "tenure": tenure_with_nulls,
            "noise": rng.normal(0, 1, n),
            "purpose": purpose,
            "defaulted": defaulted,
        }
    )


@pytest.fixture(scope="module")
def applications() -> pl.DataFrame:
    return make_applications()


@pytest.fixture(scope="module")
def booster(applications):
    return train_credit_model(applications, SPEC, CONFIG).booster


@pytest.fixture(scope="module")
def sample(applications) -> pl.DataFrame:
    return applications.head(400)


@pytest.fixture(scope="module")
def sample_contribs(booster, sample) -> np.ndarray:
    return contributions(booster, feature_matrix(sample, SPEC))


def expected_reasons(row: np.ndarray, names: list[str], max_reasons: int, floor: float = 0.0):
    """Brute force: all features above the floor, largest first, the first max_reasons."""
    ranked = sorted(
        ((value, -j, names[j]) for j, value in enumerate(row) if value > floor), reverse=True
    )
    return [name for _, _, name in ranked[:max_reasons]]


# --- contributions ------------------------------------------------------------------------


def test_contributions_plus_bias_sum_to_the_raw_score(booster, sample, sample_contribs):
    matrix = feature_matrix(sample, SPEC)
    assert sample_contribs.shape == (sample.height, len(FEATURES) + 1)
    raw = booster.predict(matrix, raw_score=True)
    np.testing.assert_allclose(sample_contribs.sum(axis=1), raw, rtol=0, atol=1e-9)
    # Log-odds space: the sigmoid of the sum is the PD.
    pd = predict_pd(booster, sample, SPEC)
    np.testing.assert_allclose(1 / (1 + np.exp(-sample_contribs.sum(axis=1))), pd, atol=1e-12)
    # The bias is the same for every row.
    assert np.ptp(sample_contribs[:, -1]) == 0
    with pytest.raises(ValueError, match="columns"):
        contributions(booster, matrix[:, :3])


# --- top reasons ---------------------------------------------------------------------------


def test_top_reasons_are_the_largest_positive_contributions(sample_contribs):
    reasons = top_reasons(sample_contribs, FEATURES, max_reasons=4)
    assert len(reasons) == len(sample_contribs)
    for row, chosen in zip(sample_contribs, reasons):
        assert chosen == expected_reasons(row[:-1], FEATURES, 4)
        values = [row[FEATURES.index(name)] for name in chosen]
        assert all(v > 0 for v in values)
        assert values == sorted(values, reverse=True)
        # Nothing left out beats the weakest reason chosen.
        left_out = [row[j] for j, name in enumerate(FEATURES) if name not in chosen]
        if chosen and len(chosen) == 4:
            assert max(left_out) <= values[-1]
    # The real model gives rows with several risk-raising features and rows with few.
    lengths = {len(r) for r in reasons}
    assert max(lengths) == 4 and min(lengths) < 4


def test_a_feature_that_lowered_risk_is_never_a_reason(sample_contribs):
    reasons = top_reasons(sample_contribs, FEATURES, max_reasons=len(FEATURES))
    negatives_seen = 0
    for row, chosen in zip(sample_contribs, reasons):
        for j, name in enumerate(FEATURES):
            if row[j] <= 0:
                negatives_seen += 1
                assert name not in chosen
            else:
                assert name in chosen  # with room for all, every risk-raising feature is listed
    assert negatives_seen > 0


def test_max_reasons_and_min_contribution_are_respected(sample_contribs):
    for k in (0, 1, 2):
        reasons = top_reasons(sample_contribs, FEATURES, max_reasons=k)
        assert all(len(r) <= k for r in reasons)
        assert any(len(r) == k for r in reasons)
        for row, chosen in zip(sample_contribs, reasons):
            assert chosen == expected_reasons(row[:-1], FEATURES, k)

    floor = float(np.quantile(sample_contribs[:, :-1][sample_contribs[:, :-1] > 0], 0.5))
    floored = top_reasons(sample_contribs, FEATURES, max_reasons=4, min_contribution=floor)
    for row, chosen in zip(sample_contribs, floored):
        assert chosen == expected_reasons(row[:-1], FEATURES, 4, floor)
    with pytest.raises(ValueError):
        top_reasons(sample_contribs, FEATURES, min_contribution=-0.1)


def test_top_reasons_on_a_hand_made_matrix():
    names = ["a", "b", "c", "d"]
    contribs = np.array(
        [
            [0.5, -1.0, 0.2, 0.0, -2.0],  # d contributes nothing: not a reason
            [-0.1, -0.2, -0.3, -0.4, 1.0],  # everything lowered the risk: no reasons
            [0.3, 0.3, 0.9, 0.1, 0.0],  # tie between a and b keeps feature order
        ]
    )
    assert top_reasons(contribs, names) == [["a", "c"], [], ["c", "a", "b", "d"]]
    assert top_reasons(contribs, names, max_reasons=2) == [["a", "c"], [], ["c", "a"]]
    assert top_reasons(contribs[:, :-1], names, max_reasons=1) == [["a"], [], ["c"]]
    assert top_reasons(contribs, names, min_contribution=0.25) == [["a"], [], ["c", "a", "b"]]
    with pytest.raises(ValueError, match="columns"):
        top_reasons(contribs, names[:2])


# --- reason codes --------------------------------------------------------------------------

CATALOG = {
    "debt_ratio": {"code": "R01", "text": "Debt is high relative to income"},
    "tenure": {
        "code": "R07",
        "text": "Short time with current employer",
        "missing": "Employment history not provided",
    },
    "income": {"code": "R02", "text": "Income is low"},
    "inquiries__missing": {"code": "R12", "text": "Credit inquiries unknown"},
}


def test_map_reason_codes_handles_missing_indicators_and_unknown_features():
    mapped = map_reason_codes(
        [
            ["debt_ratio", "tenure__missing", "income__missing", "inquiries__missing"],
            ["mystery_feature", "mystery__missing"],
            [],
        ],
        CATALOG,
    )
    first, second, third = mapped
    assert first[0] == {"feature": "debt_ratio", "code": "R01", "text": "Debt is high relative to income"}
    # x__missing -> the entry of x with its "missing" text variant.
    assert first[1] == {"feature": "tenure__missing", "code": "R07", "text": "Employment history not provided"}
    # No missing variant: the entry of x as it is.
    assert first[2] == {"feature": "income__missing", "code": "R02", "text": "Income is low"}
    # An indicator listed itself wins over its base feature.
    assert first[3]["code"] == "R12"
    assert [r["code"] for r in second] == ["OTHER", "OTHER"]
    assert "mystery_feature" in second[0]["text"]
    assert "mystery__missing" in second[1]["text"]
    assert third == []


# --- explain_rows --------------------------------------------------------------------------


def test_explain_rows_computes_contributions_only_for_masked_rows(booster, sample, monkeypatch):
    mask = (pl.col("debt_ratio") > 0.8).alias("mask")
    mask_values = sample.select(mask)["mask"]
    chosen = sample.filter(mask_values)
    assert 0 < chosen.height < sample.height

    contrib_rows: list[int] = []
    original_predict = booster.predict

    def spying_predict(data, *args, **kwargs):
        if kwargs.get("pred_contrib"):
            contrib_rows.append(len(data))
        return original_predict(data, *args, **kwargs)

    monkeypatch.setattr(booster, "predict", spying_predict)
    explained = explain_rows(booster, sample, SPEC, mask_values, max_reasons=3)
    assert contrib_rows == [chosen.height]

    assert explained.columns == ["application_id", "reason_features", "reason_contributions"]
    assert explained.schema["reason_features"] == pl.List(pl.String)
    assert explained.schema["reason_contributions"] == pl.List(pl.Float64)
    assert explained["application_id"].to_list() == chosen["application_id"].to_list()

    monkeypatch.undo()
    reference = contributions(booster, feature_matrix(chosen, SPEC))
    assert explained["reason_features"].to_list() == top_reasons(reference, FEATURES, 3)
    for row, names, amounts in zip(
        reference, explained["reason_features"].to_list(), explained["reason_contributions"].to_list()
    ):
        assert amounts == pytest.approx([row[FEATURES.index(n)] for n in names])
        assert all(a > 0 for a in amounts)


def test_explain_rows_with_numpy_mask_nulls_and_no_rows(booster, sample):
    with_null = pl.Series([True, None, False, True] + [False] * (sample.height - 4))
    explained = explain_rows(booster, sample, SPEC, with_null)
    assert explained["application_id"].to_list() == [sample["application_id"][0], sample["application_id"][3]]

    empty = explain_rows(booster, sample, SPEC, np.zeros(sample.height, dtype=bool))
    assert empty.height == 0
    assert empty.schema["reason_features"] == pl.List(pl.String)

    with pytest.raises(ValueError, match="rows_mask"):
        explain_rows(booster, sample, SPEC, np.ones(3, dtype=bool))


def test_explain_rows_hands_the_masked_rows_predictions_to_the_additivity_check(booster, sample, caplog):
    from aios_pipelines.modeling import tree_shap

    # enough rows for the tabulated path, whose guard reads the predictions
    frame = pl.concat([sample] * (2 * tree_shap.MIN_TABULATED_ROWS // sample.height + 1))
    frame = frame.with_columns(pl.Series("application_id", [f"A{i}" for i in range(frame.height)]))
    mask = np.arange(frame.height) % 3 != 0
    assert mask.sum() >= tree_shap.MIN_TABULATED_ROWS
    predictions = predict_pd(booster, frame, SPEC)
    with caplog.at_level("WARNING"):
        with_predictions = explain_rows(booster, frame, SPEC, mask, max_reasons=3, predictions=predictions)
    assert "do not add up" not in caplog.text
    assert with_predictions.equals(explain_rows(booster, frame, SPEC, mask, max_reasons=3))
    # another row's predictions would not add up: the check sees exactly the masked rows'
    # own, and a mismatch falls back to pred_contrib, with the same reasons
    with caplog.at_level("WARNING"):
        shifted = explain_rows(booster, frame, SPEC, mask, max_reasons=3, predictions=np.roll(predictions, 1))
    assert "do not add up" in caplog.text
    assert shifted["reason_features"].to_list() == with_predictions["reason_features"].to_list()
    with pytest.raises(ValueError, match="predictions have shape"):
        explain_rows(booster, frame, SPEC, mask, predictions=predictions[:-1])


# --- confidence ----------------------------------------------------------------------------


def test_prediction_confidence_is_zero_on_a_threshold_and_grows_in_log_odds():
    thresholds = [0.05, 0.20]
    conf = prediction_confidence([0.05, 0.20, 0.10, 0.5, 0.001, 0.999], thresholds)
    assert conf[0] == pytest.approx(0.0, abs=1e-12)
    assert conf[1] == pytest.approx(0.0, abs=1e-12)
    assert ((conf >= 0) & (conf <= 1)).all()

    # 0.10 is nearer 0.05 or 0.20 in log-odds? logit(.10)-logit(.05) = 0.747,
    # logit(.20)-logit(.10) = 0.811 -> nearest is 0.05, confidence tanh(0.747).
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    assert conf[2] == pytest.approx(np.tanh(logit(0.10) - logit(0.05)))
    assert conf[3] == pytest.approx(np.tanh(logit(0.5) - logit(0.20)))
    assert conf[4] > 0.99 and conf[5] > 0.99

    # Symmetric in odds: doubling or halving the odds of the threshold gives the same score.
    t = 0.2
    odds = t / (1 - t)
    up, down = 2 * odds / (1 + 2 * odds), (odds / 2) / (1 + odds / 2)
    a, b = prediction_confidence([up, down], [t])
    assert a == pytest.approx(b)
    assert a == pytest.approx(np.tanh(np.log(2)))

    # Moving away from the boundary never lowers confidence.
    ladder = prediction_confidence(np.linspace(0.2, 0.9, 30), [t])
    assert (np.diff(ladder) > 0).all()
    assert prediction_confidence(0.3, [t], scale=2.0) < prediction_confidence(0.3, [t])


@pytest.mark.parametrize("thresholds", [[], [0.0], [1.0], [0.3, 1.5]])
def test_prediction_confidence_rejects_bad_thresholds(thresholds):
    with pytest.raises(ValueError):
        prediction_confidence([0.1], thresholds)
