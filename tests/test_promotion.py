"""The promotion gate: the pure decision, and its effect on the registry's aliases.

The registry tests share one SQLite tracking store per module; each test uses its own
registered model name.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.metrics import brier_score_loss, roc_auc_score

from aios_pipelines.modeling.promotion import (
    GateDecision,
    PromotionGateConfig,
    apply_gate,
    decide_promotion,
)
from aios_pipelines.modeling.registry import ModelRegistry, RegistryConfig

FEATURES = ["income", "debt_ratio", "noise"]
CONFIG = PromotionGateConfig()


# ---------------------------------------------------------------- the pure decision


def test_refuses_when_checks_failed_even_with_great_metrics():
    decision = decide_promotion({"auc": 0.95, "brier": 0.05}, None, checks_passed=False, config=CONFIG)
    assert not decision.promote
    assert "checks failed" in decision.reason


def test_refuses_below_min_auc_and_names_the_numbers():
    decision = decide_promotion({"auc": 0.61, "brier": 0.2}, None, checks_passed=True, config=CONFIG)
    assert not decision.promote
    assert "0.6100" in decision.reason and "0.6500" in decision.reason


def test_first_model_promoted_when_no_champion():
    decision = decide_promotion({"auc": 0.70, "brier": 0.2}, None, checks_passed=True, config=CONFIG)
    assert decision.promote
    assert "no champion" in decision.reason
    assert decision.champion_metrics is None
    assert decision.candidate_metrics == {"auc": 0.70, "brier": 0.2}


@pytest.mark.parametrize(
    ("candidate_auc", "promote"),
    [(0.795, True), (0.7905, True), (0.789, False), (0.70, False)],
)
def test_auc_drop_tolerance_against_champion(candidate_auc, promote):
    decision = decide_promotion(
        {"auc": candidate_auc, "brier": 0.15},
        {"auc": 0.80, "brier": 0.15},
        checks_passed=True,
        config=CONFIG,
    )
    assert decision.promote is promote
    if not promote:
        assert f"candidate AUC {candidate_auc:.4f} < champion AUC 0.8000" in decision.reason


def test_refuses_brier_increase_beyond_tolerance():
    decision = decide_promotion(
        {"auc": 0.81, "brier": 0.171}, {"auc": 0.80, "brier": 0.16}, checks_passed=True, config=CONFIG
    )
    assert not decision.promote
    assert "candidate Brier 0.1710 > champion Brier 0.1600" in decision.reason
    ok = decide_promotion(
        {"auc": 0.81, "brier": 0.169}, {"auc": 0.80, "brier": 0.16}, checks_passed=True, config=CONFIG
    )
    assert ok.promote


def test_names_every_failed_condition():
    decision = decide_promotion(
        {"auc": 0.70, "brier": 0.30}, {"auc": 0.80, "brier": 0.15}, checks_passed=True, config=CONFIG
    )
    assert not decision.promote
    assert "AUC" in decision.reason and "Brier" in decision.reason


def test_missing_or_nan_metrics_are_refused():
    assert not decide_promotion({"auc": float("nan")}, None, True, CONFIG).promote
    assert not decide_promotion({"brier": 0.1}, None, True, CONFIG).promote
    no_brier = decide_promotion({"auc": 0.8}, {"auc": 0.8, "brier": 0.1}, True, CONFIG)
    assert not no_brier.promote and "brier" in no_brier.reason


def test_thresholds_come_from_the_config():
    strict = PromotionGateConfig(max_auc_drop=0.0, min_auc=0.9, max_brier_increase=0.0)
    assert not decide_promotion({"auc": 0.85, "brier": 0.1}, None, True, strict).promote
    assert decide_promotion({"auc": 0.85, "brier": 0.1}, None, True, PromotionGateConfig(min_auc=0.8)).promote


# ---------------------------------------------------------------- real models in a registry


def make_data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(0, 1, n), rng.normal(0, 1, n), rng.normal(0, 1, n)])
    logit = 1.6 * X[:, 0] - 1.2 * X[:, 1]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def train(X: np.ndarray, y: np.ndarray, rounds: int = 20) -> lgb.Booster:
    params = {"objective": "binary", "verbose": -1, "num_leaves": 7, "learning_rate": 0.1, "seed": 1}
    return lgb.train(params, lgb.Dataset(X, y, feature_name=FEATURES), num_boost_round=rounds)


def score(booster: lgb.Booster, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    p = booster.predict(X)
    return {"auc": float(roc_auc_score(y, p)), "brier": float(brier_score_loss(y, p))}


@pytest.fixture(scope="module")
def oot() -> tuple[np.ndarray, np.ndarray]:
    return make_data(seed=100, n=1500)


@pytest.fixture(scope="module")
def good_booster() -> lgb.Booster:
    return train(*make_data(seed=1, n=2000))


@pytest.fixture(scope="module")
def weak_booster() -> lgb.Booster:
    """Trained on the noise feature and one weak signal: clearly worse, still above 0.5."""
    X, y = make_data(seed=2, n=2000)
    X = X.copy()
    X[:, 0] = np.random.default_rng(3).normal(size=len(X))  # the strongest signal destroyed
    return train(X, y)


def fresh_tracking_db(tmp_path_factory, target: Path) -> Path:
    """An empty, migrated MLflow SQLite database at ``target``.

    A new database migrates its schema on first use (seconds, more on a busy machine), so
    one is migrated once per test session and copied; each store is still its own file.
    """
    template = tmp_path_factory.getbasetemp() / "mlflow_template" / "mlflow.db"
    if not template.exists():
        template.parent.mkdir(parents=True, exist_ok=True)
        MlflowClient(tracking_uri=f"sqlite:///{template.as_posix()}").search_experiments()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)
    return target


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mlflow_gate")
    fresh_tracking_db(tmp_path_factory, folder / "mlflow.db")
    return folder


def registry_for(store, name: str) -> ModelRegistry:
    return ModelRegistry(
        RegistryConfig(
            tracking_uri=f"sqlite:///{(store / 'mlflow.db').as_posix()}",
            artifact_location=(store / "artifacts").as_uri(),
            model_name=name,
        )
    )


def register(registry: ModelRegistry, booster: lgb.Booster, metrics: dict[str, float]):
    return registry.log_and_register(
        booster,
        metrics=metrics,
        params={"num_leaves": 7},
        feature_spec={"features": FEATURES, "categorical": [], "monotone": {}},
        feature_ranges={f: [-5.0, 5.0] for f in FEATURES},
        contract_fingerprint="contract-1",
        policy_version=None,
        data_snapshot_hash="snap-1",
        dagster_run_id=None,
        artifacts={},
        oot_window=("2024-04-01", "2024-06-30"),
    )


def run_gate(registry: ModelRegistry, booster: lgb.Booster, oot, config=CONFIG, checks_passed=True):
    """What the pipeline does: score the candidate and re-score the champion on the same OOT."""
    candidate_metrics = score(booster, *oot)
    candidate = register(registry, booster, candidate_metrics)
    champion_metrics = None
    if registry.champion() is not None:
        champion_booster, _ = registry.load_booster("champion")
        champion_metrics = score(champion_booster, *oot)
    decision = decide_promotion(candidate_metrics, champion_metrics, checks_passed, config)
    return apply_gate(registry, candidate, decision), decision


def test_first_model_is_promoted_when_the_gate_passes(store, good_booster, oot):
    registry = registry_for(store, "gate_first")
    info, decision = run_gate(registry, good_booster, oot)
    assert decision.promote, decision.reason
    assert info.aliases == ["champion"]
    assert registry.champion().version == info.version == 1
    assert info.tags["gate_decision"] == "promoted"
    assert info.status_note.startswith("promoted: no champion yet")
    event = registry.alias_history()[-1]
    assert (event["alias"], event["to_version"], event["actor"]) == ("champion", 1, "promotion_gate")


def test_worse_model_is_refused_and_stays_challenger(store, good_booster, weak_booster, oot):
    registry = registry_for(store, "gate_worse")
    run_gate(registry, good_booster, oot)
    champion_before = registry.champion()

    # min_auc lowered so that the comparison with the champion is what refuses
    lenient = PromotionGateConfig(min_auc=0.5)
    info, decision = run_gate(registry, weak_booster, oot, config=lenient)
    assert not decision.promote
    assert decision.candidate_metrics["auc"] < decision.champion_metrics["auc"] - lenient.max_auc_drop
    assert "champion AUC" in decision.reason and "same out-of-time window" in decision.reason

    assert registry.champion().version == champion_before.version == 1
    refused = registry.get_version(info.version)
    assert refused.aliases == ["challenger"]
    assert refused.tags["gate_decision"] == "refused"
    assert refused.tags["gate_reason"] == decision.reason
    assert refused.status_note == decision.reason and decision.reason.startswith("refused: ")
    assert registry.alias_history()[-1]["alias"] == "challenger"


def test_failed_checks_refuse_a_good_model(store, good_booster, oot):
    registry = registry_for(store, "gate_checks")
    info, decision = run_gate(registry, good_booster, oot, checks_passed=False)
    assert not decision.promote
    assert registry.champion() is None
    assert registry.get_version(info.version).aliases == ["challenger"]


def test_equal_model_promoted_then_rolled_back(store, good_booster, oot):
    registry = registry_for(store, "gate_rollback")
    run_gate(registry, good_booster, oot)
    info, decision = run_gate(registry, good_booster, oot)  # same model: within tolerance
    assert decision.promote, decision.reason
    assert registry.champion().version == info.version == 2
    assert registry.rollback(actor="oncall", reason="back out").version == 1


def test_apply_gate_uses_the_decision_not_the_metrics(store, good_booster, oot):
    registry = registry_for(store, "gate_apply")
    candidate = register(registry, good_booster, score(good_booster, *oot))
    refused = GateDecision(False, "refused: manual hold", candidate.metrics, None)
    info = apply_gate(registry, candidate, refused, actor="risk_officer")
    assert info.aliases == ["challenger"] and registry.champion() is None
    assert registry.alias_history()[-1]["actor"] == "risk_officer"
