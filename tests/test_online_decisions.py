"""Online decisions: POST /api/decisions and POST /api/policy/evaluate over a real champion.

One world per module: a synthetic lender's applications, two LightGBM versions trained on
them and registered in a fresh MLflow registry (v1 champion), and the review service over a
SQLite review store. The batch side of the parity test is the batch path's own functions
(landing CSV -> read_landing_file -> validate_rows -> build_features -> score_applications).
Tests that move the champion alias put it back on v1.
"""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import polars as pl
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from aios_pipelines.decisioning.online import ChampionHolder, OnlineDecisions, load_reason_catalog, load_scoring_model
from aios_pipelines.defs.resources import LandingResource, ReviewStoreResource, WarehouseResource
from aios_pipelines.defs.review.assets import online_decision_copies
from aios_pipelines.features.build import APPLICATION_ID, build_features, feature_definition
from aios_pipelines.ingestion.contract import load_contract
from aios_pipelines.ingestion.landing import read_landing_file
from aios_pipelines.ingestion.validation import validate_rows
from aios_pipelines.modeling.registry import ModelRegistry, RegistryConfig
from aios_pipelines.modeling.scoring import score_applications
from aios_pipelines.modeling.training import FeatureSpec, TrainingConfig, train_credit_model
from aios_pipelines.policy import automation_switch
from aios_pipelines.policy.policy import load_policy
from aios_pipelines.review.app import create_app
from aios_pipelines.review.store import ReviewStore
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH
from aios_pipelines.storage.warehouse import Warehouse
from aios_pipelines.synthetic.generator import generate_applications

TRAIN_START = date(2026, 4, 1)
TRAIN_DAYS = 30
TRAIN_PER_DAY = 80
PARITY_DAY = date(2026, 6, 3)
PARITY_ROWS = 300
POOL_DAY = date(2026, 6, 4)
POOL_ROWS = 1600


# ---------------------------------------------------------------------- the world


def fresh_registry(folder: Path) -> ModelRegistry:
    folder.mkdir(parents=True, exist_ok=True)
    return ModelRegistry(RegistryConfig(
        tracking_uri=f"sqlite:///{(folder / 'mlflow.db').as_posix()}",
        artifact_location=(folder / "artifacts").as_uri(),
    ))


def register(registry: ModelRegistry, trained, spec: FeatureSpec, contract, policy) -> int:
    info = registry.log_and_register(
        trained.booster,
        metrics={"auc": 0.7, "brier": 0.1},
        params={"best_iteration": trained.best_iteration},
        feature_spec=spec.as_dict(),
        feature_ranges={k: list(v) for k, v in trained.feature_ranges.items()},
        contract_fingerprint=contract.fingerprint,
        policy_version=policy.version,
        data_snapshot_hash=trained.data_hash,
        dagster_run_id=None,
        artifacts={},
        oot_window=(trained.oot_start.isoformat(), trained.oot_end.isoformat()),
    )
    return info.version


def as_json(row: dict) -> dict:
    """A typed application row as a loan origination system would send it."""
    return {k: (v.isoformat() if isinstance(v, (date, datetime)) else v) for k, v in row.items()}


def landing_rows(folder: Path, day: date, n: int, seed: int, contract) -> pl.DataFrame:
    """Applications through the nightly ingestion's own steps (a CSV landing file)."""
    applications, _ = generate_applications(day, n, seed=seed)
    path = folder / f"{day.isoformat()}.csv"
    applications.write_csv(path, datetime_format="%Y-%m-%dT%H:%M:%S%.6f")
    raw, _ = read_landing_file(path, contract.applications, source_name=path.name)
    result = validate_rows(raw, contract.applications, day)
    assert result.quarantined.height == 0
    return result.loaded


