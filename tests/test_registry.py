"""The MLflow model registry: versions, model cards, aliases, rollback, damaged artifacts.

One SQLite tracking store per module (a fresh database migrates its schema, which takes
seconds); each test registers under its own model name, so tests do not depend on order.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pytest
import sqlalchemy
from mlflow import MlflowClient

from aios_pipelines.modeling.registry import (
    CHALLENGER_ALIAS,
    ModelRegistry,
    ModelUnavailableError,
    ModelVersionNotFoundError,
    RegistryConfig,
    RollbackError,
    default_registry_config,
)
from aios_pipelines.settings import AiosPaths

FEATURES = ["income", "debt_ratio", "age"]


def make_data(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [rng.normal(50, 15, n), rng.uniform(0, 1, n), rng.integers(18, 80, n).astype(float)]
    )
    logit = -0.05 * (X[:, 0] - 50) + 3.0 * (X[:, 1] - 0.5)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def train_booster(seed: int = 0, rounds: int = 8) -> lgb.Booster:
    X, y = make_data(seed)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 7, "seed": seed}
    return lgb.train(params, lgb.Dataset(X, y, feature_name=FEATURES), num_boost_round=rounds)


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
    folder = tmp_path_factory.mktemp("mlflow_store")
    fresh_tracking_db(tmp_path_factory, folder / "mlflow.db")
    return folder


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def tracking_uri(request: pytest.FixtureRequest, store: Path) -> str:
    """The module's SQLite tracking store, or an MLflow backend database on the session's
    PostgreSQL server (tests/conftest.py): the production registry's backend."""
    if request.param == "sqlite":
        return f"sqlite:///{(store / 'mlflow.db').as_posix()}"
    return request.getfixturevalue("postgres_server").create_database("aios_test_mlflow_registry")


def registry_for(store: Path, model_name: str, tracking_uri: str | None = None) -> ModelRegistry:
    return ModelRegistry(
        RegistryConfig(
            tracking_uri=tracking_uri or f"sqlite:///{(store / 'mlflow.db').as_posix()}",
            artifact_location=(store / "artifacts").as_uri(),
            model_name=model_name,
        )
    )


@pytest.fixture(scope="module")
def plot(store) -> Path:
    path = store / "inputs" / "calibration.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
    return path


def register(registry: ModelRegistry, booster: lgb.Booster, plot: Path, auc: float = 0.75, **overrides):
    kwargs = dict(
        metrics={"auc": auc, "brier": 0.18},
        params={"num_leaves": 7, "learning_rate": 0.1, "monotone_constraints": [-1, 1, 0]},
        feature_spec={"features": FEATURES, "categorical": [], "monotone": {"income": -1, "debt_ratio": 1}},
        feature_ranges={"income": [5.0, 120.0], "debt_ratio": [0.0, 1.0], "age": [18, 79]},
        contract_fingerprint="contract-abc123",
        policy_version="policy-2024.1",
        data_snapshot_hash="snap-" + "f" * 60,
        dagster_run_id="0f1e2d3c-run",
        artifacts={"calibration_plot": plot},
        oot_window=("2024-01-01", "2024-03-31"),
    )
    kwargs.update(overrides)
    return registry.log_and_register(booster, **kwargs)


