"""The review service over HTTP: auth and roles, the task API (races, rules, idempotency),
webhooks, OpenAPI, and the server-rendered pages with their session and CSRF checks."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aios_pipelines.review.app import create_app
from aios_pipelines.review.store import ReviewStore
from aios_pipelines.review.webhooks import SIGNATURE_HEADER, verify_signature

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)
SECRET = "whsec_0123456789abcdef"
TASK = {
    "application_id": "APP-1",
    "pd": 0.1834,
    "amount": 20_000,
    "reasons": [{"code": "R07", "text": "Credit bureau score is low", "feature": "bureau_score"},
                {"code": "R04", "text": "Debt service is high relative to income"}],
    "quality_flags": ["employment_length_years: missing, the model used its learned default for it"],
    "applicant": {"annual_income": 41_000, "purpose": "car"},
    "model_recommendation": "decline",
    "model_version": "7",
    "policy_rule": "review:grey_zone",
}


class Service:
    def __init__(self, tmp_path: Path, sender=None, clock=lambda: T0, store_url: str | None = None):
        self.store = ReviewStore(store_url or f"sqlite:///{tmp_path / 'review.sqlite'}", clock=clock)
        self.sleeps: list[float] = []
        self.app = create_app(self.store, webhook_sender=sender, clock=clock, sleep=self.sleeps.append,
                              session_secret=b"test-secret-0123456789")
        self.tokens = {}
        for name, role in [("ann", "underwriter"), ("bob", "underwriter"), ("sue", "senior_underwriter"),
                           ("rita", "risk_analyst"), ("ada", "admin")]:
            self.tokens[name] = self.store.add_user(name, role)[1]
        self.client = TestClient(self.app)

    def auth(self, name: str, **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}", **headers}

    def create(self, **overrides) -> dict:
        response = self.client.post("/api/tasks", json={**TASK, **overrides}, headers=self.auth("ann"))
        assert response.status_code == 201, response.text
        return response.json()

    def login(self, name: str) -> TestClient:
        client = TestClient(self.app)
        page = client.get("/login")
        assert page.status_code == 200
        response = client.post("/login", data={"token": self.tokens[name], "csrf_token": csrf_of(page.text)},
                               follow_redirects=False)
        assert response.status_code == 303, response.text
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        return client


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture()
def svc(tmp_path: Path) -> Service:
    service = Service(tmp_path)
    yield service
    service.store.dispose()


# --------------------------------------------------------------------------- auth and roles


def test_no_token_401_wrong_role_403(svc: Service):
    task = svc.create()
    claim = f"/api/tasks/{task['case_id']}/claim"
    response = svc.client.get("/api/tasks")
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert svc.client.get("/api/tasks", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert svc.client.get("/api/tasks", headers={"Authorization": svc.tokens["ann"]}).status_code == 401
    assert svc.client.get("/api/tasks", headers=svc.auth("rita")).status_code == 200  # risk analysts read
    denied = svc.client.post(claim, headers=svc.auth("rita"))
    assert denied.status_code == 403 and "read-only" in denied.json()["message"]
    hook = {"url": "https://lender.example/hook", "secret": SECRET}
    assert svc.client.post("/api/webhooks", json=hook, headers=svc.auth("sue")).status_code == 403
    assert svc.client.post("/api/webhooks", json=hook, headers=svc.auth("ada")).status_code == 201
    assert svc.client.get("/api/audit/verify", headers=svc.auth("ann")).status_code == 403
    verified = svc.client.get("/api/audit/verify", headers=svc.auth("rita")).json()
    assert verified["ok"] is True and verified["first_bad_seq"] is None
    assert svc.client.post(claim, headers=svc.auth("ada")).status_code == 200  # admins do everything


def test_task_create_fills_from_policy_and_reads_back(svc: Service):
    task = svc.create(amount=90_000, pd=0.3)
    assert task["source"] == "api" and task["status"] == "open"
    assert task["requires_four_eyes"] is True  # the policy's four_eyes.min_amount is 50,000
    assert task["score_band"] == "E" and task["priority"] == "high"  # near_decline: pd >= 0.25
    assert task["due_at"] == (T0 + timedelta(hours=24)).isoformat()
    again = svc.client.post("/api/tasks", json={**TASK, "amount": 90_000}, headers=svc.auth("ann"))
    assert again.status_code == 409 and task["case_id"] in again.json()["message"]
    bad = svc.client.post("/api/tasks", json={**TASK, "application_id": "APP-2", "pd": 3}, headers=svc.auth("ann"))
    assert bad.status_code == 422 and bad.json()["error"] == "invalid" and "pd" in bad.json()["message"]
    listed = svc.client.get("/api/tasks?status=open", headers=svc.auth("rita")).json()
    assert [t["case_id"] for t in listed["tasks"]] == [task["case_id"]]
    detail = svc.client.get(f"/api/tasks/{task['case_id']}", headers=svc.auth("rita")).json()
    assert detail["events"][0]["event_type"] == "created" and detail["decisions"] == []
    missing = svc.client.get("/api/tasks/nope", headers=svc.auth("rita"))
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


# --------------------------------------------------------------------------- decisions


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_racing_decisions_one_wins_one_409(backend: str, tmp_path: Path, request: pytest.FixtureRequest):
    store_url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    svc = Service(tmp_path, store_url=store_url)
    request.addfinalizer(svc.store.dispose)
    assert svc.store.engine.dialect.name == backend
    case_id = svc.create(model_recommendation="approve")["case_id"]
    barrier = threading.Barrier(2)
    statuses: dict[str, int] = {}

    def decide(name: str) -> None:
        client = TestClient(svc.app)
        barrier.wait()
        statuses[name] = client.post(f"/api/tasks/{case_id}/decision", json={"decision": "approve"},
                                     headers=svc.auth(name)).status_code

    threads = [threading.Thread(target=decide, args=(n,)) for n in ("ann", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(statuses.values()) == [200, 409], statuses
    stored = svc.store.case_history(case_id)["decisions"]
    assert [d["reviewer"] for d in stored] == [name for name, status in statuses.items() if status == 200]


def test_decline_without_reason_and_override_without_note_are_422(svc: Service):
    case_id = svc.create(model_recommendation="approve")["case_id"]
    url = f"/api/tasks/{case_id}/decision"
    response = svc.client.post(url, json={"decision": "decline", "note": "weak"}, headers=svc.auth("ann"))
    assert response.status_code == 422 and "reason code" in response.json()["message"]
    response = svc.client.post(url, json={"decision": "decline", "reason_codes": ["H06"]}, headers=svc.auth("ann"))
    assert response.status_code == 422 and "note" in response.json()["message"]
    assert svc.client.post(url, json={"decision": "maybe"}, headers=svc.auth("ann")).status_code == 422
    ok = svc.client.post(url, json={"decision": "decline", "reason_codes": ["H06"], "note": "affordability"},
                         headers=svc.auth("ann"))
    assert ok.status_code == 200 and ok.json()["decision"]["override_direction"] == "high_side"


def test_request_info_and_return_via_api(svc: Service):
    case_id = svc.create()["case_id"]
    waiting = svc.client.post(f"/api/tasks/{case_id}/decision", json={"decision": "request_info", "note": "payslip"},
                              headers=svc.auth("ann"))
    assert waiting.json()["task"]["status"] == "waiting_info"
    back = svc.client.post(f"/api/tasks/{case_id}/info-returned", json={"note": "payslip in"}, headers=svc.auth("bob"))
    assert back.status_code == 200 and back.json()["status"] == "open"


def test_four_eyes_second_review_roles(svc: Service):
    case_id = svc.create(amount=75_000, model_recommendation="approve")["case_id"]
    url = f"/api/tasks/{case_id}/decision"
    first = svc.client.post(url, json={"decision": "approve"}, headers=svc.auth("ann"))
    assert first.json()["task"]["status"] == "awaiting_second_review"
    assert svc.client.post(url, json={"decision": "approve"}, headers=svc.auth("bob")).status_code == 403
    assert svc.client.post(url, json={"decision": "approve"}, headers=svc.auth("ann")).status_code == 403
    final = svc.client.post(url, json={"decision": "approve"}, headers=svc.auth("sue"))
    assert final.status_code == 200 and final.json()["task"]["final_decision"] == "approve"
    feed = svc.client.get("/api/decisions?cursor=0", headers=svc.auth("rita")).json()
    assert [d["stage"] for d in feed["decisions"]] == ["first", "second"]
    assert svc.client.get(f"/api/decisions?cursor={feed['next_cursor']}", headers=svc.auth("rita")).json()["decisions"] == []


# --------------------------------------------------------------------------- idempotency


def test_idempotency_key_replays_and_refuses_a_different_body(svc: Service):
    headers = svc.auth("ann", **{"Idempotency-Key": "create-APP-9"})
    first = svc.client.post("/api/tasks", json={**TASK, "application_id": "APP-9"}, headers=headers)
    replay = svc.client.post("/api/tasks", json={**TASK, "application_id": "APP-9"}, headers=headers)
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json() and replay.headers["idempotent-replayed"] == "true"
    mismatch = svc.client.post("/api/tasks", json={**TASK, "application_id": "APP-10"}, headers=headers)
    assert mismatch.status_code == 422 and "different request" in mismatch.json()["message"]
    assert len(svc.store.list_cases()) == 1

    url = f"/api/tasks/{first.json()['case_id']}/decision"
    decide = svc.auth("ann", **{"Idempotency-Key": "decide-1"})
    body = {"decision": "decline", "reason_codes": ["R07"]}
    one = svc.client.post(url, json=body, headers=decide)
    two = svc.client.post(url, json=body, headers=decide)
    assert one.status_code == two.status_code == 200 and one.json() == two.json()
    assert len(svc.store.decisions_since(0)) == 1
    # keys belong to their user: the same key from someone else is a new request (here: 409)
    assert svc.client.post(url, json=body, headers=svc.auth("bob", **{"Idempotency-Key": "decide-1"})).status_code == 409


# --------------------------------------------------------------------------- webhooks


def test_webhook_is_signed_and_retried_after_a_failure(tmp_path: Path):
    calls: list[tuple[str, bytes, dict]] = []

    def flaky(url: str, body: bytes, headers: dict) -> int:
        calls.append((url, body, dict(headers)))
        if len(calls) == 1:
            raise ConnectionError("receiver restarting")
        return 500 if len(calls) == 2 else 204

    svc = Service(tmp_path, sender=flaky)
    hook = svc.client.post("/api/webhooks", json={"url": "https://lender.example/hook", "secret": SECRET},
                           headers=svc.auth("ada")).json()
    case_id = svc.create(model_recommendation="approve")["case_id"]
    assert svc.client.post(f"/api/tasks/{case_id}/decision", json={"decision": "approve"},
                           headers=svc.auth("ann")).status_code == 200
    assert len(calls) == 3 and svc.sleeps == [0.5, 1.0]  # backoff between the three tries
    url, body, headers = calls[-1]
    assert url == "https://lender.example/hook" and headers["X-AIOS-Event"] == "task.decided"
    assert verify_signature(SECRET, body, headers[SIGNATURE_HEADER])
    assert not verify_signature("another-secret-123", body, headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["case_id"] == case_id and payload["final_decision"] == "approve"
    deliveries = svc.client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=svc.auth("ada")).json()
    assert len(deliveries) == 1 and deliveries[0]["attempts"] == 3 and deliveries[0]["last_status"] == 204
    assert deliveries[0]["delivered_at"] is not None
    svc.store.dispose()


def test_webhook_reaches_a_real_local_http_server(tmp_path: Path):
    received: list[tuple[dict, bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        svc = Service(tmp_path)  # the default sender: a real HTTP POST
        url = f"http://127.0.0.1:{server.server_address[1]}/aios"
        assert svc.client.post("/api/webhooks", json={"url": url, "secret": SECRET}, headers=svc.auth("ada")).status_code == 201
        case_id = svc.create(model_recommendation="approve")["case_id"]
        svc.client.post(f"/api/tasks/{case_id}/decision", json={"decision": "approve"}, headers=svc.auth("ann"))
    finally:
        server.shutdown()
        server.server_close()
    assert len(received) == 1
    headers, body = received[0]
    assert headers["x-aios-event"] == "task.decided"
    assert verify_signature(SECRET, body, headers[SIGNATURE_HEADER.lower()])
    assert json.loads(body)["case_id"] == case_id
    assert svc.store.list_deliveries()[0]["last_status"] == 204
    svc.store.dispose()


# --------------------------------------------------------------------------- OpenAPI and pages


def test_openapi_lists_the_task_endpoints_and_docs_are_offline(svc: Service):
    spec = svc.client.get("/openapi.json").json()
    for path, method in [("/api/tasks", "post"), ("/api/tasks", "get"), ("/api/tasks/{case_id}", "get"),
                         ("/api/tasks/{case_id}/claim", "post"), ("/api/tasks/{case_id}/decision", "post"),
                         ("/api/webhooks", "post")]:
        assert method in spec["paths"][path], (path, method)
    docs = svc.client.get("/docs")
    assert docs.status_code == 200 and "/api/tasks/{case_id}/decision" in docs.text
    assert not re.search(r'(src|href)="(https?:)?//', docs.text)


def test_pages_need_a_session_and_render_the_case(svc: Service):
    case_id = svc.create()["case_id"]
    assert svc.client.get("/", follow_redirects=False).headers["location"].startswith("/login")
    browser = svc.login("ann")
    inbox = browser.get("/")
    assert inbox.status_code == 200
    for text in ("APP-1", "0.1834", "review:grey_zone", f"/cases/{case_id}"):
        assert text in inbox.text
    page = browser.get(f"/cases/{case_id}")
    assert page.status_code == 200
    for text in ("0.1834", "R07", "Credit bureau score is low", "review:grey_zone", "employment_length_years: missing",
                 "decline", "2026.11.1"):
        assert text in page.text, text
    for html in (inbox.text, page.text):
        assert not re.search(r'<(script|link|img)[^>]*(src|href)="(https?:)?//', html)
        assert "<script" not in html


def test_blind_review_hides_the_recommendation(svc: Service):
    case_id = svc.create(blind_review=True)["case_id"]
    page = svc.login("ann").get(f"/cases/{case_id}")
    assert "hidden: this is a blind review" in page.text
    api = svc.client.get(f"/api/tasks/{case_id}", headers=svc.auth("ann")).json()
    assert api["model_recommendation"] is None


def test_form_posts_need_the_csrf_token(svc: Service):
    case_id = svc.create()["case_id"]
    browser = svc.login("ann")
    refused = browser.post(f"/cases/{case_id}/claim", data={}, follow_redirects=False)
    assert refused.status_code == 403 and svc.store.get_case(case_id)["status"] == "open"
    wrong = browser.post(f"/cases/{case_id}/claim", data={"csrf_token": "forged"}, follow_redirects=False)
    assert wrong.status_code == 403
    token = csrf_of(browser.get(f"/cases/{case_id}").text)
    done = browser.post(f"/cases/{case_id}/claim", data={"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303 and svc.store.get_case(case_id)["claimed_by"] == "ann"
    # a decline from the form without a reason code is refused and nothing is stored
    declined = browser.post(f"/cases/{case_id}/decision", data={"csrf_token": token, "decision": "decline", "note": "x"})
    assert declined.status_code == 422 and "at least one reason code" in declined.text
    ok = browser.post(f"/cases/{case_id}/decision", follow_redirects=False,
                      data={"csrf_token": token, "decision": "decline", "reason_codes": ["R07"], "more_codes": "H06"})
    assert ok.status_code == 303
    assert svc.store.get_case(case_id)["final_decision"] == "decline"
    assert svc.store.decisions_since(0)[0]["reason_codes"] == ["R07", "H06"]
    # signing in also needs the login form's token
    assert TestClient(svc.app).post("/login", data={"token": svc.tokens["ann"]}).status_code == 403


def test_read_only_user_sees_the_case_but_cannot_act(svc: Service):
    case_id = svc.create()["case_id"]
    browser = svc.login("rita")
    page = browser.get(f"/cases/{case_id}")
    assert page.status_code == 200 and "read-only access" in page.text and "Claim this case" not in page.text
    refused = browser.post(f"/cases/{case_id}/claim", data={"csrf_token": csrf_of(page.text)})
    assert refused.status_code == 403
