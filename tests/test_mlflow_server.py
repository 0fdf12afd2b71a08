"""The model registry through an MLflow tracking server: the multi-machine form.

One ``mlflow server`` per module, started as a subprocess on 127.0.0.1 and a free port, with
its backend store in a fresh database on the session's PostgreSQL server (tests/conftest.py)
and its artifacts proxied (``--serve-artifacts``) into a temporary folder. Two "machines" are
two data directories and two working directories that share nothing but the server's URL:
machine A (this process) registers and promotes a model, machine B (a separate Python process
with an empty data directory; A's is moved away first) loads the champion by alias and must
predict exactly as A's booster did. Machine A does it once through the registry itself and once
through the ``credit_risk_model`` asset with the resources the pipeline builds from
``AIOS_MLFLOW_TRACKING_URI``. Also: an experiment on the server whose artifacts are in a local
folder is refused before anything is logged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import numpy as np
import polars as pl
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from aios_pipelines.defs.modeling.assets import ModelTrainingConfig, credit_risk_model
from aios_pipelines.defs.resources import default_resources
from aios_pipelines.features.build import build_features
from aios_pipelines.ingestion.contract import load_contract
from aios_pipelines.modeling.registry import (
    CHAMPION_ALIAS,
    MODEL_CARD_FILE,
    REGISTERED_MODEL_NAME,
    ModelRegistry,
    RegistryConfig,
    RegistryError,
)
from aios_pipelines.modeling.training import FeatureSpec, feature_matrix
from aios_pipelines.modeling.training_set import build_training_set
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH, AiosPaths
from aios_pipelines.storage.postgres_server import HOST, PostgresServer, free_port
from aios_pipelines.storage.warehouse import Warehouse
from aios_pipelines.synthetic.generator import generate_applications

from test_registry import make_data, register, train_booster

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_SECONDS = 180  # about 12 s on an idle 2-CPU machine
MLFLOW_CLI = Path(sys.executable).with_name("mlflow")
# Files MLflow writes into the working directory when a client or server falls back to its
# defaults (a SQLite store, a file store, the server's default artifact folder).
STRAY_DEFAULTS = ("mlruns", "mlartifacts", "mlflow.db")
TRAINING_START = date(2026, 3, 2)


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any MLflow or AIOS setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AIOS_"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", GIT_PYTHON_REFRESH="quiet", **extra)
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server's process group (mlflow server, its uvicorn worker); kill it if it hangs."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def mlflow_server(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    backend = postgres_server.create_database("aios_test_mlflow_server")
    artifacts = tmp_path_factory.mktemp("mlflow_server_artifacts")
    workdir = tmp_path_factory.mktemp("mlflow_server_cwd")
    port = free_port()
    url = f"http://{HOST}:{port}"
    log_path = workdir / "server.log"
    command = [
        str(MLFLOW_CLI), "server", "--host", HOST, "--port", str(port), "--workers", "1",
        "--backend-store-uri", backend,
        "--artifacts-destination", str(artifacts), "--serve-artifacts",
    ]
    # The server's job runner (GenAI jobs: huey consumers, 7 processes) is not needed by the
    # registry and would compete for the 2 CPUs.
    env = _clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        started = time.monotonic()
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{_tail(log_path)}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200 and response.read().strip() == b"OK":
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() - started > STARTUP_TIMEOUT_SECONDS:
                pytest.fail(f"mlflow server did not answer /health within {STARTUP_TIMEOUT_SECONDS} s:\n"
                            f"{_tail(log_path)}", pytrace=False)
            time.sleep(0.3)
        yield SimpleNamespace(url=url, artifacts=artifacts, workdir=workdir, backend=backend, log=log_path,
                              startup_seconds=time.monotonic() - started)
    finally:
        _stop(proc)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# Machine B: its own data directory and working directory, nothing but the server's URL
# (AIOS_MLFLOW_TRACKING_URI) in common with machine A. The registry is configured as the
# online decision service configures it (decisioning/online.py: OnlineDecisions.from_environment).
MACHINE_B = r"""
import json, os, sys
from pathlib import Path

import numpy as np

from aios_pipelines.modeling.registry import ModelRegistry, RegistryConfig
from aios_pipelines.settings import aios_paths

paths = aios_paths()
registry = ModelRegistry(RegistryConfig(
    tracking_uri=os.environ["AIOS_MLFLOW_TRACKING_URI"], artifact_location=paths.mlflow_artifact_uri,
    model_name=sys.argv[1]))
