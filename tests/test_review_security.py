"""Security of the review service: headers on every response, tokens hashed at rest, and no
token or secret in any log line."""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import date, datetime, timezone
from http.cookiejar import CookieJar

import pytest
import uvicorn
from fastapi.testclient import TestClient
from starlette.routing import Route

from aios_pipelines import cli
from aios_pipelines.review.app import create_app
from aios_pipelines.review.headers import CONTENT_SECURITY_POLICY
from aios_pipelines.review.store import ReviewStore

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)
SESSION_SECRET = b"session-secret-for-the-log-test-0123456789"
WEBHOOK_SECRET = "whsec_do_not_log_me_0123456789"
HOOK_PASSWORD = "basic-auth-password-in-url"
HOOK_KEY = "receiver-api-key-in-query"
CASE = {
    "application_id": "APP-SEC-1", "application_date": date(2026, 3, 2), "priority": "normal", "due_hours": 48,
    "requires_four_eyes": False, "amount": 9000, "pd": 0.2, "model_recommendation": "decline", "blind_review": False,
    "reasons": [{"code": "R07", "text": "Credit bureau score is low", "feature": "bureau_score"}],
    "quality_flags": [], "applicant_summary": {"annual_income": 41000, "loan_amount": 9000}, "source": "batch",
}
ALWAYS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture()
def service(tmp_path):
    store = ReviewStore(f"sqlite:///{tmp_path / 'review.sqlite'}", clock=lambda: T0).create_all()
    app = create_app(store, clock=lambda: T0, session_secret=SESSION_SECRET, webhook_sender=lambda *a: 500,
                     webhook_attempts=1, sleep=lambda s: None)
    _, token = store.add_user("ada", "admin")
    store.publish_cases([CASE])
    return app, store, token


def _logged_in(app, token: str, base_url: str = "http://testserver") -> TestClient:
    client = TestClient(app, base_url=base_url)
    page = client.get("/login")
    response = client.post("/login", data={"token": token, "csrf_token": _csrf(page.text), "next": "/"},
                           follow_redirects=False)
    assert response.status_code == 303
    return client


def _get_paths(app, case_id: str) -> list[str]:
    """A concrete path for every route that answers GET (path parameters filled in)."""
    fill = {"case_id": case_id, "webhook_id": "1", "decision_id": "no-such-decision"}
    paths = []
    for route in app.routes:
        if isinstance(route, Route) and "GET" in (route.methods or ()):
            paths.append(re.sub(r"\{(\w+)(:\w+)?\}", lambda m: fill.get(m.group(1), "x"), route.path))
    return paths


def _assert_headers(response, what: str, *, https: bool = False) -> None:
    for name, value in ALWAYS.items():
        assert response.headers.get(name) == value, f"{what}: {name} is {response.headers.get(name)!r}"
    cache = response.headers.get("cache-control")
    if "/static/" not in what:
        assert cache == "no-store", f"{what}: cache-control {cache!r}"
    assert ("strict-transport-security" in response.headers) == https, what


def test_every_get_route_answers_with_the_security_headers(service):
    app, store, token = service
    case_id = store.list_cases()[0]["case_id"]
    paths = _get_paths(app, case_id)
    assert {"/", "/login", "/docs", "/openapi.json", "/api/tasks", "/metrics", "/static/review.css"} <= set(paths)
    anonymous = TestClient(app)
    with_token = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    signed_in = _logged_in(app, token)
    statuses = set()
    for path in paths:
        for who, client in (("anonymous", anonymous), ("token", with_token), ("session", signed_in)):
            response = client.get(path, follow_redirects=False)
            statuses.add(response.status_code)
            _assert_headers(response, f"GET {path} ({who}) -> {response.status_code}")
    # the walk met successes, redirects to the sign-in page, 401s and 404s
    assert {200, 303, 401, 404} <= statuses


def test_errors_and_unknown_paths_carry_the_headers_too(service):
    app, store, token = service

    def boom():
        raise RuntimeError("an unexpected failure")

    app.add_api_route("/boom", boom, include_in_schema=False)
    client = TestClient(app, raise_server_exceptions=False)
    auth = {"Authorization": f"Bearer {token}"}
    for method, path, kwargs, status in (
        ("GET", "/no/such/page", {}, 404),
        ("GET", "/api/no-such-endpoint", {}, 404),
        ("GET", "/api/tasks/no-such-case", {"headers": auth}, 404),
        ("GET", "/api/me", {"headers": {"Authorization": "Bearer wrong"}}, 401),
        ("POST", "/api/tasks", {"headers": auth, "json": {"pd": 3}}, 422),
        ("POST", "/cases/x/claim", {}, 303),
        ("DELETE", "/api/tasks", {"headers": auth}, 405),
        ("GET", "/boom", {}, 500),
    ):
        response = client.request(method, path, follow_redirects=False, **kwargs)
        assert response.status_code == status, (method, path, response.text)
        _assert_headers(response, f"{method} {path}")


def test_hsts_only_over_https(service):
    app, _, token = service
    plain = TestClient(app).get("/login")
    secure = TestClient(app, base_url="https://testserver").get("/login")
    assert "strict-transport-security" not in plain.headers
    assert secure.headers["strict-transport-security"].startswith("max-age=")
    _assert_headers(secure, "GET /login over https", https=True)
    # the session cookie is Secure over HTTPS
    client = _logged_in(app, token, base_url="https://testserver")
    assert client.get("/").status_code == 200