def batch_scores(loaded: pl.DataFrame, model, world, paused: bool = False) -> dict[str, dict]:
    features = build_features(loaded, world.contract.applications)
    scored = score_applications(features, loaded, world.policy, world.catalog, model,
                                automation_paused=paused, fallback_reason=None if model else "test").scored
    return {row[APPLICATION_ID]: row for row in scored.to_dicts()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("online")
    contract = load_contract(DEFAULT_CONTRACT_PATH)
    policy = load_policy()
    frames, truths = [], []
    for i in range(TRAIN_DAYS):
        apps, truth = generate_applications(TRAIN_START + timedelta(days=i), TRAIN_PER_DAY, seed=100 + i)
        frames.append(apps)
        truths.append(truth)
    applications = pl.concat(frames)
    features = build_features(applications, contract.applications).join(
        pl.concat(truths).select("application_id", "defaulted"), on="application_id")
    definition = feature_definition(contract.applications)
    spec = FeatureSpec(features=list(definition.features), categorical=list(definition.categorical),
                       monotone=dict(definition.monotone))
    registry = fresh_registry(root / "mlflow")
    v1 = register(registry, train_credit_model(features, spec, TrainingConfig(oot_days=5, min_data_in_leaf=20)),
                  spec, contract, policy)
    v2 = register(registry, train_credit_model(features, spec, TrainingConfig(
        oot_days=5, min_data_in_leaf=40, num_leaves=4, max_rounds=60, seed=7)), spec, contract, policy)
    registry.promote(v1, actor="test", reason="first champion")

    w = SimpleNamespace(root=root, contract=contract, policy=policy, registry=registry, v1=v1, v2=v2,
                        catalog=load_reason_catalog(DEFAULT_CONTRACT_PATH), control=root / "control")
    w.control.mkdir()
    w.models = {str(v1): load_scoring_model(registry, v1), str(v2): load_scoring_model(registry, v2)}
    landing = root / "landing"
    landing.mkdir()
    w.parity = landing_rows(landing, PARITY_DAY, PARITY_ROWS, 11, contract)
    w.pool = landing_rows(landing, POOL_DAY, POOL_ROWS, 12, contract)
    return w


def make_service(world, tmp_path: Path, *, interval: float = 0.0, registry=None, clock=None):
    """A review service of its own (store, metrics) over the shared registry."""
    store = ReviewStore(f"sqlite:///{tmp_path / 'review.sqlite'}", clock=clock)
    # a registry object of its own: the holder's calls never share a client with the test's alias moves
    holder = ChampionHolder(registry or ModelRegistry(world.registry.config), check_interval_seconds=interval)
    online = OnlineDecisions(world.contract, world.policy, world.catalog, holder, control_dir=world.control)
    app = create_app(store, policy=world.policy, online=online, session_secret=b"online-test-secret-0123",
                     **({"clock": clock} if clock else {}))
    tokens = {name: store.add_user(name, role)[1] for name, role in
              [("los", "underwriter"), ("rita", "risk_analyst"), ("sue", "senior_underwriter")]}
    return SimpleNamespace(store=store, app=app, online=online, holder=holder, tokens=tokens, client=TestClient(app))


def auth(svc, name: str = "los", **headers: str) -> dict:
    return {"Authorization": f"Bearer {svc.tokens[name]}", **headers}


@pytest.fixture()
def svc(world, tmp_path):
    service = make_service(world, tmp_path)
    yield service
    service.store.dispose()


def rows_of(frame: pl.DataFrame, contract) -> list[dict]:
    return [as_json(r) for r in frame.select(contract.applications.column_names).to_dicts()]


# ---------------------------------------------------------------------- parity


def test_online_answers_equal_the_batch_path_on_300_applications(world, svc):
    expected = batch_scores(world.parity, world.models[str(world.v1)], world)
    actions = set()
    for body in rows_of(world.parity, world.contract):
        response = svc.client.post("/api/decisions", json=body, headers=auth(svc))
        assert response.status_code == 201, response.text
        got = response.json()
        want = expected[body["application_id"]]
        assert got["pd"] == want["pd"], body["application_id"]
        assert [r["code"] for r in got["reasons"]] == want["reason_codes"]
        assert [r["feature"] for r in got["reasons"]] == want["reason_features"]
        assert (got["action"], got["policy_rule"], got["score_band"]) == (want["action"], want["policy_rule"],
                                                                          want["score_band"])
        assert got["model_version"] == str(world.v1) and got["decision_source"] == "model"
        assert got["policy_version"] == world.policy.version == want["policy_version"]
        assert got["policy_fingerprint"] == world.policy.fingerprint
        assert (got["review"] is not None) == (got["action"] == "review")
        actions.add(got["action"])
    assert actions == {"auto_approve", "auto_decline", "review"}, "all three routes are compared"
    # reasons only where the policy needs them
    stored = svc.store.online_decisions_since(0)
    assert len(stored) == PARITY_ROWS
    assert all(not d["reasons"] for d in stored if d["action"] == "auto_approve")
    assert all(d["reasons"] for d in stored if d["action"] == "auto_decline")


def test_a_referral_becomes_a_review_task_in_the_same_call(world, svc):
    expected = batch_scores(world.pool.head(120), world.models[str(world.v1)], world)
    referral = next(r for r in rows_of(world.pool.head(120), world.contract)
                    if expected[r["application_id"]]["action"] == "review")
    got = svc.client.post("/api/decisions", json=referral, headers=auth(svc)).json()
    task = svc.client.get(f"/api/tasks/{got['review']['case_id']}", headers=auth(svc)).json()
    assert task["application_id"] == referral["application_id"] and task["source"] == "api"
    assert task["pd"] == got["pd"] and task["policy_rule"] == got["policy_rule"]
    assert task["expert_queue"] == got["review"]["queue"]
    assert [r["code"] for r in task["reasons"]] == [r["code"] for r in got["reasons"]]
    assert task["applicant_summary"]["loan_amount"] == referral["loan_amount"]
    read_back = svc.client.get(f"/api/decisions/{got['decision_id']}", headers=auth(svc, "rita")).json()
    assert read_back == got
    # the audit log pins the online decision, and the chain verifies
    entries = svc.store.audit_entries(entity="online_decision", entity_id=got["decision_id"])
    assert [e["action"] for e in entries] == ["online_decision.recorded"]
    assert entries[0]["payload"]["case_id"] == got["review"]["case_id"]
    assert svc.store.verify_audit_chain() == (True, None)


# ---------------------------------------------------------------------- contract and retries


def test_contract_violations_are_422_naming_each_field(world, svc):
    good = rows_of(world.pool.slice(200, 1), world.contract)[0]
    bad = {**good, "annual_income": "plenty", "purpose": "crypto", "bureau_score": 900, "nickname": "x"}
    del bad["loan_amount"]
    response = svc.client.post("/api/decisions", json=bad, headers=auth(svc))
    assert response.status_code == 422
    body = response.json()
    fields = {d["field"]: d["message"] for d in body["details"]}
    assert set(fields) == {"annual_income", "purpose", "bureau_score", "loan_amount", "nickname"}
    assert "expected float" in fields["annual_income"] and "missing required value" in fields["loan_amount"]
    assert "not among allowed values" in fields["purpose"] and "outside valid range" in fields["bureau_score"]
    assert "not a column" in fields["nickname"]
    future = {**good, "application_ts": (datetime.now(timezone.utc) + timedelta(days=2)).replace(tzinfo=None).isoformat()}
    late = svc.client.post("/api/decisions", json=future, headers=auth(svc))
    assert late.status_code == 422 and late.json()["details"][0]["field"] == "application_ts"
    assert svc.client.post("/api/decisions", json=[good], headers=auth(svc)).status_code == 422
    assert svc.store.online_decisions_since(0) == [] and svc.store.list_cases() == []
    # risk analysts read; they do not decide
    assert svc.client.post("/api/decisions", json=good, headers=auth(svc, "rita")).status_code == 403


def test_idempotency_key_returns_the_first_answer(world, svc):
    body = rows_of(world.pool.slice(210, 1), world.contract)[0]
    headers = auth(svc, **{"Idempotency-Key": "los-" + body["application_id"]})
    first = svc.client.post("/api/decisions", json=body, headers=headers)
    again = svc.client.post("/api/decisions", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert len(svc.store.online_decisions_since(0)) == 1
    other = svc.client.post("/api/decisions", json={**body, "loan_amount": body["loan_amount"] + 1}, headers=headers)
    assert other.status_code == 422 and "different request" in other.json()["message"]
    # without a key, deciding the same application again is refused, naming the first decision
    repeat = svc.client.post("/api/decisions", json=body, headers=auth(svc))
    assert repeat.status_code == 409 and first.json()["decision_id"] in repeat.json()["message"]


# ---------------------------------------------------------------------- the champion


def test_champion_swap_under_concurrent_requests_never_mixes_answers(world, tmp_path):
    svc = make_service(world, tmp_path, interval=0.0)
    # a pool far larger than the phases need: while one request loads the new champion, the
    # other threads keep answering with the old one, and on a slow machine that is many rows
    pool_frame = world.pool.slice(300)
    pool = rows_of(pool_frame, world.contract)
    expected = {version: batch_scores(pool_frame, model, world) for version, model in world.models.items()}
    results: list[tuple[int, dict, dict]] = []
    lock = threading.Condition()
    next_row = iter(pool)
    stop = threading.Event()

    def client_loop() -> None:
        client = TestClient(svc.app)
        while not stop.is_set():
            with lock:
                body = next(next_row, None)
            if body is None:
                return
            response = client.post("/api/decisions", json=body, headers=auth(svc))
            with lock:
                results.append((response.status_code, body, response.json()))
                lock.notify_all()

    def wait_for(predicate, what: str) -> None:
        with lock:
            lock.wait_for(lambda: predicate() or len(results) >= len(pool), timeout=300)
            assert predicate(), f"{what}: not seen after {len(results)} answers (pool of {len(pool)})"

    def seen(version: int, after: int) -> bool:
        return any(r[2].get("model_version") == str(version) for r in results[after:])

    threads = [threading.Thread(target=client_loop) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(results) >= 40, "40 answers from the first champion")
        world.registry.promote(world.v2, actor="test", reason="challenger trial")
        mark = len(results)
        wait_for(lambda: seen(world.v2, mark) and len(results) >= mark + 40, "answers from the promoted v2")
        world.registry.rollback(actor="test", reason="back to v1")
        mark = len(results)
        wait_for(lambda: seen(world.v1, mark) and len(results) >= mark + 40, "answers from v1 after the rollback")
    finally:
        stop.set()
        for t in threads:
            t.join()
        if world.registry.champion().version != world.v1:
            world.registry.promote(world.v1, actor="test", reason="restore")
    assert all(status == 201 for status, _, _ in results), [r for r in results if r[0] != 201][:3]
    versions = [got["model_version"] for _, _, got in results]
    assert set(versions) == {str(world.v1), str(world.v2)}, "the promotion took effect without a restart"
    for _, body, got in results:
        want = expected[got["model_version"]][body["application_id"]]
        assert got["pd"] == want["pd"] and got["action"] == want["action"], body["application_id"]
        assert [r["code"] for r in got["reasons"]] == want["reason_codes"]
    # once the clients are done, the next request is answered by v1 again; the holder swapped
    # twice (v1 -> v2 -> v1). (The last answer collected may still be v2: a request that took
    # the v2 snapshot just before the swap can finish after later ones.)
    after = svc.client.post("/api/decisions", json=rows_of(world.pool.slice(299, 1), world.contract)[0], headers=auth(svc))
    assert after.status_code == 201 and after.json()["model_version"] == str(world.v1)
    assert svc.holder.swaps == 2
    svc.store.dispose()


def test_fallback_rules_answer_when_the_champion_cannot_be_loaded(world, tmp_path):
    svc = make_service(world, tmp_path)
    body = rows_of(world.pool.slice(250, 1), world.contract)[0]
    assert svc.holder.refresh().model_version == str(world.v1)
    info = world.registry.get_version(world.v2)
    model_dirs = [p.parent for p in (world.root / "mlflow" / "artifacts").rglob("MLmodel") if info.model_id in p.as_posix()]
    assert len(model_dirs) == 1
    moved = model_dirs[0].with_name(model_dirs[0].name + ".gone")
    model_dirs[0].rename(moved)  # as if someone deleted the champion's files
    try:
        world.registry.promote(world.v2, actor="test", reason="promote a damaged model")
        got = svc.client.post("/api/decisions", json=body, headers=auth(svc)).json()
        assert got["decision_source"] == "fallback_rules" and got["model_version"] is None
        assert f"champion v{world.v2} cannot be loaded" in got["fallback_reason"]
        # the same answer as the batch path without a model: the fallback never auto-approves
        want = batch_scores(world.pool.slice(250, 1), None, world)[body["application_id"]]
        assert (got["pd"], got["action"], got["policy_rule"]) == (want["pd"], want["action"], want["policy_rule"])
        assert got["action"] != "auto_approve"
        assert svc.store.online_decisions_since(0)[0]["decision_source"] == "fallback_rules"
    finally:
        moved.rename(model_dirs[0])
    # the files are back: the next check loads v2, then the rollback brings v1 back
    assert svc.holder.refresh().model_version == str(world.v2)
    world.registry.rollback(actor="test", reason="back to v1")
    assert svc.holder.refresh().model_version == str(world.v1)
    svc.store.dispose()


def test_no_champion_at_all_means_fallback_marked(world, tmp_path):
    empty = fresh_registry(tmp_path / "empty_registry")
    svc = make_service(world, tmp_path, registry=empty)
    body = rows_of(world.pool.slice(260, 1), world.contract)[0]
    got = svc.client.post("/api/decisions", json=body, headers=auth(svc)).json()
    assert got["decision_source"] == "fallback_rules" and "no model holds the champion alias" in got["fallback_reason"]
    assert got["policy_rule"].startswith(("fallback:", "hard_rule:"))
    svc.store.dispose()


def test_paused_automation_sends_every_online_application_to_people(world, svc):
    body = rows_of(world.pool.slice(270, 1), world.contract)[0]
    automation_switch.pause(world.control, "alice", "incident 7")
    try:
        got = svc.client.post("/api/decisions", json=body, headers=auth(svc)).json()
    finally:
        automation_switch.resume(world.control, "alice", "incident 7 over")
    assert got["action"] == "review" and got["policy_rule"] == "automation_paused" and got["automation_paused"]
    assert got["review"]["case_id"]


# ---------------------------------------------------------------------- policy what-if


def test_policy_evaluate_is_read_only_and_names_the_rule(world, svc):
    app = rows_of(world.pool.slice(280, 1), world.contract)[0]
    cases_before, audit_before = svc.store.list_cases(), svc.store.audit_head()

    def evaluate(**body):
        response = svc.client.post("/api/policy/evaluate", json=body, headers=auth(svc, "rita"))
        assert response.status_code == 200, response.text
        return response.json()

    low = evaluate(application={**app, "annual_income": 60_000.0, "loan_amount": 10_000.0, "bureau_score": 720,
                                "delinquencies_2y": 0, "debt_to_income": 0.2}, pd=0.03)
    assert (low["action"], low["rule"], low["score_band"], low["queue"]) == ("auto_approve", "auto_approve", "B", None)
    grey = evaluate(application={**app, "purpose": "business", "annual_income": 60_000.0, "loan_amount": 10_000.0,
                                 "bureau_score": 720, "delinquencies_2y": 0, "debt_to_income": 0.2}, pd=0.2)
    assert (grey["action"], grey["rule"], grey["queue"]) == ("review", "review:grey_zone", "business_lending")
    assert "grey zone" in grey["rule_description"]
    hard = evaluate(application={**app, "annual_income": 5_000.0}, pd=0.01)
    assert hard["action"] == "auto_decline" and hard["rule"] == "hard_rule:min_income"
    assert "income below 10,000" in hard["rule_description"]
    paused = evaluate(application={**app, "annual_income": 5_000.0}, pd=0.01, automation_paused=True)
    assert (paused["rule"], paused["hard_rule"], paused["queue"]) == ("automation_paused", "min_income",
                                                                      "ineligibility_checks")
    fallback = evaluate(application=app, decision_source="fallback")
    assert fallback["pd"] is not None and fallback["action"] in ("review", "auto_decline")
    # only the policy's columns are needed, and every bad or missing one is named
    partial = {c: app[c] for c in world.policy.columns if c != "bureau_score"}
    missing = svc.client.post("/api/policy/evaluate", json={"application": {**partial, "debt_to_income": "high"}},
                              headers=auth(svc))
    assert missing.status_code == 422
    assert {d["field"] for d in missing.json()["details"]} == {"application.bureau_score", "application.debt_to_income"}
    # nothing was stored: no task, no decision, no audit entry
    assert svc.store.list_cases() == cases_before and svc.store.audit_head() == audit_before
    assert svc.store.online_decisions_since(0) == []


# ---------------------------------------------------------------------- metrics


def test_metrics_are_exposed_and_count(world, tmp_path):
    at = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
    svc = make_service(world, tmp_path, clock=lambda: at)
    rows = rows_of(world.pool.slice(600, 30), world.contract)
    answers = [svc.client.post("/api/decisions", json=r, headers=auth(svc)).json() for r in rows]
    assert svc.client.post("/api/decisions", json={"nope": 1}, headers=auth(svc)).status_code == 422
    svc.client.post("/api/policy/evaluate", json={"application": rows[0], "pd": 0.5}, headers=auth(svc))
    svc.client.get("/api/tasks", headers=auth(svc))
    # an overdue task: created 3 days before the service's clock
    svc.store.publish_cases([{"application_id": "OLD-1", "pd": 0.2, "due_hours": 8, "policy_rule": "review:grey_zone",
                              "applicant_summary": {"purpose": "car", "loan_amount": 9000}, "amount": 9000}],
                            now=at - timedelta(days=3))

    response = svc.client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    by_action: dict[str, int] = {}
    for a in answers:
        by_action[a["action"]] = by_action.get(a["action"], 0) + 1
    for action, count in by_action.items():
        assert value("aios_online_decisions_total", action=action, decision_source="model") == count
    assert value("aios_http_requests_total", method="POST", endpoint="/api/decisions", status="201") == len(rows)
    assert value("aios_http_requests_total", method="POST", endpoint="/api/decisions", status="422") == 1
    assert value("aios_http_request_duration_seconds_count", method="POST", endpoint="/api/decisions") == len(rows) + 1
    assert value("aios_http_requests_total", method="GET", endpoint="/api/tasks", status="200") == 1
    assert value("aios_policy_evaluations_total", action="auto_decline") == 1
    assert value("aios_model_version") == world.v1
    assert value("aios_model_in_use", model_version=str(world.v1), decision_source="model") == 1
    counts = svc.store.queue_counts(at)
    for queue, (total, late) in counts.items():
        assert value("aios_review_open_tasks", queue=queue) == total
        assert value("aios_review_overdue_tasks", queue=queue) == late
    assert value("aios_review_open_tasks", queue="general") >= 1
    assert value("aios_review_overdue_tasks", queue="general") == 1
    assert sum(total for total, _ in counts.values()) == by_action.get("review", 0) + 1
    svc.store.dispose()


# ---------------------------------------------------------------------- into the warehouse


def test_online_decisions_are_copied_into_the_warehouse_once(world, tmp_path):
    svc = make_service(world, tmp_path)
    rows = rows_of(world.pool.slice(640, 20), world.contract)
    for r in rows[:12]:
        assert svc.client.post("/api/decisions", json=r, headers=auth(svc)).status_code == 201
    warehouse = tmp_path / "warehouse.duckdb"
    resources = {
        "warehouse": WarehouseResource(path=str(warehouse)),
        "review_store": ReviewStoreResource(url=svc.store.url),
        "landing": LandingResource(landing_dir=str(tmp_path), contract_path=str(DEFAULT_CONTRACT_PATH)),
    }
    with dg.instance_for_test() as instance:
        first = dg.materialize([online_decision_copies], resources=resources, instance=instance)
        assert first.success and all(c.passed for c in first.get_asset_check_evaluations())
        again = dg.materialize([online_decision_copies], resources=resources, instance=instance)
        assert again.success
        for r in rows[12:]:
            svc.client.post("/api/decisions", json=r, headers=auth(svc))
        third = dg.materialize([online_decision_copies], resources=resources, instance=instance)
        assert third.success and all(c.passed for c in third.get_asset_check_evaluations())
    wh = Warehouse(warehouse)
    decisions = wh.query("select * from online_decisions order by copied_cursor")
    assert decisions.height == 20 and decisions["decision_id"].n_unique() == 20
    assert set(decisions["origin"]) == {"online"} and set(decisions["model_version"]) == {str(world.v1)}
    stored = {d["decision_id"]: d for d in svc.store.online_decisions_since(0)}
    for row in decisions.iter_rows(named=True):
        assert row["pd"] == stored[row["decision_id"]]["pd"]
        assert row["reason_codes"] == [r["code"] for r in stored[row["decision_id"]]["reasons"]]
    # the same columns as the batch table: the two union into one decision table
    batch = batch_scores(world.pool.slice(0, 5), world.models[str(world.v1)], world)
    wh.replace_table("scored_applications", pl.DataFrame(list(batch.values())))
    union = wh.query("select application_id, 'batch' as origin, pd, action from scored_applications "
                     "union all by name select application_id, origin, pd, action from online_decisions")
    assert union.height == 25
    applications = wh.query("select * from online_applications order by source_row")
    assert applications["application_id"].to_list() == decisions["application_id"].to_list()
    assert applications.schema["application_ts"] == pl.Datetime("us")
    assert applications.schema["credit_history_months"] == pl.Int64
    assert set(applications["source_file"]) == {"api:online"}
    svc.store.dispose()


def test_an_online_decision_has_its_lineage_in_aios_explain(world, tmp_path):
    """From an online decision back to what the service was sent, the features it scored, the
    model version with its training data hash, the policy and the review case."""
    from aios_pipelines.decision_record import decision_record, format_decision_record
    from aios_pipelines.settings import AiosPaths

    svc = make_service(world, tmp_path)
    rows = rows_of(world.pool.slice(600, 30), world.contract)
    answers = {r["application_id"]: svc.client.post("/api/decisions", json=r, headers=auth(svc)).json() for r in rows}
    referral = next(a for a in answers.values() if a["action"] == "review")
    paths = AiosPaths(world.root)  # the world's registry lives at <root>/mlflow, as in a data directory
    resources = {
        "warehouse": WarehouseResource(path=str(paths.warehouse)),
        "review_store": ReviewStoreResource(url=svc.store.url),
        "landing": LandingResource(landing_dir=str(tmp_path), contract_path=str(DEFAULT_CONTRACT_PATH)),
    }
    paths.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test() as instance:
        assert dg.materialize([online_decision_copies], resources=resources, instance=instance).success

    record = decision_record(paths, referral["application_id"], review_store=svc.store)
    sent = next(r for r in rows if r["application_id"] == referral["application_id"])
    assert record["origin"] == "online"
    assert record["online_decision"]["decision_id"] == referral["decision_id"]
    assert as_json(record["inputs"])["annual_income"] == sent["annual_income"]
    want_features = build_features(world.pool.filter(pl.col(APPLICATION_ID) == sent["application_id"]),
                                   world.contract.applications).row(0, named=True)
    assert record["features"] == {k: want_features[k] for k in record["features"]}
    assert record["score"]["pd"] == referral["pd"]
    assert [r["code"] for r in record["score"]["reasons"]] == [r["code"] for r in referral["reasons"]]
    info = world.registry.get_version(world.v1)
    assert record["model"]["version"] == world.v1
    assert record["model"]["training_data_hash"] == info.tags["data_snapshot_hash"]
    assert record["model"]["mlflow_run_id"] == info.run_id
    assert record["policy"]["version"] == world.policy.version and record["action"]["action"] == "review"
    assert record["review"]["case_id"] == referral["review"]["case_id"]
    assert record["online_decision"]["case_id"] == referral["review"]["case_id"]
    text = format_decision_record(record)
    assert f"Decided online: decision {referral['decision_id']}" in text
    svc.store.dispose()