def test_register_creates_version_with_metrics_tags_and_model_card(store, plot):
    registry = registry_for(store, "reg_card")
    info = register(registry, train_booster(1), plot, auc=0.7712)

    assert info.version == 1
    assert info.metrics["auc"] == pytest.approx(0.7712)
    assert info.metrics["brier"] == pytest.approx(0.18)
    assert info.tags["data_snapshot_hash"] == "snap-" + "f" * 60
    assert info.tags["contract_fingerprint"] == "contract-abc123"
    assert info.tags["dagster_run_id"] == "0f1e2d3c-run"
    assert info.tags["oot_window"] == "2024-01-01/2024-03-31"
    assert info.tags["policy_version"] == "policy-2024.1"
    assert len(info.tags["model_sha256"]) == 64
    assert info.aliases == [] and info.status_note == ""
    assert isinstance(info.created_at, datetime) and info.created_at.tzinfo is not None
    assert info.model_id and info.source == f"models:/{info.model_id}"

    run = registry._client.get_run(info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["monotone_constraints"] == "[-1, 1, 0]"
    assert run.data.tags["contract_fingerprint"] == "contract-abc123"
    logged = {a.path for a in registry._client.list_artifacts(info.run_id)}
    assert {"model_card.json", "calibration_plot.png"} <= logged

    card_path = registry._client.download_artifacts(info.run_id, "model_card.json", str(store / "dl_card"))
    card = json.loads(Path(card_path).read_text())
    assert card["feature_spec"]["features"] == FEATURES
    assert card["feature_spec"]["monotone"] == {"income": -1, "debt_ratio": 1}
    assert card["feature_ranges"]["debt_ratio"] == [0.0, 1.0]
    assert card["data_snapshot_hash"] == info.tags["data_snapshot_hash"]
    assert card["contract_fingerprint"] == "contract-abc123"
    assert card["oot_window"] == {"start": "2024-01-01", "end": "2024-03-31"}
    assert card["model_id"] == info.model_id
    assert "model.lgb" in card["model_files_sha256"]

    assert [v.version for v in registry.list_versions()] == [1]
    assert registry.champion() is None


def test_versions_listed_newest_first_and_missing_version_is_an_error(store, plot):
    registry = registry_for(store, "reg_list")
    for seed in (2, 3, 4):
        register(registry, train_booster(seed), plot)
    assert [v.version for v in registry.list_versions()] == [3, 2, 1]
    assert registry.get_version("2").version == 2
    with pytest.raises(ModelVersionNotFoundError, match="no version 9"):
        registry.get_version(9)


def test_feature_spec_must_match_the_booster(store, plot):
    registry = registry_for(store, "reg_spec")
    with pytest.raises(ValueError, match="differs from the booster"):
        register(registry, train_booster(5), plot, feature_spec={"features": ["a", "b", "c"]})
    assert registry.list_versions() == []


def test_failure_while_logging_leaves_a_failed_run_and_no_version(store, plot, tmp_path):
    registry = registry_for(store, "reg_failure")
    with pytest.raises(ValueError, match="does not exist"):
        register(registry, train_booster(5), plot, artifacts={"missing": tmp_path / "nope.png"})
    with pytest.raises(Exception, match="bad!metric"):
        register(registry, train_booster(5), plot, metrics={"auc": 0.7, "bad!metric": 1.0})
    assert registry.list_versions() == []
    runs = registry._client.search_runs([registry.experiment_id], order_by=["attributes.start_time DESC"])
    assert runs[0].info.status == "FAILED"


def test_promote_moves_champion_and_records_history(store, plot, tracking_uri):
    registry = registry_for(store, "reg_promote", tracking_uri)
    v1 = register(registry, train_booster(6), plot)
    v2 = register(registry, train_booster(7), plot)

    registry.promote(v1.version, actor="alice", reason="first model")
    assert registry.champion().version == 1
    promoted = registry.promote(v2.version, actor="bob", reason="better on OOT")
    assert promoted.aliases == ["champion"]
    assert registry.champion().version == 2
    assert registry.get_version(1).aliases == []

    # promoting the current champion again changes nothing and records nothing
    registry.promote(2, actor="bob", reason="re-run")
    history = registry.alias_history()
    assert [(h["alias"], h["from_version"], h["to_version"], h["actor"]) for h in history] == [
        ("champion", None, 1, "alice"),
        ("champion", 1, 2, "bob"),
    ]
    assert history[1]["reason"] == "better on OOT"
    assert datetime.fromisoformat(history[1]["at"]).tzinfo is not None

    with pytest.raises(ValueError, match="reason"):
        registry.promote(1, actor="bob", reason="  ")


def test_rollback_walks_back_then_errors(store, plot, tracking_uri):
    registry = registry_for(store, "reg_rollback", tracking_uri)
    for seed in (8, 9, 10):
        info = register(registry, train_booster(seed), plot)
        registry.promote(info.version, actor="gate", reason=f"v{info.version}")
    assert registry.champion().version == 3

    assert registry.rollback(actor="oncall", reason="v3 drifts").version == 2
    assert registry.champion().version == 2
    assert registry.rollback(actor="oncall", reason="v2 too").version == 1
    assert registry.champion().version == 1
    with pytest.raises(RollbackError, match="no previous champion"):
        registry.rollback(actor="oncall", reason="again")
    assert registry.champion().version == 1

    # a new promotion after rollbacks stacks on the current champion
    registry.promote(3, actor="alice", reason="fixed")
    assert registry.rollback(actor="oncall", reason="not fixed").version == 1
    last = registry.alias_history()[-1]
    assert (last["action"], last["from_version"], last["to_version"], last["actor"]) == (
        "rollback", 3, 1, "oncall"
    )


def test_rollback_without_champion_errors(store, plot):
    registry = registry_for(store, "reg_rollback_empty")
    register(registry, train_booster(11), plot)
    with pytest.raises(RollbackError, match="no champion"):
        registry.rollback(actor="oncall", reason="nothing to do")


def test_rollback_refuses_when_alias_moved_outside_the_registry(store, plot):
    registry = registry_for(store, "reg_rollback_outside")
    for seed in (12, 13):
        info = register(registry, train_booster(seed), plot)
        registry.promote(info.version, actor="gate", reason="ok")
    registry._client.set_registered_model_alias("reg_rollback_outside", "champion", "1")
    with pytest.raises(RollbackError, match="moved outside"):
        registry.rollback(actor="oncall", reason="x")


def test_load_champion_predicts_like_the_original(store, plot, tracking_uri):
    registry = registry_for(store, "reg_load", tracking_uri)
    assert registry._client.tracking_uri == tracking_uri
    booster = train_booster(14, rounds=12)
    info = register(registry, booster, plot)
    registry.promote(info.version, actor="alice", reason="first")

    loaded, card = registry.load_booster("champion")
    X, _ = make_data(99, n=200)
    np.testing.assert_array_equal(loaded.predict(X), booster.predict(X))
    assert card["version"] == info.version
    assert card["feature_spec"]["features"] == FEATURES
    by_number, _ = registry.load_booster(info.version)
    np.testing.assert_array_equal(by_number.predict(X), booster.predict(X))

    # the alias lives in the configured backend database (SQLite file or PostgreSQL)
    engine = sqlalchemy.create_engine(tracking_uri)
    with engine.connect() as conn:
        stored = conn.execute(sqlalchemy.text(
            "select version from registered_model_aliases where name = 'reg_load' and alias = 'champion'")).scalar_one()
    engine.dispose()
    assert stored == info.version


def test_load_without_champion_or_unknown_version_raises(store, plot):
    registry = registry_for(store, "reg_load_missing")
    with pytest.raises(ModelUnavailableError, match="alias 'champion'"):
        registry.load_booster()
    register(registry, train_booster(15), plot)
    with pytest.raises(ModelUnavailableError, match="no version 5"):
        registry.load_booster(5)


def _champion_model_folder(registry: ModelRegistry, store: Path) -> tuple[int, Path]:
    champion = registry.champion()
    folder = store / "artifacts" / "models" / champion.model_id / "artifacts"
    assert (folder / "model.lgb").is_file()
    return champion.version, folder


def test_deleted_champion_artifacts_raise_model_unavailable(store, plot):
    registry = registry_for(store, "reg_deleted")
    register(registry, train_booster(16), plot)
    info = register(registry, train_booster(17), plot)
    registry.promote(info.version, actor="alice", reason="ok")
    version, folder = _champion_model_folder(registry, store)

    shutil.rmtree(folder.parent)
    with pytest.raises(ModelUnavailableError, match=f"version {version} of registered model 'reg_deleted'"):
        registry.load_booster("champion")
    registry.load_booster(1)  # the other version is untouched


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda text: text[: len(text) // 2], id="truncated"),  # LightGBM loads this silently
        pytest.param(lambda text: "garbage\n", id="garbage"),
    ],
)
def test_corrupted_champion_model_raises_model_unavailable(store, plot, damage, request):
    name = f"reg_corrupt_{request.node.callspec.id}"
    registry = registry_for(store, name)
    info = register(registry, train_booster(18), plot)
    registry.promote(info.version, actor="alice", reason="ok")
    version, folder = _champion_model_folder(registry, store)

    model_file = folder / "model.lgb"
    model_file.write_text(damage(model_file.read_text()))
    with pytest.raises(ModelUnavailableError, match=rf"version {version} .*model\.lgb"):
        registry.load_booster("champion")