rows = np.asarray(json.loads(Path(sys.argv[2]).read_text()), dtype=float)
booster, card = registry.load_booster("champion")
champion = registry.champion()
Path(sys.argv[3]).write_text(json.dumps({
    "predictions": booster.predict(rows).tolist(),
    "card_version": card["version"],
    "card_data_snapshot_hash": card["data_snapshot_hash"],
    "version": champion.version,
    "aliases": champion.aliases,
    "metrics": champion.metrics,
    "tags": champion.tags,
    "history": registry.alias_history(),
}))
"""


def run_machine_b(server: SimpleNamespace, root: Path, model_name: str, rows: np.ndarray) -> dict:
    """Run MACHINE_B in a new process with ``root/home`` as its data directory and
    ``root/cwd`` as its working directory; its findings as a dict."""
    home, cwd = root / "home", root / "cwd"
    cwd.mkdir(parents=True)
    rows_file, out_file = cwd / "rows.json", cwd / "out.json"
    rows_file.write_text(json.dumps(np.asarray(rows, dtype=float).tolist()))  # NaN stays NaN
    completed = subprocess.run(
        [sys.executable, "-c", MACHINE_B, model_name, str(rows_file), str(out_file)],
        cwd=cwd, env=_clean_env(AIOS_HOME=str(home), AIOS_MLFLOW_TRACKING_URI=server.url),
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(out_file.read_text())


def test_machine_b_loads_the_champion_that_machine_a_registered(
        mlflow_server: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Its own experiment and model name: the training-asset test below uses the defaults.
    experiment_name, model_name = "credit_risk_direct", "credit_risk_model_direct"
    # ---------------- machine A: this process, the registry configured as the pipeline does
    home_a, cwd_a = tmp_path / "machine_a" / "home", tmp_path / "machine_a" / "cwd"
    cwd_a.mkdir(parents=True)
    home_a.mkdir()  # an empty data directory: the registry must put nothing in it
    monkeypatch.chdir(cwd_a)
    paths_a = AiosPaths(home_a)
    registry_a = ModelRegistry(RegistryConfig(mlflow_server.url, paths_a.mlflow_artifact_uri,
                                              experiment_name=experiment_name, model_name=model_name))
    experiment = registry_a._client.get_experiment(registry_a.experiment_id)
    assert experiment.artifact_location.startswith("mlflow-artifacts:/"), experiment.artifact_location

    plot = tmp_path / "machine_a" / "inputs" / "calibration.png"
    plot.parent.mkdir(parents=True)
    plot.write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
    booster = train_booster(31, rounds=10)
    snapshot = "snap-" + "a" * 60
    info = register(registry_a, booster, plot, auc=0.7342, data_snapshot_hash=snapshot)
    registry_a.promote(info.version, actor="machine-a", reason="first champion on the server")
    assert registry_a.champion().version == info.version

    rows, _ = make_data(77, n=25)
    expected = booster.predict(rows)

    # the artifacts are in the server's destination, under the experiment's id
    stored = _files(mlflow_server.artifacts)
    experiment_folder = mlflow_server.artifacts / experiment.artifact_location.removeprefix("mlflow-artifacts:/")
    model_lgb = experiment_folder / "models" / info.model_id / "artifacts" / "model.lgb"
    card_file = experiment_folder / info.run_id / "artifacts" / MODEL_CARD_FILE
    assert model_lgb in stored and card_file in stored, [p.relative_to(mlflow_server.artifacts) for p in stored]
    assert (experiment_folder / info.run_id / "artifacts" / "calibration_plot.png") in stored
    card = json.loads(card_file.read_text())
    assert card["model_id"] == info.model_id and card["data_snapshot_hash"] == snapshot

    # ---------------- machine B: another process, another (empty) data directory
    # machine A's data directory is out of reach: B could not read A's files even by accident
    hidden_a = home_a.rename(tmp_path / "machine_a" / "home_moved_away")
    seen = run_machine_b(mlflow_server, tmp_path / "machine_b", model_name, rows)

    np.testing.assert_array_equal(np.array(seen["predictions"]), expected)
    assert seen["version"] == seen["card_version"] == info.version
    assert seen["aliases"] == [CHAMPION_ALIAS]
    assert seen["metrics"]["auc"] == pytest.approx(0.7342)
    assert seen["tags"]["data_snapshot_hash"] == seen["card_data_snapshot_hash"] == snapshot
    assert seen["tags"]["model_sha256"] == info.tags["model_sha256"]
    assert seen["tags"]["contract_fingerprint"] == "contract-abc123"
    assert [(h["actor"], h["to_version"]) for h in seen["history"]] == [("machine-a", info.version)]

    # no client wrote anything local: no artifact folder with files, no MLflow defaults in
    # either working directory, nothing at all under B's data directory
    assert not (hidden_a / "mlflow").exists()
    assert not (tmp_path / "machine_b" / "home" / "mlflow").exists()
    for cwd in (cwd_a, tmp_path / "machine_b" / "cwd", mlflow_server.workdir):
        assert not [name for name in STRAY_DEFAULTS if (cwd / name).exists()], sorted(os.listdir(cwd))


def test_experiment_with_a_local_artifact_folder_on_a_server_is_refused(
        mlflow_server: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The trap: an experiment created on the server with a client's local folder (what the
    registry did before for a missing experiment) is refused before anything is logged."""
    monkeypatch.chdir(tmp_path)
    name, model_name = "credit_risk_local_trap", "credit_risk_model_trap"
    local = tmp_path / "machine_a_artifacts"
    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    experiment_id = client.create_experiment(name, artifact_location=local.as_uri())

    with pytest.raises(RegistryError) as excinfo:
        ModelRegistry(RegistryConfig(mlflow_server.url, local.as_uri(), experiment_name=name,
                                     model_name=model_name))
    message = str(excinfo.value)
    assert f"experiment '{name}'" in message
    assert local.as_uri() in message and "--serve-artifacts" in message

    # nothing was logged or registered, and nothing written locally
    assert client.search_runs([experiment_id]) == []
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST|not found"):
        client.get_registered_model(model_name)
    assert not local.exists()



