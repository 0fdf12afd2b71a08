"""Expert queues: declared in the policy, routed into, enforced on claims and decisions, shown in
the inbox; releasing a claim, and the automatic release of idle claims by the SLA sweep."""

from __future__ import annotations

import copy
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
import yaml
from fastapi.testclient import TestClient

from aios_pipelines.defs.resources import ReviewStoreResource
from aios_pipelines.defs.review.assets import sweep_review_slas
from aios_pipelines.policy.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy
from aios_pipelines.review.app import create_app
from aios_pipelines.review.queues import QueueRules, queue_for_case
from aios_pipelines.review.store import PermissionDeniedError, ReviewStore

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)
TASK = {"application_id": "APP-1", "pd": 0.18, "amount": 20_000, "policy_rule": "review:grey_zone",
        "applicant": {"purpose": "car", "annual_income": 41_000}, "model_recommendation": "decline"}


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class Service:
    def __init__(self, tmp_path: Path, policy=None):
        self.clock = Clock(T0)
        self.store = ReviewStore(f"sqlite:///{tmp_path / 'review.sqlite'}", clock=self.clock)
        self.app = create_app(self.store, policy=policy, clock=self.clock, session_secret=b"queue-test-secret-0123")
        self.tokens = {name: self.store.add_user(name, role)[1] for name, role in [
            ("ann", "underwriter"), ("bob", "underwriter"), ("sue", "senior_underwriter"), ("sam", "senior_underwriter"),
            ("rita", "risk_analyst"), ("ada", "admin")]}
        self.client = TestClient(self.app)

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def create(self, **overrides) -> dict:
        response = self.client.post("/api/tasks", json={**TASK, **overrides}, headers=self.auth("ada"))
        assert response.status_code == 201, response.text
        return response.json()

    def login(self, name: str) -> TestClient:
        browser = TestClient(self.app)
        page = browser.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        assert browser.post("/login", data={"token": self.tokens[name], "csrf_token": token},
                            follow_redirects=False).status_code == 303
        return browser


@pytest.fixture()
def svc(tmp_path: Path):
    service = Service(tmp_path)
    yield service
    service.store.dispose()


