"""The review service: server-rendered pages for people, a JSON task API for systems.

People sign in with their token once (``/login``); the page session is a signed,
HttpOnly, SameSite=Strict cookie and every form carries a CSRF token that its POST handler
checks. Systems call ``/api/...`` with ``Authorization: Bearer <token>``; every write there
accepts an ``Idempotency-Key``. Roles: underwriters work cases, senior underwriters also
give second reviews and settle escalations, risk analysts read, admins do everything
(including registering webhooks). Who works which case is further limited by the policy's
expert queues (:mod:`aios_pipelines.review.queues`): the inbox shows a reviewer the queues
they may work, and a claim or decision outside them is refused (403).

Online decisions: ``POST /api/decisions`` decides one application while the applicant waits
(:mod:`aios_pipelines.decisioning.online`: the batch path's validation, features, scoring and
policy) and opens a review task in the same transaction when the policy routes it to people;
``POST /api/policy/evaluate`` is the policy alone, for what-if questions, and stores nothing.
``GET /metrics`` serves the service's metrics in the Prometheus text format.

No page loads anything from another host: the CSS is ``/static/review.css``, there are no
scripts, and the API reference at ``/docs`` is rendered here from ``/openapi.json`` instead of
FastAPI's CDN-based Swagger UI. Every response, errors included, carries the security headers
of :mod:`aios_pipelines.review.headers` (a CSP without inline code, no framing, no caching).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable, Literal
from urllib.parse import parse_qs, urlencode

from fastapi import BackgroundTasks, Body, Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from aios_pipelines.decisioning.online import ContractViolation, OnlineDecisions, contract_json_schema
from aios_pipelines.review import publish
from aios_pipelines.review.audit import canonical_json
from aios_pipelines.review.headers import SecurityHeadersMiddleware
from aios_pipelines.review.metrics import MetricsMiddleware, ServiceMetrics
from aios_pipelines.review.queues import QueueRules, queue_for_case
from aios_pipelines.review.reasons import reason_catalog
from aios_pipelines.review.schema import PRIORITIES, QUEUES, STATUSES
from aios_pipelines.review.security import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SessionSigner,
    token_fingerprint,
)
from aios_pipelines.review.store import (
    OPEN_STATUSES,
    NotFoundError,
    PermissionDeniedError,
    ReviewError,
    ReviewStore,
    ReviewValidationError,
    User,
    utcnow,
)
from aios_pipelines.review.webhooks import Sender, WebhookDispatcher

TEMPLATES = Path(__file__).resolve().parent / "templates"
STYLESHEET = Path(__file__).resolve().parent / "static" / "review.css"
SECRET_ENV = "AIOS_REVIEW_SECRET"
MAX_FORM_BYTES = 64 * 1024
MAX_IDEMPOTENCY_KEY = 255
MAX_SQL_INT = 2**63 - 1  # offsets, cursors and ids beyond it overflow SQLite's INTEGER (was a 500)
API_DESCRIPTION = (
    "Decide credit applications online (POST /api/decisions), ask the decision policy what it "
    "would do (POST /api/policy/evaluate), and work the review tasks the policy sends to people: "
    "create them, list and read them, claim and release them, and record decisions; read "
    "decisions as a feed; register webhooks that are called when a task is decided."
)
_ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "invalid"}
_NOTICES = {
    "claimed": "You claimed this case.",
    "released": "You released this case; it is back in its queue.",
    "decided": "Decision recorded. The case is decided.",
    "first": "Decision recorded. A senior underwriter gives the second review.",
    "escalated": "Decision recorded. The reviewers disagree: the case is in the escalation queue.",
    "waiting": "Information requested. The case waits until it arrives.",
    "returned": "Information received. The case is back in the queue.",
}


# --------------------------------------------------------------------------- API models


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", examples=["R07"])
    text: str = Field("", max_length=500, examples=["Credit bureau score is low"])
    feature: str | None = Field(None, max_length=128, examples=["bureau_score"])


class TaskCreate(BaseModel):
    """A review task. What is left out is filled from the decision policy (band, four eyes,
    priority, due time) and the model recommendation from the PD."""

    model_config = ConfigDict(extra="forbid")
    application_id: str = Field(min_length=1, max_length=128, examples=["APP-2026-000123"])
    pd: float | None = Field(None, ge=0, le=1, description="probability of default from the caller's model")
    amount: float | None = Field(None, ge=0, description="amount requested")
    reasons: list[ReasonIn] = Field(default_factory=list, max_length=20, description="top reasons, most important first")
    quality_flags: list[str] = Field(default_factory=list, max_length=50, description="inputs the reviewer should not take at face value")
    applicant: dict[str, Any] = Field(default_factory=dict, description="applicant summary shown to the reviewer")
    application_date: date | None = None
    score_band: str | None = Field(None, max_length=16)
    model_recommendation: Literal["approve", "decline"] | None = None
    confidence: float | None = Field(None, ge=0, le=1)
    model_version: str | None = Field(None, max_length=64)
    policy_version: str | None = Field(None, max_length=64)
    policy_rule: str | None = Field(None, max_length=128, description="the rule that sent the case to review")
    priority: Literal["high", "normal", "low"] | None = None
    due_hours: int | None = Field(None, ge=1, le=24 * 90)
    requires_four_eyes: bool | None = Field(None, description="can add four eyes; the policy's amount threshold always applies")
    blind_review: bool = False


class ReasonOut(BaseModel):
    code: str
    text: str = ""
    feature: str | None = None


class TaskOut(BaseModel):
    case_id: str
    application_id: str
    application_date: date | None
    status: Literal["open", "claimed", "waiting_info", "awaiting_second_review", "escalated", "decided"]
    queue: str
    priority: str
    created_at: datetime
    updated_at: datetime
    due_at: datetime
    overdue: bool
    requires_four_eyes: bool
    amount: float | None
    pd: float | None
    score_band: str | None
    model_version: str | None
    policy_version: str | None
    policy_rule: str | None
    model_recommendation: Literal["approve", "decline"] | None = Field(
        description="null while a blind review is undecided, or when there is no score")
    blind_review: bool
    confidence: float | None
    reasons: list[ReasonOut]
    quality_flags: list[str]
    applicant_summary: dict[str, Any]
    claimed_by: str | None
    claimed_at: datetime | None
    claim_expires_at: datetime | None = Field(
        None, description="a claim still held then goes back to the queue (the queue's idle limit)")
    expert_queue: str = Field(description="the policy's expert queue: who may work the task")
    source: Literal["batch", "api"]
    final_decision: Literal["approve", "decline"] | None
    decided_at: datetime | None


class DecisionOut(BaseModel):
    seq: int = Field(description="the feed cursor: increases with every decision")
    decision_id: str
    case_id: str
    reviewer: str
    reviewer_role: str
    decision: Literal["approve", "decline", "request_info"]
    reason_codes: list[str]
    note: str | None
    stage: Literal["first", "second", "final"]
    is_override: bool
    override_direction: Literal["low_side", "high_side"] | None
    is_final: bool
    case_status_after: str
    decided_at: datetime


class EventOut(BaseModel):
    event_id: int
    event_type: str
    actor: str
    at: datetime
    details: dict[str, Any]


class TaskDetail(TaskOut):
    decisions: list[DecisionOut]
    events: list[EventOut]


class ReviewerDecisionOut(BaseModel):
    reviewer: str
    role: str
    stage: Literal["first", "second", "final"]
    decision: Literal["approve", "decline", "request_info"]
    reason_codes: list[str]
    is_override: bool
    override_direction: Literal["low_side", "high_side"] | None
    decided_at: str = Field(description="ISO 8601, UTC")


class ReviewLineageOut(BaseModel):
    case_id: str
    source: str
    status: str
    queue: str
    requires_four_eyes: bool
    model_version_shown: str | None = Field(description="the model version the reviewers were shown")
    policy_version_shown: str | None
    final_decision: Literal["approve", "decline"] | None
    decided_at: str | None
    reviewers: list[ReviewerDecisionOut] = Field(description="every reviewer's decision, oldest first")


class LineageOut(BaseModel):
    """Where a decision comes from; the same record as ``aios explain --json``."""

    application_id: str
    origin: str | None = Field(
        default=None, description="batch (a landing file) or online (POST /api/decisions); a batch row of the same id wins")
    online_decision: dict[str, Any] | None = Field(
        default=None, description="for an online decision: its id, when it was made, who asked, its review case and queue")
    inputs: dict[str, Any] | None = Field(description="the application as loaded under the data contract")
    quarantine_history: list[dict[str, Any]] = Field(
        description="earlier rows of this application that broke the contract: day, file, row, column, reason")
    features: dict[str, Any] | None = Field(description="the model's features for this application")
    features_source: str | None = Field(
        default=None, description="application_features, or how they were recomputed for an online decision")
    score: dict[str, Any] | None = Field(description="PD, band, confidence, decision source, reasons, input flags")
    model: dict[str, Any] | None = Field(
        description="the model version that scored, with its MLflow run id and training data hash")
    policy: dict[str, Any] | None = Field(description="the policy version, fingerprint and the rule that fired")
    action: dict[str, Any] | None = Field(description="what the policy decided")
    review: ReviewLineageOut | None = Field(description="the review case and its reviewers, when people decided")


class TaskList(BaseModel):
    tasks: list[TaskOut]
    count: int
    limit: int
    offset: int


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "decline", "request_info"]
    reason_codes: list[str] = Field(default_factory=list, max_length=20, description="required for declines and overrides")
    note: str | None = Field(None, max_length=4000, description="required for overrides and second-review disagreements")


class DecisionResult(BaseModel):
    task: TaskOut
    decision: DecisionOut


class InfoReturnedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(None, max_length=4000)


class FeedDecision(DecisionOut):
    application_id: str
    application_date: date | None
    source: str
    pd: float | None
    score_band: str | None
    amount: float | None
    model_version: str | None
    policy_version: str | None
    policy_rule: str | None
    model_recommendation: str | None
    blind_review: bool
    requires_four_eyes: bool
    priority: str
    case_created_at: datetime


class DecisionFeed(BaseModel):
    decisions: list[FeedDecision]
    next_cursor: int = Field(description="pass as cursor next time; equals the cursor given when nothing is new")


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://", examples=["https://lender.example/aios-hook"])
    secret: str = Field(min_length=16, max_length=256, description="signs every delivery (HMAC-SHA256)")


class WebhookOut(BaseModel):
    id: int
    url: str
    active: bool
    created_by: str
    created_at: datetime


class DeliveryOut(BaseModel):
    id: int
    webhook_id: int
    event: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class AuditStatus(BaseModel):
    ok: bool
    first_bad_seq: int | None
    head_seq: int | None
    head_hash: str | None


class Me(BaseModel):
    name: str
    role: str
    queues: list[str] = Field(default_factory=list, description="the expert queues this user may work")


class FieldProblemOut(BaseModel):
    field: str = Field(description="the contract column (or request field) at fault")
    message: str


class ContractErrorOut(BaseModel):
    error: Literal["invalid"]
    message: str
    details: list[FieldProblemOut] = Field(default_factory=list, description="one entry per bad field (none when "
                                           "the request itself is refused, e.g. a reused Idempotency-Key)")


class ReviewTaskRef(BaseModel):
    case_id: str
    queue: str = Field(description="the expert queue the task waits in")
    status: str
    priority: str
    due_at: datetime
    requires_four_eyes: bool


class OnlineDecisionOut(BaseModel):
    decision_id: str
    application_id: str
    application_date: date
    decided_at: datetime
    action: Literal["auto_approve", "auto_decline", "review"]
    pd: float = Field(description="probability of default")
    score_band: str | None
    confidence: float | None
    reasons: list[ReasonOut] = Field(description="principal reasons, most important first; given where the "
                                                  "policy requires them (declines and referrals)")
    quality_flags: list[str]
    policy_rule: str = Field(description="the rule that decided")
    policy_hard_rule: str | None = Field(description="a hard rule that held (also recorded while automation is paused)")
    requires_four_eyes: bool
    model_version: str | None = Field(description="the champion version that scored; null with the fallback rules")
    decision_source: Literal["model", "fallback_rules"]
    fallback_reason: str | None = Field(description="why the model could not be used")
    policy_version: str
    policy_fingerprint: str
    automation_paused: bool
    review: ReviewTaskRef | None = Field(description="the review task opened for a referral")


class PolicyEvaluateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    application: dict[str, Any] = Field(description="the application columns the policy names (others are "
                                                    "checked against the contract if given)")
    pd: float | None = Field(None, ge=0, le=1, description="the PD to decide on; null: no score (or, with "
                                                           "decision_source fallback, the fallback scorecard's)")
    decision_source: Literal["model", "fallback"] = "model"
    automation_paused: bool | None = Field(None, description="null: the operators' switch as it is now")


class PolicyEvaluationOut(BaseModel):
    action: Literal["auto_approve", "auto_decline", "review"]
    rule: str = Field(description="the rule that fired")
    rule_description: str
    hard_rule: str | None
    score_band: str | None
    requires_four_eyes: bool
    priority: str | None
    due_hours: int | None
    reasons_required: bool
    pd: float | None
    decision_source: Literal["model", "fallback"]
    automation_paused: bool
    queue: str | None = Field(description="the expert queue a referral would land in")
    policy_version: str
    policy_fingerprint: str


class ErrorOut(BaseModel):
    error: str
    message: str


_ERRORS = {code: {"model": ErrorOut, "description": _ERROR_CODES[code].replace("_", " ")} for code in (401, 403, 404, 409, 422)}
# a POST can also meet a body that is not JSON text, or a malformed Idempotency-Key
_WRITE_ERRORS = {**_ERRORS, 400: {"model": ErrorOut, "description": "unreadable body or malformed Idempotency-Key"}}


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class RawRequest:
    method: str
    path: str
    body: bytes
    idempotency_key: str | None


async def raw_request(
    request: Request,
    idempotency_key: str | None = Header(
        None, alias="Idempotency-Key", max_length=MAX_IDEMPOTENCY_KEY,
        description="same key and body: the first answer again; same key, other body: 422",
    ),
) -> RawRequest:
    return RawRequest(method=request.method, path=request.url.path, body=await request.body(),
                      idempotency_key=idempotency_key)


def _json_safe(value: Any) -> Any:
    """NaN and infinities (which Python's JSON parser accepts) as text: JSON cannot carry them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _error_body(code: str, message: str) -> dict[str, str]:
    return {"error": code, "message": message}


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"


class _LoginRequired(Exception):
    def __init__(self, next_path: str):
        self.next_path = next_path


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _request_hash(raw: RawRequest) -> str:
    try:
        body = canonical_json(json.loads(raw.body)) if raw.body else ""
    except ValueError:
        body = raw.body.decode("utf-8", "replace")
    return hashlib.sha256(f"{raw.method} {raw.path}\n{body}".encode("utf-8")).hexdigest()


def _fmt_when(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def _fmt_pd(value: Any) -> str:
    return "–" if value is None else f"{value:.4f}"


def _fmt_plain(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and abs(value) >= 10000:
        return f"{value:,}"
    return str(value)


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))
    env.filters["when"] = _fmt_when
    env.filters["pd"] = _fmt_pd
    env.filters["percent"] = lambda v: "–" if v is None else f"{v * 100:.1f}%"
    env.filters["money"] = lambda v: "–" if v is None else f"{v:,.0f}"
    env.filters["ratio"] = lambda v: "–" if v is None else f"{v:.2f}"
    env.filters["plain"] = _fmt_plain
    return env


def _describe(details: dict[str, Any]) -> str:
    parts = []
    for key, value in details.items():
        if value in (None, "", [], {}):
            continue
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, datetime):
            value = _fmt_when(value)
        parts.append(f"{key.replace('_', ' ')}: {value}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- the app


def create_app(
    store: ReviewStore,
    *,
    webhook_sender: Sender | None = None,
    clock: Callable[[], datetime] | None = None,
    policy: Any = None,
    session_secret: bytes | None = None,
    webhook_attempts: int = 3,
    webhook_backoff_seconds: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    online: OnlineDecisions | None = None,
    lineage: Callable[[str], dict[str, Any]] | None = None,
) -> FastAPI:
    """The review service over ``store``.

    ``webhook_sender(url, body, headers) -> status`` replaces the HTTP client (tests pass a
    fake); ``clock`` replaces the wall clock (aware UTC datetimes); ``policy`` defaults to the
    policy in force (``load_policy()``), fills what a task leaves out and declares the expert
    queues the store then enforces. ``online`` makes the online decisions (default: built on
    first use from the data directory, ``OnlineDecisions.from_environment``, with this policy).
    The session secret comes from ``session_secret``, else ``$AIOS_REVIEW_SECRET``, else a
    random one kept in the store. ``lineage(application_id)`` gives a decision's record for
    ``/api/tasks/{case_id}/lineage`` (default: ``aios explain``'s, from the data directory's
    warehouse and registry and this store).
    """
    if policy is None and online is not None:
        policy = online.policy
    elif policy is None:
        from aios_pipelines.policy.policy import load_policy

        policy = load_policy()
    if online is not None and online.policy is not policy:
        raise ValueError("the online decisions must use the service's policy (pass the same object)")
    clock = clock or utcnow
    store.create_all()
    rules = QueueRules(policy)
    store.use_queues(rules)
    if session_secret is None:
        configured = os.environ.get(SECRET_ENV)
        session_secret = configured.encode("utf-8") if configured else store.service_secret()
    signer = SessionSigner(session_secret)
    dispatcher = WebhookDispatcher(store, webhook_sender, attempts=webhook_attempts,
                                   backoff_seconds=webhook_backoff_seconds, sleep=sleep)
    cutoff = publish.recommendation_cutoff(policy)
    catalog = reason_catalog()
    templates = _environment()

    app = FastAPI(
        title="AIOS review service",
        version=_package_version(),
        description=API_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.store = store
    app.state.dispatcher = dispatcher

    def now() -> datetime:
        return clock()

    online_state: dict[str, OnlineDecisions | None] = {"service": online}
    online_lock = threading.Lock()

    def decisions_service() -> OnlineDecisions:
        """The online decisions, built from the data directory on first use when not given."""
        service = online_state["service"]
        if service is None:
            with online_lock:
                if online_state["service"] is None:
                    online_state["service"] = OnlineDecisions.from_environment(policy=policy)
                service = online_state["service"]
        return service  # type: ignore[return-value]

    def champion_holder() -> Any:
        service = online_state["service"]
        return service.champion if service is not None else None

    metrics = ServiceMetrics(store, clock=now, champion=champion_holder)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # The security headers go outside Starlette's own error middleware too, so that a 500 it
    # produces carries them like every other response.
    build_stack = app.build_middleware_stack
    app.build_middleware_stack = lambda: SecurityHeadersMiddleware(build_stack())  # type: ignore[method-assign]
    app.state.metrics = metrics
    app.state.online = decisions_service

    # ------------------------------------------------------------------ errors

    def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("user", None)
        context.setdefault("csrf", "")
        html = templates.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status_code)  # security headers: SecurityHeadersMiddleware

    def error_page(status_code: int, message: str) -> HTMLResponse:
        headings = {403: "Not allowed", 404: "Not found", 409: "Someone got there first", 422: "Cannot do that"}
        return render("error.html", status_code, status=status_code, heading=headings.get(status_code, "Error"),
                      message=message)

    @app.exception_handler(ReviewError)
    async def _review_error(request: Request, exc: ReviewError):
        if _is_api(request):
            return JSONResponse(_error_body(exc.code, exc.message), status_code=exc.status_code)
        return error_page(exc.status_code, exc.message)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(jsonable_encoder(exc.detail))
        if _is_api(request):
            return JSONResponse(_error_body(_ERROR_CODES.get(exc.status_code, "error"), message),
                                status_code=exc.status_code, headers=getattr(exc, "headers", None))
        return error_page(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        problems = _json_safe(jsonable_encoder(exc.errors(), custom_encoder={Exception: str}))
        for e in problems:  # every 422 detail names its field and says what is wrong, as FieldProblemOut
            e["field"] = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            e["message"] = str(e.get("msg", "invalid"))
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in problems)
        return JSONResponse({**_error_body("invalid", summary or "invalid request"), "details": problems},
                            status_code=422)

    @app.exception_handler(_LoginRequired)
    async def _login_required(request: Request, exc: _LoginRequired):
        return RedirectResponse("/login?" + urlencode({"next": exc.next_path}), status_code=303)

    # ------------------------------------------------------------------ API auth

    def api_user(authorization: str | None = Header(None, description="Bearer <token>")) -> User:
        if not authorization:
            raise HTTPException(401, "missing Authorization header: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, "the Authorization header must be 'Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})
        user = store.authenticate(token.strip())
        if user is None:
            raise HTTPException(401, "unknown or deactivated token", headers={"WWW-Authenticate": "Bearer"})
        return user

    def writer(user: User = Depends(api_user)) -> User:
        if not user.can_write:
            raise HTTPException(403, f"{user.name} is a {user.role}: read-only")
        return user

    def admin(user: User = Depends(api_user)) -> User:
        if not user.is_admin:
            raise HTTPException(403, f"only an admin may do this; {user.name} is a {user.role}")
        return user

    def auditor(user: User = Depends(api_user)) -> User:
        if user.role not in ("admin", "risk_analyst"):
            raise HTTPException(403, f"only admins and risk analysts verify the audit log; {user.name} is a {user.role}")
        return user

    def task_json(case: dict[str, Any], at: datetime) -> dict[str, Any]:
        task = dict(case)
        task["expert_queue"] = store.queue_of(case)
        task["overdue"] = case["status"] != "decided" and case["due_at"] < at
        if case["blind_review"] and case["status"] != "decided":
            task["model_recommendation"] = None
        return task

    def idempotent(user: User, raw: RawRequest, action: Callable[[], tuple[int, Any]]) -> JSONResponse:
        """Run ``action`` once per Idempotency-Key; replay its answer for the same request."""
        key = raw.idempotency_key
        if key is None:
            status, payload = action()
            return JSONResponse(jsonable_encoder(payload), status_code=status)
        key = key.strip()
        if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
            raise HTTPException(400, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters")
        state = store.idempotency_begin(user.name, key, raw.method, raw.path, _request_hash(raw), now=now())
        if state.kind == "mismatch":
            raise HTTPException(422, f"Idempotency-Key {key!r} was already used for a different request")
        if state.kind == "in_progress":
            raise HTTPException(409, f"a request with Idempotency-Key {key!r} is still being processed; retry shortly")
        if state.kind == "replay":
            return JSONResponse(json.loads(state.body or "null"), status_code=state.status or 200,
                                headers={"Idempotent-Replayed": "true"})
        try:
            try:
                status, payload = action()
            except ReviewError as exc:
                status, payload = exc.status_code, _error_body(exc.code, exc.message)
        except Exception:
            store.idempotency_abandon(user.name, key)
            raise
        body = jsonable_encoder(payload)
        store.idempotency_complete(user.name, key, status, json.dumps(body))
        return JSONResponse(body, status_code=status)

    # ------------------------------------------------------------------ API

    stylesheet = STYLESHEET.read_bytes()

    @app.get("/static/review.css", include_in_schema=False)
    def review_css() -> Response:
        return Response(stylesheet, media_type="text/css; charset=utf-8")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/me", response_model=Me, tags=["users"], summary="Who the token belongs to", responses=_ERRORS)
    def api_me(user: User = Depends(api_user)) -> Me:
        return Me(name=user.name, role=user.role, queues=rules.workable(user.name, user.role) if user.can_write else [])

    @app.post("/api/tasks", status_code=201, response_model=TaskOut, tags=["tasks"], summary="Create a review task",
              responses=_WRITE_ERRORS)
    def api_create_task(body: TaskCreate, user: User = Depends(writer), raw: RawRequest = Depends(raw_request)):
        def action() -> tuple[int, Any]:
            routing = publish.route_task(policy, pd=body.pd, amount=body.amount, applicant=body.applicant,
                                         rule=body.policy_rule)
            row = {
                "application_id": body.application_id,
                "application_date": body.application_date,
                "pd": body.pd,
                "amount": body.amount,
                "reasons": [r.model_dump() for r in body.reasons],
                "quality_flags": body.quality_flags,
                "applicant_summary": body.applicant,
                "score_band": body.score_band or routing["score_band"],
                "model_recommendation": body.model_recommendation or publish.model_recommendation(body.pd, cutoff),
                "confidence": body.confidence,
                "model_version": body.model_version,
                "policy_version": body.policy_version or routing["policy_version"],
                "policy_rule": routing["policy_rule"],
                "priority": body.priority or routing["priority"],
                "due_hours": body.due_hours or routing["due_hours"],
                "requires_four_eyes": bool(body.requires_four_eyes) or routing["requires_four_eyes"],
                "blind_review": body.blind_review,
                "expert_queue": routing["expert_queue"],
            }
            at = now()
            return 201, task_json(store.create_task(row, actor=user.name, now=at), at)

        return idempotent(user, raw, action)

    @app.get("/api/tasks", response_model=TaskList, tags=["tasks"], summary="List tasks", responses=_ERRORS)
    def api_list_tasks(
        user: User = Depends(api_user),
        status: str | None = Query(None, description="one status, or several separated by commas"),
        priority: Literal["high", "normal", "low"] | None = None,
        queue: Literal["standard", "four_eyes", "second_review", "escalation"] | None = None,
        mine: bool = Query(False, description="only tasks claimed by the caller"),
        overdue: bool | None = Query(None, description="true: only overdue; false: only not overdue"),
        expert_queue: str | None = Query(None, max_length=64, description="only tasks of this expert queue"),
        workable: bool = Query(False, description="only tasks in the expert queues the caller may work "
                                                  "(and, for seniors, escalations)"),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=MAX_SQL_INT),
    ) -> TaskList:
        at = now()
        statuses = [s.strip() for s in status.split(",") if s.strip()] if status else None
        queues: list[str] | None = None
        if workable:
            queues = rules.workable(user.name, user.role) if user.can_write else []
        if expert_queue is not None:
            queues = [q for q in (queues if queues is not None else [expert_queue]) if q == expert_queue]
        found = store.list_cases(status=statuses, mine=user.name if mine else None, overdue=overdue, priority=priority,
                                 queue=queue, expert_queue=queues, or_escalated=workable and user.is_senior,
                                 now=at, limit=limit, offset=offset)
        return TaskList(tasks=[task_json(c, at) for c in found], count=len(found), limit=limit, offset=offset)

    @app.get("/api/tasks/{case_id}", response_model=TaskDetail, tags=["tasks"], summary="One task with its history",
             responses=_ERRORS)
    def api_get_task(case_id: str, user: User = Depends(api_user)):
        at = now()
        case = store.get_case(case_id)
        return {**task_json(case, at), **store.case_history(case_id)}

    def default_lineage(application_id: str) -> dict[str, Any]:
        from aios_pipelines.decision_record import decision_record, jsonable_record
        from aios_pipelines.settings import aios_paths

        return jsonable_record(decision_record(aios_paths(), application_id, review_store=store))

    lineage_of = lineage or default_lineage

    @app.get("/api/tasks/{case_id}/lineage", response_model=LineageOut, tags=["tasks"],
             summary="Where the task's decision comes from",
             description="The application's inputs and quarantine history, its features, the score with the "
                         "model version (MLflow run, training data hash), the policy version and rule, the "
                         "action, and the reviewers: the record `aios explain --json` prints. 404 when the "
                         "application is not in the warehouse (a task created through this API by another "
                         "system).", responses=_ERRORS)
    def api_task_lineage(case_id: str, user: User = Depends(api_user)):
        from aios_pipelines.decision_record import DecisionRecordError

        case = store.get_case(case_id)
        try:
            return lineage_of(case["application_id"])
        except DecisionRecordError as exc:
            raise HTTPException(404, f"application {case['application_id']!r} of task {case_id} has no decision "
                                     "record in the warehouse") from exc

    @app.post("/api/tasks/{case_id}/claim", response_model=TaskOut, tags=["tasks"], summary="Claim a task",
              responses=_WRITE_ERRORS)
    def api_claim(case_id: str, user: User = Depends(writer), raw: RawRequest = Depends(raw_request)):
        def action() -> tuple[int, Any]:
            at = now()
            return 200, task_json(store.claim(case_id, user, now=at), at)

        return idempotent(user, raw, action)

    @app.post("/api/tasks/{case_id}/release", response_model=TaskOut, tags=["tasks"], summary="Release a claimed task",
              responses=_WRITE_ERRORS)
    def api_release(case_id: str, user: User = Depends(writer), raw: RawRequest = Depends(raw_request)):
        def action() -> tuple[int, Any]:
            at = now()
            return 200, task_json(store.release(case_id, user, now=at), at)

        return idempotent(user, raw, action)

    @app.post(
        "/api/tasks/{case_id}/decision", response_model=DecisionResult, tags=["tasks"], summary="Decide a task",
        description="approve, decline or request_info. An unclaimed task is claimed by the caller in the same "
                    "transaction; when two callers race, one decision is stored and the other gets 409. Declines "
                    "need reason codes; overriding the model's recommendation needs reason codes and a note. "
                    "Four-eyes tasks need a second review by a different senior underwriter.",
        responses=_WRITE_ERRORS,
    )
    def api_decide(case_id: str, body: DecisionIn, background: BackgroundTasks, user: User = Depends(writer),
                   raw: RawRequest = Depends(raw_request)):
        def action() -> tuple[int, Any]:
            at = now()
            outcome = store.decide(case_id, user, body.decision, body.reason_codes, body.note, now=at)
            if outcome.deliveries:
                background.add_task(dispatcher.deliver_many, outcome.deliveries)
            return 200, {"task": task_json(outcome.case, at), "decision": outcome.decision}

        return idempotent(user, raw, action)

    @app.post("/api/tasks/{case_id}/info-returned", response_model=TaskOut, tags=["tasks"],
              summary="The requested information arrived: back to the queue", responses=_WRITE_ERRORS)
    def api_info_returned(case_id: str, body: InfoReturnedIn, user: User = Depends(writer),
                          raw: RawRequest = Depends(raw_request)):
        def action() -> tuple[int, Any]:
            at = now()
            return 200, task_json(store.return_info(case_id, user.name, body.note, now=at), at)

        return idempotent(user, raw, action)

    @app.get("/api/decisions", response_model=DecisionFeed, tags=["decisions"], summary="Decisions after a cursor",
             description="Every decision with seq > cursor, oldest first, with its task's context. Start at 0 and "
                         "pass next_cursor back; a decision never appears after a later one was returned.",
             responses=_ERRORS)
    def api_decisions(user: User = Depends(api_user), cursor: int = Query(0, ge=0, le=MAX_SQL_INT), limit: int = Query(500, ge=1, le=5000)):
        rows = store.decisions_since(cursor, limit)
        return {"decisions": rows, "next_cursor": rows[-1]["seq"] if rows else cursor}

    @app.post("/api/webhooks", status_code=201, response_model=WebhookOut, tags=["webhooks"],
              summary="Register a webhook (admin)",
              description="Called with a signed POST when a task is decided (X-AIOS-Event: task.decided) or "
                          "information is requested (task.info_requested).", responses=_WRITE_ERRORS)
    def api_register_webhook(body: WebhookIn, user: User = Depends(admin), raw: RawRequest = Depends(raw_request)):
        def action() -> tuple[int, Any]:
            return 201, store.register_webhook(body.url, body.secret, actor=user.name, now=now())

        return idempotent(user, raw, action)

    @app.get("/api/webhooks", response_model=list[WebhookOut], tags=["webhooks"], summary="Webhooks (admin)",
             responses=_ERRORS)
    def api_list_webhooks(user: User = Depends(admin)):
        return store.list_webhooks()

    @app.get("/api/webhooks/{webhook_id}/deliveries", response_model=list[DeliveryOut], tags=["webhooks"],
             summary="Deliveries of a webhook (admin)", responses=_ERRORS)
    def api_deliveries(webhook_id: int = PathParam(le=MAX_SQL_INT), user: User = Depends(admin)):
        store.get_webhook(webhook_id)
        return store.list_deliveries(webhook_id)

    @app.get("/api/audit/verify", response_model=AuditStatus, tags=["audit"], summary="Verify the audit hash chain",
             responses=_ERRORS)
    def api_audit_verify(user: User = Depends(auditor)):
        ok, bad = store.verify_audit_chain()
        head = store.audit_head()
        return AuditStatus(ok=ok, first_bad_seq=bad, head_seq=head[0] if head else None, head_hash=head[1] if head else None)

    # ------------------------------------------------------------------ online decisions

    def contract_error(exc: ContractViolation) -> dict[str, Any]:
        return {**_error_body("invalid", f"the request does not satisfy the data contract: {exc}"),
                "details": [p.as_dict() for p in exc.problems]}

    def online_json(stored: dict[str, Any], case: dict[str, Any] | None) -> dict[str, Any]:
        answer = {k: stored[k] for k in OnlineDecisionOut.model_fields if k in stored and k != "review"}
        answer["review"] = None
        if case is not None:
            answer["review"] = {"case_id": case["case_id"], "queue": store.queue_of(case), "status": case["status"],
                                "priority": case["priority"], "due_at": case["due_at"],
                                "requires_four_eyes": case["requires_four_eyes"]}
        # one serialisation for the first answer, its replays and reads
        return OnlineDecisionOut.model_validate(answer).model_dump(mode="json")

    application_schema = contract_json_schema(
        (online.contract if online is not None else _load_contract()).applications, "Application")

    @app.post(
        "/api/decisions", status_code=201, response_model=OnlineDecisionOut, tags=["decisions"],
        summary="Decide one application online",
        description="Send one application (the data contract's columns). It is checked against the contract "
                    "(422 naming each bad field), turned into features, scored by the current champion and "
                    "routed by the current policy, with the same functions as the nightly batch; the answer "
                    "carries the PD, band, reasons where the policy needs them, the action, the model and "
                    "policy versions and a decision id. A referral opens a review task in the same call. When "
                    "the model cannot be used the policy's fallback rules answer (decision_source "
                    "fallback_rules). Retrying with the same Idempotency-Key returns the first answer; an "
                    "application is decided online once (409 afterwards).",
        responses={**_WRITE_ERRORS, 422: {"model": ContractErrorOut, "description": "the application breaks the contract"}},
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": application_schema}},
                                       "required": True}},
    )
    def api_decide_online(body: dict[str, Any] = Body(...), user: User = Depends(writer),
                          raw: RawRequest = Depends(raw_request)):
        service = decisions_service()

        def action() -> tuple[int, Any]:
            at = now()
            try:
                decision = service.decide(body, now=at)
            except ContractViolation as exc:
                return 422, contract_error(exc)
            case_row = None
            if decision.action == "review":
                case_row = publish.case_rows_from_scored(
                    [decision.scored], {decision.application_id: decision.application}, policy=policy)[0]
            stored, case = store.record_online_decision(decision.record(), case_row, actor=user.name, now=at)
            metrics.decisions.labels(stored["action"], stored["decision_source"]).inc()
            return 201, online_json(stored, case)

        return idempotent(user, raw, action)

    @app.get("/api/decisions/{decision_id}", response_model=OnlineDecisionOut, tags=["decisions"],
             summary="One online decision", responses=_ERRORS)
    def api_online_decision(decision_id: str, user: User = Depends(api_user)):
        stored = store.get_online_decision(decision_id)
        return online_json(stored, store.get_case(stored["case_id"]) if stored["case_id"] else None)

    @app.post(
        "/api/policy/evaluate", response_model=PolicyEvaluationOut, tags=["decisions"],
        summary="What the policy would decide (what-if)",
        description="Evaluates the decision policy alone for the given inputs (the application columns it names "
                    "and a PD) and answers with the action and the rule that fired. Read-only: it scores "
                    "nothing, stores nothing and never creates a task.",
        responses={**_WRITE_ERRORS, 422: {"model": ContractErrorOut, "description": "the inputs break the contract"}},
    )
    def api_policy_evaluate(body: PolicyEvaluateIn, user: User = Depends(api_user)):
        try:
            result = decisions_service().evaluate_policy(
                body.application, pd=body.pd, decision_source=body.decision_source,
                automation_paused=body.automation_paused, now=now())
        except ContractViolation as exc:
            return JSONResponse(contract_error(exc), status_code=422)
        queue = None
        if result["action"] == "review":
            queue = queue_for_case(policy, result["application"], pd=result["pd"], score_band=result["score_band"],
                                   rule=result["rule"], hard_rule=result["hard_rule"])
        metrics.evaluations.labels(result["action"]).inc()
        return {**{k: v for k, v in result.items() if k != "application"}, "queue": queue}

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    # ------------------------------------------------------------------ pages: session

    def session_of(request: Request) -> tuple[User, dict[str, Any]] | None:
        payload = signer.read(request.cookies.get(SESSION_COOKIE), now())
        if payload is None:
            return None
        try:
            user = store.get_user(str(payload.get("u")))
        except NotFoundError:
            return None
        if not user.active or not hmac.compare_digest(token_fingerprint(user.token_hash), str(payload.get("f"))):
            return None
        return user, payload

    def page_session(request: Request) -> tuple[User, dict[str, Any]]:
        found = session_of(request)
        if found is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise _LoginRequired(target if request.method == "GET" else "/")
        return found

    async def read_form(request: Request) -> dict[str, list[str]]:
        body = await request.body()
        if not body:
            return {}
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise HTTPException(415, "forms must be sent as application/x-www-form-urlencoded")
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "the form is too large")
        return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)

    def first(form: dict[str, list[str]], name: str) -> str:
        values = form.get(name) or [""]
        return values[0]

    async def checked_form(request: Request) -> tuple[User, dict[str, Any], dict[str, list[str]]]:
        user, session = await run_in_threadpool(page_session, request)
        form = await read_form(request)
        if not signer.check_csrf(session, first(form, CSRF_FIELD)):
            raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page and try again")
        return user, session, form

    def secure(request: Request) -> bool:
        return request.url.scheme == "https"

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/"):
        if session_of(request) is not None:
            return RedirectResponse(_safe_next(next), status_code=303)
        token = secrets.token_urlsafe(24)
        response = render("login.html", login_csrf=token, next=_safe_next(next))
        response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                            secure=secure(request), path="/login")
        return response

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        form = await read_form(request)
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
        if not cookie or not hmac.compare_digest(cookie, first(form, CSRF_FIELD)):
            raise HTTPException(403, "the sign-in form's CSRF token is missing or wrong: reload the page and try again")
        user = await run_in_threadpool(store.authenticate, first(form, "token").strip())
        next_path = _safe_next(first(form, "next"))
        if user is None:
            response = render("login.html", 401, login_csrf=cookie, next=next_path, error="That token is not valid.")
            return response
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(SESSION_COOKIE, signer.issue(user.name, user.token_hash, now()), max_age=signer.max_age_seconds,
                            httponly=True, samesite="strict", secure=secure(request), path="/")
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request):
        await checked_form(request)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # ------------------------------------------------------------------ pages: inbox and case

    @app.get("/", include_in_schema=False)
    def inbox(request: Request, status: str = "", priority: str = "", queue: str = "", mine: str = "",
              overdue: str = "", equeue: str = ""):
        user, session = page_session(request)
        at = now()
        # a reviewer sees the expert queues they may work (seniors: and every escalation);
        # risk analysts and admins see them all
        restricted = user.can_write and not user.is_admin
        visible = rules.workable(user.name, user.role) if restricted else rules.names
        if equeue in visible:
            expert_queues: list[str] | None = [equeue]
        else:
            expert_queues = visible if restricted else None
        if status == "any":
            statuses: Any = None
        elif status:
            statuses = status
        else:
            statuses = list(OPEN_STATUSES)
        limit = 300
        found = store.list_cases(status=statuses, priority=priority or None, queue=queue or None,
                                 mine=user.name if mine else None, overdue=True if overdue else None,
                                 expert_queue=expert_queues,
                                 or_escalated=restricted and user.is_senior and equeue not in visible,
                                 now=at, limit=limit)
        rows = [task_json(c, at) for c in found]
        return render("inbox.html", user=user, csrf=signer.csrf_token(session), cases=rows, limit=limit,
                      counts=store.status_counts(), statuses=STATUSES, priorities=PRIORITIES, queues=QUEUES,
                      expert_queues=visible, my_queues=visible if restricted else None,
                      filters={"status": status, "priority": priority, "queue": queue, "mine": bool(mine),
                               "overdue": bool(overdue), "equeue": equeue if equeue in visible else ""})

    def case_page(case_id: str, user: User, session: dict[str, Any], *, status_code: int = 200,
                  error: str | None = None, notice: str | None = None) -> HTMLResponse:
        at = now()
        case = task_json(store.get_case(case_id), at)
        history = store.case_history(case_id)
        voters = {d["reviewer"] for d in history["decisions"] if d["decision"] in ("approve", "decline")}
        status, holder = case["status"], case["claimed_by"]
        senior_stage = status in ("awaiting_second_review", "escalated")
        senior_ok = user.is_senior and user.name not in voters
        queue_ok = status == "escalated" or rules.may_work(user.name, user.role, case["expert_queue"])
        can = {
            "claim": user.can_write and queue_ok and holder is None and (status == "open" or (senior_stage and senior_ok)),
            "release": holder is not None and (holder == user.name or user.is_admin) and user.can_write,
            "decide": user.can_write and queue_ok and (
                status == "open" or (status == "claimed" and holder == user.name)
                or (senior_stage and senior_ok and holder in (None, user.name))
            ),
            "return_info": user.can_write and status == "waiting_info",
        }
        guidance = None
        user_reason = None
        firsts = [d for d in history["decisions"] if d["stage"] == "first" and d["decision"] != "request_info"]
        if status == "awaiting_second_review" and firsts:
            guidance = (f"Second review: {firsts[-1]['reviewer']} decided {firsts[-1]['decision']}. Agreeing decides "
                        "the case; disagreeing sends it to the escalation queue and needs a note.")
        elif status == "escalated":
            reason = next((e["details"].get("reason") for e in reversed(history["events"])
                           if e["event_type"] == "escalated"), None)
            guidance = f"Escalated ({(reason or 'escalation').replace('_', ' ')}). A senior underwriter's decision settles it."
        if not user.can_write:
            user_reason = f"You have read-only access ({user.role.replace('_', ' ')})."
        elif not queue_ok and status != "decided":
            user_reason = (f"This case is in the {case['expert_queue'].replace('_', ' ')} queue, worked by "
                           f"{rules.who(case['expert_queue']).replace('_', ' ')}.")
        elif senior_stage and not user.is_senior:
            user_reason = "Second reviews and escalations are worked by senior underwriters."
        elif senior_stage and not senior_ok:
            user_reason = "You already decided this case: another senior underwriter takes it from here."
        elif status == "claimed" and holder != user.name:
            user_reason = f"{holder} is working this case."
        timeline: list[dict[str, Any]] = []
        for e in history["events"]:
            timeline.append({"at": e["at"], "order": (0, e["event_id"]), "actor": e["actor"],
                             "what": e["event_type"].replace("_", " "), "details": _describe(
                                 {k: v for k, v in e["details"].items() if k not in ("decision", "stage")})})
        for d in history["decisions"]:
            details = {"reason codes": d["reason_codes"], "note": d["note"],
                       "override": d["override_direction"].replace("_", " ") if d["is_override"] and d["override_direction"] else None}
            timeline.append({"at": d["decided_at"], "order": (1, d["seq"]), "actor": f"{d['reviewer']} ({d['reviewer_role'].replace('_', ' ')})",
                             "what": f"{d['decision'].replace('_', ' ')} ({d['stage']} review)", "details": _describe(details)})
        timeline.sort(key=lambda item: (item["at"], item["order"]))
        case_codes = [(r["code"], r["text"]) for r in case["reasons"]]
        listed = {code for code, _ in case_codes}
        other_codes = [(code, text) for code, text in catalog.items() if code not in listed]
        return render("case.html", status_code, user=user, csrf=signer.csrf_token(session), c=case,
                      overdue=case["overdue"], can=can, guidance=guidance, user_reason=user_reason, history=timeline,
                      case_codes=case_codes, other_codes=other_codes, error=error, notice=notice)

    @app.get("/cases/{case_id}", include_in_schema=False)
    def case_view(case_id: str, request: Request, notice: str = ""):
        user, session = page_session(request)
        return case_page(case_id, user, session, notice=_NOTICES.get(notice))

    async def case_action(request: Request, case_id: str, act: Callable[[User, dict[str, list[str]]], str]) -> Response:
        user, session, form = await checked_form(request)

        def run() -> Response:
            try:
                notice = act(user, form)
            except NotFoundError:
                raise
            except ReviewError as exc:
                return case_page(case_id, user, session, status_code=exc.status_code, error=exc.message)
            return RedirectResponse(f"/cases/{case_id}?notice={notice}", status_code=303)

        return await run_in_threadpool(run)

    @app.post("/cases/{case_id}/claim", include_in_schema=False)
    async def page_claim(case_id: str, request: Request):
        def act(user: User, form: dict[str, list[str]]) -> str:
            store.claim(case_id, user, now=now())
            return "claimed"

        return await case_action(request, case_id, act)

    @app.post("/cases/{case_id}/release", include_in_schema=False)
    async def page_release(case_id: str, request: Request):
        def act(user: User, form: dict[str, list[str]]) -> str:
            store.release(case_id, user, now=now())
            return "released"

        return await case_action(request, case_id, act)

    @app.post("/cases/{case_id}/decision", include_in_schema=False)
    async def page_decide(case_id: str, request: Request, background: BackgroundTasks):
        def act(user: User, form: dict[str, list[str]]) -> str:
            decision = first(form, "decision")
            if decision not in ("approve", "decline", "request_info"):
                raise ReviewValidationError(f"unknown decision {decision!r}")
            codes = list(form.get("reason_codes", [])) + first(form, "more_codes").split(",")
            outcome = store.decide(case_id, user, decision, codes, first(form, "note"), now=now())
            if outcome.deliveries:
                background.add_task(dispatcher.deliver_many, outcome.deliveries)
            return {"decided": "decided", "awaiting_second_review": "first", "escalated": "escalated",
                    "waiting_info": "waiting"}.get(outcome.case["status"], "decided")

        return await case_action(request, case_id, act)

    @app.post("/cases/{case_id}/info-returned", include_in_schema=False)
    async def page_info_returned(case_id: str, request: Request):
        def act(user: User, form: dict[str, list[str]]) -> str:
            if not user.can_write:
                raise PermissionDeniedError(f"{user.name} is a {user.role}: read-only")
            store.return_info(case_id, user.name, first(form, "note"), now=now())
            return "returned"

        return await case_action(request, case_id, act)

    # ------------------------------------------------------------------ offline API reference

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request):
        spec = app.openapi()
        found = session_of(request)
        operations = []
        for path, methods in spec.get("paths", {}).items():
            for method, op in methods.items():
                parameters = [{
                    "name": p["name"], "where": p["in"], "required": p.get("required", False),
                    "type": _schema_type(p.get("schema", {})), "description": p.get("description", ""),
                } for p in op.get("parameters", [])]
                body_ref = (op.get("requestBody", {}).get("content", {}).get("application/json", {})
                            .get("schema", {}).get("$ref", ""))
                operations.append({
                    "id": op.get("operationId", f"{method}-{path}"), "method": method.upper(), "path": path,
                    "summary": op.get("summary", ""), "description": op.get("description", ""),
                    "parameters": parameters, "body": body_ref.rsplit("/", 1)[-1] if body_ref else None,
                    "responses": [(code, r.get("description", "")) for code, r in op.get("responses", {}).items()],
                })
        schemas = []
        for name, schema in spec.get("components", {}).get("schemas", {}).items():
            required = set(schema.get("required", []))
            fields = [{"name": field, "type": _schema_type(s), "required": field in required,
                       "description": s.get("description", "")} for field, s in schema.get("properties", {}).items()]
            schemas.append((name, fields))
        user, session = found if found else (None, None)
        return render("docs.html", user=user, csrf=signer.csrf_token(session) if session else "", spec=spec,
                      operations=operations, schemas=schemas)

    return app


