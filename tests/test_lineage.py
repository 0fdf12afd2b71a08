"""Lineage of a reviewed decision: the task API's /lineage is `aios explain --json`.

One small world in a fresh AIOS_HOME, built with the pipeline's own functions: a landing CSV
where one application also arrives twice (so it has a quarantine history), validated and
featurised; a LightGBM model trained on a few synthetic days and registered in the data
directory's MLflow registry; the day scored by it; the referrals published to the review store,
and one of them decided by an underwriter through the task API.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import polars as pl
import pytest
from fastapi.testclient import TestClient

from aios_pipelines import cli
from aios_pipelines.decisioning.online import load_reason_catalog, load_scoring_model
from aios_pipelines.features.build import build_features, feature_definition
from aios_pipelines.ingestion.contract import load_contract
from aios_pipelines.ingestion.landing import read_landing_file
from aios_pipelines.ingestion.validation import validate_rows
from aios_pipelines.modeling.registry import ModelRegistry, default_registry_config
from aios_pipelines.modeling.scoring import score_applications
from aios_pipelines.modeling.training import FeatureSpec, TrainingConfig, train_credit_model
from aios_pipelines.policy.policy import load_policy
from aios_pipelines.review import publish
from aios_pipelines.review.app import create_app
from aios_pipelines.review.store import ReviewStore
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH, AiosPaths
from aios_pipelines.storage.warehouse import Warehouse
from aios_pipelines.synthetic.generator import generate_applications

TRAIN_START = date(2026, 4, 1)
DAY = date(2026, 6, 2)
T0 = datetime(2026, 6, 3, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield from _world(tmp_path_factory.mktemp("lineage"), monkeypatch)


def _world(tmp_path, monkeypatch):
    home = tmp_path / "aios_home"
    monkeypatch.setenv("AIOS_HOME", str(home))
    for name in ("AIOS_MLFLOW_TRACKING_URI", "AIOS_CONTRACT", "AIOS_POLICY"):
        monkeypatch.delenv(name, raising=False)
    paths = AiosPaths(home).ensure()
    contract = load_contract(DEFAULT_CONTRACT_PATH)
    policy = load_policy()
    dataset = contract.applications

    # a model in the data directory's registry
    frames, truths = zip(*(generate_applications(TRAIN_START + timedelta(days=i), 60, seed=300 + i) for i in range(20)))
    train = build_features(pl.concat(frames), dataset).join(
        pl.concat(truths).select("application_id", "defaulted"), on="application_id")
    definition = feature_definition(dataset)
    spec = FeatureSpec(features=list(definition.features), categorical=list(definition.categorical),
                       monotone=dict(definition.monotone))
    trained = train_credit_model(train, spec, TrainingConfig(oot_days=4, min_data_in_leaf=20, max_rounds=40))
    registry = ModelRegistry(default_registry_config(paths))
    version = registry.log_and_register(
        trained.booster, metrics={"auc": 0.71}, params={"best_iteration": trained.best_iteration},
        feature_spec=spec.as_dict(), feature_ranges={k: list(v) for k, v in trained.feature_ranges.items()},
        contract_fingerprint=contract.fingerprint, policy_version=policy.version,
        data_snapshot_hash=trained.data_hash, dagster_run_id="run-lineage-test", artifacts={},
        oot_window=(trained.oot_start.isoformat(), trained.oot_end.isoformat()),
    ).version

    # one landing day through ingestion, with every application resent once more at the end
    applications, _ = generate_applications(DAY, 60, seed=5)
    landing = paths.landing / "applications" / DAY.isoformat() / "applications.csv"
    landing.parent.mkdir(parents=True, exist_ok=True)
    pl.concat([applications, applications.head(60)]).write_csv(landing, datetime_format="%Y-%m-%dT%H:%M:%S%.6f")
    raw, _ = read_landing_file(landing, dataset, source_name="applications/2026-06-02/applications.csv")
    checked = validate_rows(raw, dataset, DAY)
    features = build_features(checked.loaded, dataset)
    model = load_scoring_model(registry, version)
    scored = score_applications(features, checked.loaded, policy, load_reason_catalog(DEFAULT_CONTRACT_PATH),
                                model).scored
    warehouse = Warehouse(paths.warehouse)
    for table, frame in [("raw_applications", checked.loaded), ("quarantined_applications", checked.quarantined),
                         ("application_features", features), ("scored_applications", scored)]:
        warehouse.replace_table(table, frame)

    # the referrals in the data directory's review store, one decided through the task API
    store = ReviewStore.for_paths(paths)
    app = create_app(store, policy=policy, clock=lambda: T0, session_secret=b"lineage-test-secret-0123")
    by_id = {r["application_id"]: r for r in checked.loaded.to_dicts()}
    rows = publish.case_rows_from_scored(scored.to_dicts(), by_id, policy=policy)
    single = [r for r in rows if not r["requires_four_eyes"] and not r["blind_review"]]
    assert single, "the day must hold a referral without four eyes"
    case = store.create_task(single[0], actor="review_queue", now=T0)
    token = store.add_user("ann", "underwriter")[1]
    client = TestClient(app)
    auth = {"Authorization": f"Bearer {token}"}
    opposite = "approve" if case["model_recommendation"] == "decline" else "decline"
    decided = client.post(f"/api/tasks/{case['case_id']}/decision", headers=auth,
                          json={"decision": opposite, "reason_codes": ["R07"], "note": "override, see file"})
    assert decided.status_code == 200, decided.text
    yield {"paths": paths, "client": client, "auth": auth, "case": case, "version": version,
           "registry": registry, "decision": opposite, "trained": trained}
    store.dispose()


def test_task_lineage_is_the_explain_record(world, capsys):
    case = world["case"]
    application_id = case["application_id"]
    response = world["client"].get(f"/api/tasks/{case['case_id']}/lineage", headers=world["auth"])
    assert response.status_code == 200, response.text
    lineage = response.json()

    capsys.readouterr()
    assert cli.main(["explain", application_id, "--json"]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert lineage == explained

    # and the record carries every link back from the decision
    info = world["registry"].get_version(world["version"])
    assert lineage["inputs"]["application_id"] == application_id
    assert lineage["quarantine_history"] and all(
        "duplicate" in q["reason"] and q["source_file"] == "applications/2026-06-02/applications.csv"
        for q in lineage["quarantine_history"])
    assert set(lineage["features"]) == set(feature_definition(load_contract(DEFAULT_CONTRACT_PATH).applications).features)
    assert lineage["model"]["version"] == world["version"]
    assert lineage["model"]["mlflow_run_id"] == info.run_id
    assert lineage["model"]["training_data_hash"] == world["trained"].data_hash
    assert lineage["model"]["trained_by_dagster_run"] == "run-lineage-test"
    assert lineage["policy"]["version"] == load_policy().version and lineage["policy"]["rule"]
    assert lineage["action"]["action"] == "review"
    review = lineage["review"]
    assert review["case_id"] == case["case_id"] and review["final_decision"] == world["decision"]
    assert [(r["reviewer"], r["role"], r["decision"], r["is_override"]) for r in review["reviewers"]] == [
        ("ann", "underwriter", world["decision"], True)]
    assert review["model_version_shown"] == str(world["version"])


def test_explain_text_shows_the_reviewers(world, capsys):
    capsys.readouterr()
    assert cli.main(["explain", world["case"]["application_id"]]) == 0
    out = capsys.readouterr().out
    assert "Quarantine history" in out and "Review" in out
    assert f"ann (underwriter, final): {world['decision']} [R07], override" in out


def test_lineage_of_a_task_without_a_decision_record_is_404(world):
    client, auth = world["client"], world["auth"]
    created = client.post("/api/tasks", headers=auth, json={"application_id": "APP-FROM-ANOTHER-SYSTEM", "pd": 0.2})
    assert created.status_code == 201, created.text
    response = client.get(f"/api/tasks/{created.json()['case_id']}/lineage", headers=auth)
    assert response.status_code == 404
    assert "APP-FROM-ANOTHER-SYSTEM" in response.json()["message"] and "warehouse" in response.json()["message"]
    assert str(world["paths"].home) not in response.json()["message"]  # no server paths to API clients
    assert client.get("/api/tasks/nope/lineage", headers=auth).status_code == 404