def write_policy(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def raw_policy() -> dict:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------- declarations and routing


def test_shipped_policy_declares_queues_and_routes_cases_into_them():
    policy = load_policy()
    assert policy.queues.default == "general"
    assert policy.queues.ids == ("ineligibility_checks", "business_lending", "large_loans", "model_outage", "general")
    assert policy.queues.get("large_loans").idle_claim_hours == 8 and policy.queues.get("general").idle_claim_hours == 4

    def route(**kw) -> str:
        applicant = {"purpose": "car", "loan_amount": 10_000.0, **kw.pop("applicant", {})}
        return queue_for_case(policy, applicant, **kw)

    assert route(rule="review:grey_zone") == "general"
    assert route(rule="review:grey_zone", applicant={"purpose": "business", "loan_amount": 90_000.0}) == "business_lending"
    assert route(rule="review:grey_zone", applicant={"loan_amount": 50_000.0}) == "large_loans"
    assert route(rule="review:grey_zone", applicant={"loan_amount": 49_999.0}) == "general"
    assert route(rule="fallback:review") == "model_outage"
    assert route(rule="automation_paused", hard_rule="min_income") == "ineligibility_checks"
    assert route(rule="automation_paused") == "general"
    assert queue_for_case(policy, {}, rule="review:grey_zone", amount=60_000) == "large_loans"


def test_queue_declarations_are_validated_and_errors_name_the_field(tmp_path: Path, raw_policy: dict):
    def broken(change) -> str:
        raw = copy.deepcopy(raw_policy)
        change(raw["queues"])
        with pytest.raises(PolicyError) as excinfo:
            load_policy(write_policy(tmp_path, raw))
        return str(excinfo.value)

    assert "queues.default: 'nowhere' is not a declared queue" in broken(lambda q: q.update(default="nowhere"))
    assert "queues.declared[1].roles[0]: must be one of" in broken(
        lambda q: q["declared"][1].update(roles=["risk_analyst"]))
    assert "queues.declared[1]: name the roles or the reviewers" in broken(
        lambda q: q["declared"][1].update(roles=[], reviewers=[]))
    assert "duplicate queue id 'general'" in broken(lambda q: q["declared"].append({"id": "general", "roles": ["admin"]}))
    assert "queues.declared[0].routed_by[0]: 'review:nothing'" in broken(
        lambda q: q["declared"][0].update(routed_by=["review:nothing"]))
    assert "queues.idle_claim_hours: must be a positive number" in broken(lambda q: q.update(idle_claim_hours=0))
    # no queues section: one queue every underwriter works (older policies keep working)
    raw = copy.deepcopy(raw_policy)
    del raw["queues"]
    plain = load_policy(write_policy(tmp_path, raw))
    assert plain.queues.ids == ("general",) and plain.queues.get("general").roles == ("underwriter", "senior_underwriter")


# ---------------------------------------------------------------------- permissions and the inbox


def test_claiming_or_deciding_outside_your_queues_is_403(svc: Service):
    business = svc.create(application_id="APP-BIZ", applicant={"purpose": "business"})
    assert business["expert_queue"] == "business_lending"
    general = svc.create(application_id="APP-CAR")
    assert general["expert_queue"] == "general"

    refused = svc.client.post(f"/api/tasks/{business['case_id']}/claim", headers=svc.auth("ann"))
    assert refused.status_code == 403
    assert "business_lending queue" in refused.json()["message"] and "senior_underwriter" in refused.json()["message"]
    decided = svc.client.post(f"/api/tasks/{business['case_id']}/decision", json={"decision": "decline",
                              "reason_codes": ["R07"]}, headers=svc.auth("ann"))
    assert decided.status_code == 403 and svc.store.get_case(business["case_id"])["status"] == "open"
    # the form refuses too, and the case page says why instead of offering the buttons
    browser = svc.login("ann")
    page = browser.get(f"/cases/{business['case_id']}")
    assert "Claim this case" not in page.text and "business lending queue" in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    assert browser.post(f"/cases/{business['case_id']}/claim", data={"csrf_token": csrf}).status_code == 403

    assert svc.client.post(f"/api/tasks/{business['case_id']}/claim", headers=svc.auth("sue")).status_code == 200
    assert svc.client.post(f"/api/tasks/{general['case_id']}/claim", headers=svc.auth("ann")).status_code == 200
    assert svc.client.post(f"/api/tasks/{business['case_id']}/release", headers=svc.auth("sue")).status_code == 200
    assert svc.client.post(f"/api/tasks/{business['case_id']}/claim", headers=svc.auth("ada")).status_code == 200


def test_four_eyes_second_review_needs_the_queue_too(tmp_path: Path, raw_policy: dict):
    raw = copy.deepcopy(raw_policy)
    large = next(q for q in raw["queues"]["declared"] if q["id"] == "large_loans")
    large.update(roles=["underwriter"], reviewers=["sue"])  # sue is the one senior on this desk
    svc = Service(tmp_path, policy=load_policy(write_policy(tmp_path, raw)))
    case = svc.create(application_id="APP-BIG", amount=80_000, model_recommendation="approve")
    assert case["expert_queue"] == "large_loans" and case["requires_four_eyes"]
    url = f"/api/tasks/{case['case_id']}/decision"
    assert svc.client.post(url, json={"decision": "approve"}, headers=svc.auth("ann")).status_code == 200
    second = svc.client.post(url, json={"decision": "approve"}, headers=svc.auth("sam"))
    assert second.status_code == 403 and "large_loans queue" in second.json()["message"]
    final = svc.client.post(url, json={"decision": "approve"}, headers=svc.auth("sue"))
    assert final.status_code == 200 and final.json()["task"]["final_decision"] == "approve"
    svc.store.dispose()


def test_inbox_and_task_list_show_a_reviewer_the_queues_they_may_work(svc: Service):
    business = svc.create(application_id="APP-BIZ", applicant={"purpose": "business"})
    svc.create(application_id="APP-CAR")
    svc.create(application_id="APP-BIG", amount=75_000)

    assert svc.client.get("/api/me", headers=svc.auth("ann")).json()["queues"] == ["large_loans", "model_outage", "general"]
    assert svc.client.get("/api/me", headers=svc.auth("sue")).json()["queues"] == [
        "ineligibility_checks", "business_lending", "large_loans", "model_outage", "general"]
    mine = svc.client.get("/api/tasks?workable=true", headers=svc.auth("ann")).json()["tasks"]
    assert sorted(t["application_id"] for t in mine) == ["APP-BIG", "APP-CAR"]
    one = svc.client.get("/api/tasks?expert_queue=business_lending", headers=svc.auth("rita")).json()["tasks"]
    assert [t["case_id"] for t in one] == [business["case_id"]]

    inbox = svc.login("ann").get("/")
    assert "APP-CAR" in inbox.text and "APP-BIG" in inbox.text and "APP-BIZ" not in inbox.text
    assert "Your queues:" in inbox.text and "large loans" in inbox.text
    assert "business lending" not in inbox.text.split("<table>")[0]  # not offered as a filter either
    senior = svc.login("sue").get("/?equeue=business_lending")
    assert "APP-BIZ" in senior.text and "APP-CAR" not in senior.text
    analyst = svc.login("rita").get("/")  # readers see every queue
    assert all(app in analyst.text for app in ("APP-BIZ", "APP-CAR", "APP-BIG"))


# ---------------------------------------------------------------------- release and idle claims


def test_release_puts_the_case_back_in_its_queue_and_is_audited(svc: Service):
    case = svc.create()
    svc.client.post(f"/api/tasks/{case['case_id']}/claim", headers=svc.auth("ann"))
    released = svc.client.post(f"/api/tasks/{case['case_id']}/release", headers=svc.auth("ann")).json()
    assert (released["status"], released["claimed_by"], released["expert_queue"]) == ("open", None, "general")
    entry = svc.store.audit_entries(entity="case", entity_id=case["case_id"])[-1]
    assert entry["action"] == "case.released" and entry["actor"] == "ann"
    assert entry["payload"]["reason"] == "released by the reviewer" and entry["payload"]["expert_queue"] == "general"


def test_idle_claims_are_released_after_the_queues_limit(svc: Service):
    general = svc.create(application_id="APP-CAR")
    large = svc.create(application_id="APP-BIG", amount=75_000)
    claimed = svc.client.post(f"/api/tasks/{general['case_id']}/claim", headers=svc.auth("ann")).json()
    assert datetime.fromisoformat(claimed["claim_expires_at"]) == T0 + timedelta(hours=4)  # the general queue's limit
    svc.client.post(f"/api/tasks/{large['case_id']}/claim", headers=svc.auth("bob"))

    assert svc.store.release_idle_claims(T0 + timedelta(hours=4)) == []  # the limit itself is still fine
    assert svc.store.release_idle_claims(T0 + timedelta(hours=5)) == [general["case_id"]]
    after = svc.store.get_case(general["case_id"])
    assert (after["status"], after["claimed_by"], after["claim_expires_at"]) == ("open", None, None)
    assert svc.store.get_case(large["case_id"])["claimed_by"] == "bob"  # large loans allow 8 hours
    assert svc.store.release_idle_claims(T0 + timedelta(hours=9)) == [large["case_id"]]

    entry = svc.store.audit_entries(entity="case", entity_id=general["case_id"])[-1]
    assert (entry["action"], entry["actor"]) == ("case.released", "system:idle_claims")
    assert entry["payload"]["reason"] == "idle" and entry["payload"]["claimed_by"] == "ann"
    events = svc.store.case_history(general["case_id"])["events"]
    assert events[-1]["event_type"] == "released" and events[-1]["details"]["reason"] == "idle"
    assert svc.store.verify_audit_chain() == (True, None)
    # a decision ends the claim: nothing is left to release
    svc.clock.at = T0 + timedelta(hours=10)
    svc.client.post(f"/api/tasks/{general['case_id']}/claim", headers=svc.auth("ann"))
    svc.client.post(f"/api/tasks/{general['case_id']}/decision", json={"decision": "decline", "reason_codes": ["R07"]},
                    headers=svc.auth("ann"))
    assert svc.store.release_idle_claims(T0 + timedelta(days=3)) == []


def test_the_sla_sweep_releases_idle_claims(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'review.sqlite'}"
    long_ago = datetime.now(timezone.utc) - timedelta(days=1)
    store = ReviewStore(url, clock=lambda: long_ago, queues=QueueRules(load_policy())).create_all()
    store.add_user("ann", "underwriter")
    store.publish_cases([{"application_id": "APP-IDLE", "pd": 0.2, "due_hours": 72, "policy_rule": "review:grey_zone",
                          "applicant_summary": {"purpose": "car"}, "amount": 9000}])
    case = store.get_case_by_application("APP-IDLE")
    store.claim(case["case_id"], "ann")
    with dg.instance_for_test() as instance:
        result = sweep_review_slas.execute_in_process(resources={"review_store": ReviewStoreResource(url=url)},
                                                      instance=instance)
    assert result.success
    after = store.get_case(case["case_id"])
    assert after["status"] == "open" and after["claimed_by"] is None
    assert store.audit_entries(entity="case", entity_id=case["case_id"])[-1]["payload"]["reason"] == "idle"
    store.dispose()


def test_the_store_refuses_without_the_service_too(tmp_path: Path):
    store = ReviewStore(f"sqlite:///{tmp_path / 'review.sqlite'}", clock=lambda: T0,
                        queues=QueueRules(load_policy())).create_all()
    store.add_user("ann", "underwriter")
    store.publish_cases([{"application_id": "APP-BIZ", "pd": 0.2, "policy_rule": "review:grey_zone",
                          "applicant_summary": {"purpose": "business"}, "amount": 9000}])
    case = store.get_case_by_application("APP-BIZ")
    assert case["expert_queue"] == "business_lending"
    with pytest.raises(PermissionDeniedError, match="business_lending queue"):
        store.claim(case["case_id"], "ann")
    with pytest.raises(PermissionDeniedError):
        store.decide(case["case_id"], "ann", "decline", ["R07"])
    store.dispose()


def test_an_older_store_gets_the_new_columns(tmp_path: Path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    old = ReviewStore(f"sqlite:///{path}").create_all()
    old.add_user("ann", "underwriter")
    old.publish_cases([{"application_id": "APP-OLD", "pd": 0.2}])
    old.dispose()
    with sqlite3.connect(path) as conn:  # as a store created before expert queues existed
        conn.execute("DROP INDEX ix_cases_expert_queue_status")
        conn.execute("DROP INDEX ix_cases_claim_expires_at")
        conn.execute("ALTER TABLE cases DROP COLUMN expert_queue")
        conn.execute("ALTER TABLE cases DROP COLUMN claim_expires_at")
    store = ReviewStore(f"sqlite:///{path}", queues=QueueRules(load_policy())).create_all()
    case = store.get_case_by_application("APP-OLD")
    assert case["expert_queue"] is None and store.queue_of(case) == "general"
    assert [c["application_id"] for c in store.list_cases(expert_queue=["general"])] == ["APP-OLD"]
    assert store.claim(case["case_id"], "ann")["claim_expires_at"] is not None
    store.dispose()