def test_missing_model_card_raises_model_unavailable(store, plot):
    registry = registry_for(store, "reg_no_card")
    info = register(registry, train_booster(19), plot)
    registry.promote(info.version, actor="alice", reason="ok")
    run_folder = store / "artifacts" / info.run_id / "artifacts"
    (run_folder / "model_card.json").unlink()
    with pytest.raises(ModelUnavailableError, match=f"version {info.version} .*model_card.json"):
        registry.load_booster("champion")


def test_challenger_alias_and_tags(store, plot):
    registry = registry_for(store, "reg_challenger")
    info = register(registry, train_booster(20), plot)
    registry.set_alias(CHALLENGER_ALIAS, info.version, actor="gate", reason="kept for comparison")
    registry.tag_version(info.version, {"gate_decision": "refused", "gate_reason": "AUC too low"})
    got = registry.get_version(info.version)
    assert got.aliases == ["challenger"]
    assert got.status_note == "refused: AUC too low"
    # promotion takes the challenger alias away
    registry.promote(info.version, actor="alice", reason="override")
    assert registry.get_version(info.version).aliases == ["champion"]
    assert registry.alias_history()[-1]["action"] == "remove"
    for reserved in ("latest", "v2", "3"):
        with pytest.raises(ValueError, match="reserved"):
            registry.set_alias(reserved, info.version, actor="alice", reason="x")