def _load_contract():
    from aios_pipelines.ingestion.contract import load_contract
    from aios_pipelines.settings import contract_path

    return load_contract(contract_path())


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aios_pipelines")
    except PackageNotFoundError:
        return "0"


def _schema_type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_schema_type(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if schema.get("type") == "array":
        return f"list of {_schema_type(schema.get('items', {}))}"
    if "const" in schema:
        return json.dumps(schema["const"])
    return str(schema.get("type", "any"))


def serve(store: ReviewStore, host: str = "127.0.0.1", port: int = 8000, *,
          online: OnlineDecisions | None = None, ssl_certfile: str | None = None,
          ssl_keyfile: str | None = None) -> None:
    """Run the service with uvicorn (blocking). The online decisions come from the data
    directory unless given; the champion is loaded before the first request arrives. With
    ``ssl_certfile`` and ``ssl_keyfile`` it serves HTTPS (whether it may listen on ``host``
    at all is :func:`aios_pipelines.review.serving.decide_bind`'s call, made by the CLI)."""
    import uvicorn

    if online is None:
        online = OnlineDecisions.from_environment()
    snapshot = online.champion.refresh()
    print(f"online decisions: {'champion v' + snapshot.model_version if snapshot.model else 'fallback rules'}"
          f"{'' if snapshot.model else ' (' + str(snapshot.fallback_reason) + ')'}; policy {online.policy.version}",
          flush=True)
    tls = {"ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile} if ssl_certfile and ssl_keyfile else {}
    uvicorn.run(create_app(store, policy=online.policy, online=online), host=host, port=port, log_level="info", **tls)