def test_the_policy_allows_nothing_inline_or_from_elsewhere_and_the_pages_need_nothing_else(service):
    app, store, token = service
    policy = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert policy["default-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY and "http" not in CONTENT_SECURITY_POLICY
    client = _logged_in(app, token)
    case_id = store.list_cases()[0]["case_id"]
    for path in ("/login", "/", f"/cases/{case_id}", "/docs"):
        html = (TestClient(app) if path == "/login" else client).get(path).text
        assert "<script" not in html and "<style" not in html and " style=" not in html, path
        assert re.search(r"\son[a-z]+=", html) is None, f"{path}: inline event handler"
        assert re.search(r"""(src|href|action)=["']?(https?:)?//""", html) is None, f"{path}: loads from another host"
        assert '<link rel="stylesheet" href="/static/review.css">' in html
    css = client.get("/static/review.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "header.top" in css.text


def test_tokens_are_stored_only_as_hashes(tmp_path):
    path = tmp_path / "review.sqlite"
    store = ReviewStore(f"sqlite:///{path}").create_all()
    _, token = store.add_user("uma", "underwriter")
    new_token = store.issue_token("uma")
    store.dispose()
    con = sqlite3.connect(path)
    stored = con.execute("select token_hash from users where name = 'uma'").fetchone()[0]
    dump = "\n".join(con.iterdump())
    con.close()
    assert stored == hashlib.sha256(new_token.encode()).hexdigest()
    for secret in (token, new_token):
        assert secret not in dump
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("review.sqlite"))
    assert token.encode() not in raw and new_token.encode() not in raw
    assert ReviewStore(f"sqlite:///{path}").authenticate(token) is None  # the old token stopped working


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()} {record.exc_text or ''}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_token_or_secret_reaches_the_logs(tmp_path, aios_paths, monkeypatch, capsys):
    """Everything a real uvicorn server logs at DEBUG, access log included, while a user is
    created, signs in, works through the pages and the API (right and wrong tokens), and an
    admin registers a webhook whose deliveries fail."""
    capture = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    # an earlier uvicorn in the same process (its default log config) leaves its loggers not
    # propagating, or disabled by a dictConfig: make every record reach the root again
    uvicorn_loggers = {name: logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")}
    saved = {name: (lg.propagate, lg.disabled, lg.level) for name, lg in uvicorn_loggers.items()}
    for lg in uvicorn_loggers.values():
        lg.propagate, lg.disabled = True, False
        lg.setLevel(logging.DEBUG)
    monkeypatch.setenv("AIOS_REVIEW_SECRET", SESSION_SECRET.decode())
    try:
        assert cli.main(["users", "add", "ada", "--role", "admin"]) == 0
        token = capsys.readouterr().out.strip().splitlines()[-1]
        store = ReviewStore.for_paths(aios_paths)
        store.publish_cases([CASE])
        app = create_app(store, webhook_attempts=1, sleep=lambda s: None,
                         webhook_sender=lambda url, body, headers: 503)
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                               log_level="debug", access_log=True))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        base = f"http://127.0.0.1:{port}"
        jar = CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

        def call(method: str, path: str, *, data: bytes | None = None, headers: dict | None = None,
                 opener=None) -> tuple[int, str]:
            request = urllib.request.Request(base + path, data=data, headers=headers or {}, method=method)
            try:
                with (opener or urllib.request.build_opener()).open(request, timeout=10) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()

        status, login = call("GET", "/login", opener=browser)
        form = urllib.parse.urlencode({"token": token, "csrf_token": _csrf(login), "next": "/"}).encode()
        status, inbox = call("POST", "/login", data=form, opener=browser,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200 and "APP-SEC-1" in inbox
        session_cookie = next(c.value for c in jar if c.name == "aios_session")
        bearer = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        assert call("GET", "/api/me", headers=bearer)[0] == 200
        assert call("GET", "/api/me", headers={"Authorization": f"Bearer {token}x"})[0] == 401
        assert call("GET", "/api/tasks?limit=5", headers=bearer)[0] == 200
        hook = (f'{{"url": "http://hook:{HOOK_PASSWORD}@127.0.0.1:9/hook?key={HOOK_KEY}", '
                f'"secret": "{WEBHOOK_SECRET}"}}').encode()
        assert call("POST", "/api/webhooks", data=hook, headers=bearer)[0] == 201
        case_id = store.list_cases()[0]["case_id"]
        decision = b'{"decision": "decline", "reason_codes": ["R07"]}'
        assert call("POST", f"/api/tasks/{case_id}/decision", data=decision, headers=bearer)[0] == 200
        server.should_exit = True
        thread.join(timeout=10)
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
        for name, (propagate, disabled, level) in saved.items():
            uvicorn_loggers[name].propagate, uvicorn_loggers[name].disabled = propagate, disabled
            uvicorn_loggers[name].setLevel(level)
    logged = "\n".join(capture.lines)
    assert "uvicorn.access" in logged and "/api/me" in logged  # the access log was captured
    assert "webhook delivery 1 to http://127.0.0.1:9/hook failed" in logged  # so was the failed delivery's warning
    leaks = {"token": token, "token hash": hashlib.sha256(token.encode()).hexdigest(),
             "session secret": SESSION_SECRET.decode(), "session cookie": session_cookie,
             "webhook secret": WEBHOOK_SECRET, "password in the webhook url": HOOK_PASSWORD,
             "key in the webhook url": HOOK_KEY}
    for what, secret in leaks.items():
        assert secret not in logged, f"the {what} appears in the log"
        assert secret not in capsys.readouterr().err
    audit = str(store.audit_entries(after_seq=0, limit=10_000))
    for what in ("token", "session secret", "webhook secret"):
        assert leaks[what] not in audit, f"the {what} appears in the audit log"