# ---------------------------------------------------------------------- the training asset

def _training_set(days: int = 30, per_day: int = 150) -> pl.DataFrame:
    """A small training set as the ``training_set`` asset builds it: synthetic applications of
    ``days`` days, their features, outcomes observed when the 60-day window closed."""
    contract = load_contract(DEFAULT_CONTRACT_PATH)
    window = contract.performance_window_days
    features, outcomes = [], []
    for offset in range(days):
        day = TRAINING_START + timedelta(days=offset)
        applications, truth = generate_applications(day, per_day, seed=5)
        features.append(build_features(applications, contract.applications))
        outcomes.append(truth.select("application_id", "defaulted").with_columns(
            outcome_date=pl.lit(day + timedelta(days=window))))
    last_outcome = TRAINING_START + timedelta(days=days - 1 + window)
    return build_training_set(pl.concat(features), pl.concat(outcomes), contract.outcomes,
                              as_of=last_outcome, performance_window_days=window)


def test_training_asset_registers_a_champion_that_machine_b_loads(
        mlflow_server: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The pipeline's own path: the ``credit_risk_model`` asset trains, registers and (the
    promotion gate, no champion yet) promotes through the resources the pipeline builds from
    AIOS_MLFLOW_TRACKING_URI; machine B scores the asset's reference rows as it did."""
    home_a, cwd_a = tmp_path / "machine_a" / "home", tmp_path / "machine_a" / "cwd"
    cwd_a.mkdir(parents=True)
    monkeypatch.chdir(cwd_a)
    for name in ("AIOS_WAREHOUSE_URL", "AIOS_REVIEW_STORE_URL", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIOS_HOME", str(home_a))
    monkeypatch.setenv("AIOS_MLFLOW_TRACKING_URI", mlflow_server.url)
    paths_a = AiosPaths(home_a)
    resources = default_resources(paths_a)
    assert resources["model_registry"].tracking_uri == mlflow_server.url
    Warehouse(paths_a.warehouse).replace_table("training_set", _training_set())

    result = dg.materialize(
        [credit_risk_model], resources=resources,
        run_config=dg.RunConfig(ops={"credit_risk_model": ModelTrainingConfig(
            oot_days=5, min_data_in_leaf=20, max_rounds=60, min_oot_auc=0.6)}),
    )
    assert result.success
    meta = {k: v.value for k, v in result.asset_materializations_for_node("credit_risk_model")[0].metadata.items()}
    assert meta["mlflow_tracking_uri"] == mlflow_server.url
    assert meta["gate_decision"] == "promoted", meta["gate_reason"]
    version = int(meta["model_version"])

    registry_a = resources["model_registry"].get()
    info = registry_a.get_version(version)
    experiment = registry_a._client.get_experiment(registry_a.experiment_id)
    assert experiment.name == "credit_risk" and experiment.artifact_location.startswith("mlflow-artifacts:/")
    experiment_folder = mlflow_server.artifacts / experiment.artifact_location.removeprefix("mlflow-artifacts:/")
    assert (experiment_folder / "models" / info.model_id / "artifacts" / "model.lgb").is_file()
    assert (experiment_folder / info.run_id / "artifacts" / "reference_sample.parquet").is_file()

    # The asset's own predictions of the original booster: the reference sample it wrote
    # into machine A's reports folder, with the PD of every row.
    [reference_file] = paths_a.reports.glob("models/*/reference_sample.parquet")
    reference = pl.read_parquet(reference_file).head(40)
    spec = FeatureSpec.from_dict(registry_a.load_booster(version)[1]["feature_spec"])
    rows = feature_matrix(reference, spec)

    hidden_a = home_a.rename(tmp_path / "machine_a" / "home_moved_away")
    seen = run_machine_b(mlflow_server, tmp_path / "machine_b", REGISTERED_MODEL_NAME, rows)
    np.testing.assert_array_equal(np.array(seen["predictions"]), reference["pd"].to_numpy())
    assert seen["version"] == version and seen["aliases"] == [CHAMPION_ALIAS]
    assert seen["tags"]["data_snapshot_hash"] == info.tags["data_snapshot_hash"] != ""
    assert seen["tags"]["dagster_run_id"] == result.run_id
    assert seen["metrics"]["auc"] == pytest.approx(meta["oot_auc"])
    assert seen["tags"]["training_window"]  # written by the asset after registering

    # the data directory's local artifact folder (created empty by AiosPaths.ensure) stayed empty
    assert _files(hidden_a / "mlflow") == []
    for cwd in (cwd_a, tmp_path / "machine_b" / "cwd"):
        assert not [name for name in STRAY_DEFAULTS if (cwd / name).exists()], sorted(os.listdir(cwd))
