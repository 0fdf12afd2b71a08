"""The review service's JSON API fuzzed against its own OpenAPI schema (schemathesis).

Every operation in ``/openapi.json`` gets generated requests, valid and invalid, sent with an
admin's bearer token (so the role checks do not answer everything with 403) to a service over
a SQLite review store holding a few tasks, one of them decided. Path ids are drawn half the
time from the stored ones so that the handlers behind the 404 run too. Every response must be
below 500, carry a status the schema documents for that operation, and match its schema.
What the schema cannot express (NaN and Infinity, integers past SQLite's range) is sent by hand.
Bugs this found, fixed in app.py: 400s (unreadable body, malformed Idempotency-Key) not in the
schema; 422s of the two contract endpoints not matching their documented body; a 500 for an
offset, cursor or webhook id past 2**63 - 1 and for NaN in a request field.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aios_pipelines.decision_record import DecisionRecordError, jsonable_record, review_lineage
from aios_pipelines.decisioning.online import ChampionHolder, OnlineDecisions, load_reason_catalog
from aios_pipelines.ingestion.contract import load_contract
from aios_pipelines.policy.policy import load_policy
from aios_pipelines.review.app import create_app
from aios_pipelines.review.store import ReviewStore
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)
APPLICATION = {
    "application_id": "APP-FUZZ-ONLINE", "application_ts": "2026-06-01T08:30:00", "annual_income": 52000,
    "employment_length_years": 4.5, "existing_debt": 8000, "debt_to_income": 0.21, "credit_history_months": 96,
    "delinquencies_2y": 0, "bureau_score": 710, "credit_utilisation": 0.35, "loan_amount": 12000,
    "purpose": "car", "term_months": 36, "region": "north", "channel": "web",
}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])


class NoChampion:
    """A registry where no model holds the alias: online decisions come from the fallback rules."""

    def alias_version(self, alias: str) -> None:
        return None


def _lineage(store):
    """Decision records for the seeded applications (the warehouse side as `aios explain` gives it)."""

    def lineage(application_id: str) -> dict:
        if not application_id.startswith("APP-FUZZ-"):
            raise DecisionRecordError(f"application {application_id!r} is not in the warehouse")
        return jsonable_record({
            "application_id": application_id, "inputs": {**APPLICATION, "application_id": application_id},
            "quarantine_history": [{"landing_date": T0.date(), "source_file": "applications/a.csv", "source_row": 3,
                                    "column_name": "loan_amount", "reason": "loan_amount: missing required value"}],
            "features": {"loan_to_income": 0.23, "bureau_score": float("nan")}, "score": {"pd": 0.2},
            "model": {"version": 7, "mlflow_run_id": "abc", "training_data_hash": "f00d"},
            "policy": {"version": "2026.11.1", "rule": "review:grey_zone"}, "action": {"action": "review"},
            "review": review_lineage(store, application_id),
        })

    return lineage


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> SimpleNamespace:
    root: Path = tmp_path_factory.mktemp("fuzz")
    store = ReviewStore(f"sqlite:///{root / 'review.sqlite'}", clock=lambda: T0)
    policy = load_policy()
    online = OnlineDecisions(load_contract(DEFAULT_CONTRACT_PATH), policy, load_reason_catalog(DEFAULT_CONTRACT_PATH),
                             ChampionHolder(NoChampion()), control_dir=root / "control")
    app = create_app(store, policy=policy, online=online, clock=lambda: T0, sleep=lambda s: None, lineage=_lineage(store),
                     webhook_sender=lambda url, body, headers: 200, session_secret=b"fuzz-secret-0123456789")
    admin = store.add_user("ada", "admin")
    token = admin[1]
    underwriter = store.add_user("ann", "underwriter")[0]
    cases = []
    for i, (pd_, amount) in enumerate([(0.12, 8_000), (0.2, 90_000), (0.31, 15_000)]):
        cases.append(store.create_task({
            "application_id": f"APP-FUZZ-{i}", "pd": pd_, "amount": amount,
            "reasons": [{"code": "R07", "text": "Credit bureau score is low", "feature": "bureau_score"}],
            "quality_flags": [], "applicant_summary": {"annual_income": 41_000, "purpose": "car"},
            "model_recommendation": "decline", "model_version": "7", "policy_version": policy.version,
            "policy_rule": "review:grey_zone", "priority": "normal", "due_hours": 24,
            "requires_four_eyes": amount >= 50_000, "blind_review": False,
        }, actor="test", now=T0)["case_id"])
    store.decide(cases[0], underwriter, "decline", ["R07"], None, now=T0)
    store.register_webhook("https://lender.example/hook", "whsec_0123456789abcdef", actor="ada", now=T0)
    online_answer = TestClient(app).post("/api/decisions", json=APPLICATION, headers={"Authorization": f"Bearer {token}"})
    assert online_answer.status_code == 201, online_answer.text
    return SimpleNamespace(app=app, store=store, token=token, case_ids=cases,
                           decision_ids=[online_answer.json()["decision_id"]])


@pytest.fixture(scope="module")
def api_schema(service):
    return schemathesis.openapi.from_asgi("/openapi.json", service.app)


# Every operation of /openapi.json, listed here so that a new one cannot go unfuzzed: the
# first test fails until it is added. (schemathesis' own pytest integration, schema.parametrize
# over a fixture, fails under pytest 9: "'Function' object has no attribute '_nodeid'".)
OPERATIONS = [
    "GET /api/me",
    "POST /api/tasks",
    "GET /api/tasks",
    "GET /api/tasks/{case_id}",
    "GET /api/tasks/{case_id}/lineage",
    "POST /api/tasks/{case_id}/claim",
    "POST /api/tasks/{case_id}/release",
    "POST /api/tasks/{case_id}/decision",
    "POST /api/tasks/{case_id}/info-returned",
    "GET /api/decisions",
    "POST /api/webhooks",
    "GET /api/webhooks",
    "GET /api/webhooks/{webhook_id}/deliveries",
    "GET /api/audit/verify",
    "POST /api/decisions",
    "GET /api/decisions/{decision_id}",
    "POST /api/policy/evaluate",
]


def test_the_fuzzed_operations_are_all_the_schema_has(api_schema):
    found = [f"{r.ok().method.upper()} {r.ok().path}" for r in api_schema.get_all_operations()]
    assert sorted(found) == sorted(OPERATIONS)


def _strategy(operation, service, mode: GenerationMode):
    """Generated cases; for a path with an id, also cases on the stored ids."""
    known = {"case_id": service.case_ids, "webhook_id": [1], "decision_id": service.decision_ids}
    names = [p.name for p in operation.path_parameters]
    strategies = [operation.as_strategy(generation_mode=mode)]
    for name in names:
        for value in known.get(name, []):
            strategies.append(operation.as_strategy(generation_mode=mode, path_parameters={name: value}))
    return st.one_of(strategies)


# Operations whose only inputs are free strings (the Authorization header, a path id) have
# nothing schemathesis can make invalid: they get valid requests only.
NOTHING_TO_NEGATE = {"GET /api/me", "GET /api/tasks/{case_id}", "GET /api/tasks/{case_id}/lineage", "GET /api/webhooks", "GET /api/audit/verify",
                     "GET /api/decisions/{decision_id}"}
# Generated bodies almost never hold every column the policy needs: 422 is the right answer.
RARELY_ACCEPTED = {"POST /api/policy/evaluate"}
CASES = [pytest.param(label, GenerationMode.POSITIVE, id=f"{label} valid") for label in OPERATIONS] + [
    pytest.param(label, GenerationMode.NEGATIVE, id=f"{label} invalid")
    for label in OPERATIONS if label not in NOTHING_TO_NEGATE
]


@pytest.mark.parametrize("label, mode", CASES)
def test_every_operation_answers_within_its_schema(api_schema, service, label, mode):
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]
    auth = {"Authorization": f"Bearer {service.token}"}

    statuses: list[int] = []

    @FUZZ
    @given(case=_strategy(operation, service, mode))
    def fuzz(case):
        response = case.call(headers=auth)
        statuses.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    fuzz()
    if mode is GenerationMode.POSITIVE and label not in RARELY_ACCEPTED:
        # the fuzzer got past validation and lookups into the handlers, not only their refusals
        assert any(200 <= code < 300 for code in statuses), sorted(set(statuses))


# Non-finite numbers: Python's JSON parser reads NaN and Infinity, which JSON Schema cannot
# express (so schemathesis never sends them) and a JSON response cannot carry.
NON_FINITE = [
    ("/api/tasks", '{"application_id": "APP-NAN", "amount": NaN}', "amount"),
    ("/api/tasks", '{"application_id": "APP-INF", "pd": Infinity}', "pd"),
    ("/api/policy/evaluate", '{"application": {}, "pd": NaN}', "pd"),
    ("/api/decisions", None, "loan_amount"),
]


@pytest.mark.parametrize("path, body, field", NON_FINITE, ids=[f"{p} {f}" for p, _, f in NON_FINITE])
def test_non_finite_numbers_are_refused_with_422_not_500(service, path, body, field):
    if body is None:
        body = json.dumps({**APPLICATION, "application_id": "APP-ONLINE-NAN"}).replace(
            '"loan_amount": 12000', '"loan_amount": NaN')
    client = TestClient(service.app, raise_server_exceptions=False)
    response = client.post(path, content=body, headers={"Authorization": f"Bearer {service.token}",
                                                        "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["error"] == "invalid" and field in answer["message"]
    assert all(d["field"] and d["message"] for d in answer.get("details", []))


@pytest.mark.parametrize("url", ["/api/tasks?offset=9223372036854775808", "/api/decisions?cursor=9223372036854775808",
                                 "/api/webhooks/9223372036854775808/deliveries"])
def test_integers_beyond_sqlite_are_refused_with_422_not_500(service, url):
    client = TestClient(service.app, raise_server_exceptions=False)
    response = client.get(url, headers={"Authorization": f"Bearer {service.token}"})
    assert response.status_code == 422 and "less than or equal to 9223372036854775807" in response.json()["message"]