def test_two_registries_in_two_directories_are_isolated(tmp_path, tmp_path_factory, store, plot):
    here = registry_for(store, "reg_isolated")
    register(here, train_booster(21), plot)
    here.promote(1, actor="alice", reason="ok")

    other_paths = AiosPaths(tmp_path / "other_home")
    fresh_tracking_db(tmp_path_factory, other_paths.mlflow_db)
    uri_before = mlflow.get_tracking_uri()
    elsewhere = ModelRegistry(default_registry_config(other_paths))
    assert elsewhere.config.tracking_uri.startswith("sqlite:////")
    assert (tmp_path / "other_home" / "mlflow" / "artifacts").is_dir()
    assert elsewhere.list_versions() == []
    assert elsewhere.champion() is None
    with pytest.raises(ModelUnavailableError):
        elsewhere.load_booster("champion")

    # the same model name as `here`, in the other directory
    other = ModelRegistry(
        RegistryConfig(
            elsewhere.config.tracking_uri, elsewhere.config.artifact_location, model_name="reg_isolated"
        )
    )
    assert other.list_versions() == []
    register(other, train_booster(22), plot)
    assert [v.version for v in other.list_versions()] == [1]
    assert here.champion().version == 1 and len(here.list_versions()) == 1
    assert other.champion() is None
    assert mlflow.get_tracking_uri() == uri_before  # the process-global URI is restored


def test_config_refuses_relative_sqlite_and_file_store():
    with pytest.raises(ValueError, match="four slashes"):
        RegistryConfig("sqlite:///mlflow.db", "file:///tmp/a")
    with pytest.raises(ValueError, match="file store"):
        RegistryConfig("file:///tmp/mlruns", "file:///tmp/a")
    with pytest.raises(ValueError, match="URI"):
        RegistryConfig("sqlite:////tmp/m.db", "/tmp/a")
    config = default_registry_config(AiosPaths(Path("/data/home")))
    assert config.tracking_uri == "sqlite:////data/home/mlflow/mlflow.db"
    assert config.artifact_location == "file:///data/home/mlflow/artifacts"
    assert config.model_name == "credit_risk_model"
