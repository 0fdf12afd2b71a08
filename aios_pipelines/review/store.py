"""The operational review store: cases, claims, decisions, users, webhooks, audit log.

SQLAlchemy Core, one code path for SQLite (embedded default, WAL mode) and PostgreSQL
(by URL). Every write runs in one transaction that also appends its audit-log entries,
and writes are serialised: SQLite takes the write lock up front (``BEGIN IMMEDIATE``),
PostgreSQL a transaction-scoped advisory lock. That keeps the audit chain linear and makes
``decisions.seq`` commit in order, which is what lets the pipeline copy decisions with a
simple "greater than the last seq I saw" cursor.

State changes that two people can race for (claiming, deciding) are also conditional
``UPDATE ... WHERE status = ...`` statements: exactly one of two racers succeeds, the
other gets :class:`ConflictError`.

Expert queues: given the policy's :class:`~aios_pipelines.review.queues.QueueRules` (the
review service installs them), the store files each new case in its queue, refuses a claim
or a decision by someone the queue does not admit (403), and gives every claim a deadline
(the queue's idle limit) after which :meth:`ReviewStore.release_idle_claims` puts the case
back. Online decisions (``POST /api/decisions``) are stored here too, with their review
case when they have one, in one transaction.

Nothing here imports Dagster.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import multiprocessing
import os
import re
import secrets
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from sqlalchemy import (
    JSON,
    DateTime,
    String,
    Text,
    and_,
    case as sql_case,
    cast,
    create_engine,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from aios_pipelines.policy.policy import DEFAULT_QUEUE
from aios_pipelines.review import audit
from aios_pipelines.review.queues import QueueRules
from aios_pipelines.review.schema import (
    ADDED_CASE_COLUMNS,
    DECISIONS,
    ONLINE_ACTIONS,
    ONLINE_SOURCES,
    PRIORITIES,
    RECOMMENDATIONS,
    ROLES,
    SENIOR_ROLES,
    SOURCES,
    STATUSES,
    WRITER_ROLES,
    UtcDateTime,
    audit_log,
    cases,
    decisions,
    idempotency_keys,
    metadata,
    online_decisions,
    review_events,
    service_settings,
    users,
    webhook_deliveries,
    webhooks,
)

DEFAULT_DUE_HOURS = 48
SQLITE_BUSY_TIMEOUT_MS = 30_000
logger = logging.getLogger(__name__)
_PG_LOCK_KEY = 0x41494F53  # "AIOS": the advisory lock every write transaction takes
_IN_CHUNK = 500  # ids per IN (...) list, below SQLite's bound-parameter limit
_AUDIT_READ_ROWS = 10_000  # audit entries fetched at a time while verifying the chain


def _sorted_json(value: Any) -> str:
    # JSON columns are written in the audit chain's canonical form (sorted keys, no spaces,
    # UTF-8): the warehouse copy carries the stored text without decoding it, and verifying
    # the chain hashes an entry's stored payload text as it is instead of decoding and
    # re-encoding it (a store written before keeps its spaced text: decoded, as before)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _as_stored(column: Any) -> Any:
    """A column read for the warehouse copy without per-value Python work: a UTC time as the
    naive UTC datetime it is stored as, a JSON column as its stored text."""
    if isinstance(column.type, UtcDateTime):
        return type_coerce(column, DateTime()).label(column.name)
    if isinstance(column.type, JSON):
        return cast(column, Text).label(column.name)
    return column
# Verifying the audit chain is CPU-bound Python (JSON, sha256): from this many entries on it
# is split into one stretch per core, each checked in its own process (about 25 us per entry
# against under a second to start a process).
PARALLEL_VERIFY_MIN_ENTRIES = 100_000
MAX_VERIFY_PROCESSES = 4

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}$")
MAX_NOTE = 4000
MAX_REASON_CODES = 20

OPEN_STATUSES = ("open", "claimed", "waiting_info", "awaiting_second_review", "escalated")
OVERDUE_ESCALATES = ("open", "claimed", "awaiting_second_review")
CLAIMABLE_STATUSES = ("claimed", "awaiting_second_review", "escalated")  # statuses a claim can be held in
PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}

EVENT_TASK_DECIDED = "task.decided"
EVENT_INFO_REQUESTED = "task.info_requested"


# --------------------------------------------------------------------------- errors


class ReviewError(Exception):
    """A request the store refuses; ``status_code`` is the HTTP status the service answers with."""

    status_code = 400
    code = "review_error"

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class NotFoundError(ReviewError):
    status_code = 404
    code = "not_found"


class ConflictError(ReviewError):
    """The case is not in a state that allows this (already claimed, decided, ...)."""

    status_code = 409
    code = "conflict"


class PermissionDeniedError(ReviewError):
    status_code = 403
    code = "forbidden"


class ReviewValidationError(ReviewError):
    """The request breaks a rule of the review process (e.g. a decline without a reason)."""

    status_code = 422
    code = "invalid"


# --------------------------------------------------------------------------- values


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class User:
    user_id: int
    name: str
    role: str
    active: bool
    created_at: datetime
    token_hash: str = field(default="", repr=False, compare=False)

    @property
    def can_write(self) -> bool:
        return self.role in WRITER_ROLES

    @property
    def is_senior(self) -> bool:
        return self.role in SENIOR_ROLES

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class DecisionOutcome:
    case: dict[str, Any]
    decision: dict[str, Any]
    deliveries: list[int]


@dataclass(frozen=True)
class IdempotencyState:
    """What an Idempotency-Key says about a request.

    ``kind``: ``new`` (reserved for this request: run it, then ``idempotency_complete``),
    ``replay`` (same request seen before: answer ``status``/``body``), ``mismatch`` (the key
    was used for a different request) or ``in_progress`` (the first request is still running).
    """

    kind: str
    status: int | None = None
    body: str | None = None


def _json_safe(value: Any) -> Any:
    """Plain JSON values: NaN becomes None, dates ISO strings, numpy scalars Python ones."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy / polars scalars
        return _json_safe(value.item())
    if hasattr(value, "tolist"):
        return _json_safe(value.tolist())
    return str(value)


def _optional_float(value: Any, what: str, *, low: float | None = None, high: float | None = None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ReviewValidationError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ReviewValidationError(f"{what} must be a number, got {value!r}") from None
    if math.isnan(number):
        return None
    if math.isinf(number) or (low is not None and number < low) or (high is not None and number > high):
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ReviewValidationError(f"{what} must lie in {bounds}, got {value!r}")
    return number


def _optional_text(value: Any, what: str, max_length: int = 128) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    result = str(value).strip()
    if len(result) > max_length:
        raise ReviewValidationError(f"{what} is longer than {max_length} characters")
    return result or None


def _as_date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ReviewValidationError(f"application_date must be a date (YYYY-MM-DD), got {value!r}") from None


def _as_aware(value: Any, what: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ReviewValidationError(f"{what} must be an ISO 8601 time, got {value!r}") from None
    if not isinstance(value, datetime):
        raise ReviewValidationError(f"{what} must be a datetime, got {value!r}")
    if value.tzinfo is None:
        raise ReviewValidationError(f"{what} must carry a time zone (UTC), got {value!r}")
    return value.astimezone(timezone.utc)


def clean_reason_codes(codes: Any) -> list[str]:
    """Reason codes as a list of distinct short codes; a string may list them with commas."""
    if codes is None:
        return []
    if isinstance(codes, str):
        codes = codes.split(",")
    cleaned: list[str] = []
    for raw in codes:
        code = str(raw).strip()
        if not code:
            continue
        if not _CODE.match(code):
            raise ReviewValidationError(
                f"reason code {code!r} is not a code (letters, digits and _ . : -, at most 32 characters)"
            )
        if code not in cleaned:
            cleaned.append(code)
    if len(cleaned) > MAX_REASON_CODES:
        raise ReviewValidationError(f"at most {MAX_REASON_CODES} reason codes, got {len(cleaned)}")
    return cleaned


def _clean_note(note: Any) -> str | None:
    if note is None:
        return None
    text_value = str(note).strip()
    if len(text_value) > MAX_NOTE:
        raise ReviewValidationError(f"the note is longer than {MAX_NOTE} characters")
    return text_value or None


def _clean_reasons(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, (list, tuple)):
        raise ReviewValidationError(f"reasons must be a list, got {type(raw).__name__}")
    reasons = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {"code": item}
        if not isinstance(item, Mapping) or not item.get("code"):
            raise ReviewValidationError(f"reasons[{i}] must be a code or a mapping with a code, got {item!r}")
        code = str(item["code"]).strip()
        if not _CODE.match(code):
            raise ReviewValidationError(f"reasons[{i}].code {code!r} is not a code")
        reasons.append({
            "code": code,
            "text": _optional_text(item.get("text"), f"reasons[{i}].text", 500) or "",
            "feature": _optional_text(item.get("feature"), f"reasons[{i}].feature"),
        })
    return reasons


def _queue_for(status: str, requires_four_eyes: bool) -> str:
    if status == "awaiting_second_review":
        return "second_review"
    if status == "escalated":
        return "escalation"
    return "four_eyes" if requires_four_eyes else "standard"


def _row(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --------------------------------------------------------------------------- the write transaction


class _Tx:
    """One write transaction: the connection, and the audit entries it appends."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self._head: tuple[int, str] | None = None
        self._pending: list[dict[str, Any]] = []

    def audit(self, at: datetime, actor: str, action: str, entity: str, entity_id: Any,
              payload: Mapping[str, Any] | None = None) -> None:
        if self._head is None:
            last = self.conn.execute(
                select(audit_log.c.seq, audit_log.c.entry_hash).order_by(audit_log.c.seq.desc()).limit(1)
            ).first()
            self._head = (last.seq, last.entry_hash) if last else (0, audit.GENESIS_HASH)
        seq = self._head[0] + 1
        body = audit.normalise_payload(payload)
        digest = audit.entry_hash(self._head[1], seq, at, actor, action, entity, str(entity_id), body)
        self._pending.append({
            "seq": seq, "at": at, "actor": actor, "action": action, "entity": entity,
            "entity_id": str(entity_id), "payload": body, "prev_hash": self._head[1], "entry_hash": digest,
        })
        self._head = (seq, digest)

    def flush(self) -> None:
        if self._pending:
            self.conn.execute(insert(audit_log), self._pending)
            self._pending = []

    # ---- reads inside the transaction

    def user(self, who: "User | str") -> User:
        name = who.name if isinstance(who, User) else str(who)
        row = self.conn.execute(select(users).where(users.c.name == name)).first()
        if row is None or not row.active:
            raise PermissionDeniedError(f"no active user {name!r}")
        return _user(row)

    def writer(self, who: "User | str") -> User:
        user = self.user(who)
        if not user.can_write:
            raise PermissionDeniedError(f"{user.name} is a {user.role}: read-only")
        return user

    def case(self, case_id: str) -> dict[str, Any]:
        row = self.conn.execute(select(cases).where(cases.c.case_id == case_id)).first()
        if row is None:
            raise NotFoundError(f"no case {case_id!r}")
        return _row(row)

    def votes(self, case_id: str) -> list[dict[str, Any]]:
        """The approve/decline decisions already recorded on a case, oldest first."""
        rows = self.conn.execute(
            select(decisions.c.reviewer, decisions.c.decision, decisions.c.stage)
            .where(decisions.c.case_id == case_id, decisions.c.decision.in_(("approve", "decline")))
            .order_by(decisions.c.seq)
        )
        return [_row(r) for r in rows]

    def event(self, case_id: str, event_type: str, actor: str, at: datetime, details: Mapping[str, Any] | None = None) -> None:
        self.conn.execute(
            insert(review_events).values(case_id=case_id, event_type=event_type, actor=actor, at=at,
                                         details=_json_safe(dict(details or {})))
        )

    def transition(self, case: Mapping[str, Any], *, expect_claimed_by: str | None | bool = False, **values: Any) -> None:
        """Conditional update: only if the case still has the status (and claim) we read."""
        condition = [cases.c.case_id == case["case_id"], cases.c.status == case["status"]]
        if expect_claimed_by is None:
            condition.append(cases.c.claimed_by.is_(None))
        elif expect_claimed_by is not False:
            condition.append(cases.c.claimed_by == expect_claimed_by)
        result = self.conn.execute(update(cases).where(and_(*condition)).values(**values))
        if result.rowcount != 1:
            current = self.case(case["case_id"])
            raise ConflictError(_state_message(current))


def _user(row: Any) -> User:
    return User(user_id=row.user_id, name=row.name, role=row.role, active=bool(row.active),
                created_at=row.created_at, token_hash=row.token_hash)


def _state_message(case: Mapping[str, Any]) -> str:
    cid = case["case_id"]
    if case["status"] == "decided":
        return f"case {cid} is already decided ({case['final_decision']})"
    if case.get("claimed_by"):
        return f"case {cid} is claimed by {case['claimed_by']} ({case['status']})"
    return f"case {cid} is {case['status']}"


# --------------------------------------------------------------------------- the store


class ReviewStore:
    """Cases, claims, decisions, users, webhooks and the hash-chained audit log."""

    def __init__(self, url: str, *, clock: Callable[[], datetime] | None = None, echo: bool = False,
                 queues: QueueRules | None = None):
        self.url = url
        self.clock = clock or utcnow
        self.queues = queues
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "future": True, "json_serializer": _sorted_json}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
            if not parsed.database or parsed.database == ":memory:":
                kwargs["poolclass"] = StaticPool
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)

    @classmethod
    def for_paths(cls, paths: Any, **kwargs: Any) -> "ReviewStore":
        """The embedded store of a data directory: SQLite in WAL mode at ``paths.review_store``."""
        path = Path(paths.review_store).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path.as_posix()}", **kwargs)

    def __repr__(self) -> str:
        return f"ReviewStore({make_url(self.url).render_as_string(hide_password=True)!r})"

    def create_all(self) -> "ReviewStore":
        """Create missing tables, indexes and append-only triggers, and add the columns a store
        created by an older version lacks (safe to call again)."""
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            metadata.create_all(conn, checkfirst=True)
            present = {c["name"] for c in inspect(conn).get_columns("cases")}
            added = [name for name in ADDED_CASE_COLUMNS if name not in present]
            for name in added:
                column = cases.c[name]
                conn.execute(text(
                    f"ALTER TABLE cases ADD COLUMN {name} {column.type.compile(dialect=conn.dialect)}"
                ))
            if added:
                for index in cases.indexes:
                    index.create(conn, checkfirst=True)
        return self

    def use_queues(self, rules: QueueRules | None) -> "ReviewStore":
        """Enforce the policy's expert queues from now on (the review service calls this)."""
        self.queues = rules
        return self

    @property
    def default_queue(self) -> str:
        return self.queues.default if self.queues is not None else DEFAULT_QUEUE

    def queue_of(self, case: Mapping[str, Any]) -> str:
        """The expert queue a case is in (older cases without one: the default queue)."""
        name = case.get("expert_queue")
        if self.queues is not None:
            return self.queues.resolve(name)
        return name or DEFAULT_QUEUE

    def _check_queue(self, case: Mapping[str, Any], who: User) -> None:
        """403 unless ``who`` may work the case's queue. Escalations are settled by any senior."""
        if self.queues is None or case["status"] == "escalated":
            return
        name = case.get("expert_queue")
        if not self.queues.may_work(who.name, who.role, name):
            queue = self.queues.resolve(name)
            raise PermissionDeniedError(
                f"case {case['case_id']} is in the {queue} queue, which {who.name} ({who.role}) may not work; "
                f"it is worked by {self.queues.who(name)}"
            )

    def _claim_deadline(self, case: Mapping[str, Any], now: datetime) -> datetime | None:
        if self.queues is None:
            return None
        return now + self.queues.idle_limit(case.get("expert_queue"))

    def dispose(self) -> None:
        self.engine.dispose()

    @property
    def single_connection(self) -> bool:
        """An in-memory SQLite store: one connection, not to be used from two threads at once
        nor from another process."""
        return self.dialect == "sqlite" and make_url(self.url).database in (None, "", ":memory:")

    def _now(self, now: datetime | None) -> datetime:
        return _as_aware(now if now is not None else self.clock(), "now")

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    @contextmanager
    def _write(self) -> Iterator[_Tx]:
        with self.engine.connect() as conn:
            conn.execution_options(aios_write=True)
            with conn.begin():
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                tx = _Tx(conn)
                yield tx
                tx.flush()

    # ------------------------------------------------------------------ users

    def add_user(self, name: str, role: str, *, actor: str = "system", now: datetime | None = None) -> tuple[User, str]:
        """Create a user; returns the user and its token. Only the token's sha256 is stored."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ReviewValidationError(
                f"user name {name!r}: letters, digits and _ . @ -, starting with a letter or digit, at most 64"
            )
        if role not in ROLES:
            raise ReviewValidationError(f"role must be one of {list(ROLES)}, got {role!r}")
        now = self._now(now)
        token = "aios_" + secrets.token_urlsafe(32)
        with self._write() as tx:
            if tx.conn.execute(select(users.c.user_id).where(users.c.name == name)).first() is not None:
                raise ConflictError(f"user {name!r} already exists")
            user_id = tx.conn.execute(
                insert(users).values(name=name, role=role, token_hash=hash_token(token), created_at=now, active=True)
            ).inserted_primary_key[0]
            tx.audit(now, actor, "user.created", "user", name, {"name": name, "role": role})
        return self.get_user(name), token

    def issue_token(self, name: str, *, actor: str = "system", now: datetime | None = None) -> str:
        """A new token for an existing user; the old one stops working at once."""
        now = self._now(now)
        token = "aios_" + secrets.token_urlsafe(32)
        with self._write() as tx:
            updated = tx.conn.execute(
                update(users).where(users.c.name == name).values(token_hash=hash_token(token))
            ).rowcount
            if not updated:
                raise NotFoundError(f"no user {name!r}")
            tx.audit(now, actor, "user.token_issued", "user", name, {"name": name})
        return token

    def get_user(self, name: str) -> User:
        with self._read() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no user {name!r}")
        return _user(row)

    def list_users(self) -> list[User]:
        with self._read() as conn:
            return [_user(r) for r in conn.execute(select(users).order_by(users.c.name))]

    def authenticate(self, token: str | None) -> User | None:
        """The active user holding ``token``, or None."""
        if not token:
            return None
        digest = hash_token(token)
        with self._read() as conn:
            row = conn.execute(select(users).where(users.c.token_hash == digest)).first()
        if row is None or not row.active or not hmac.compare_digest(row.token_hash, digest):
            return None
        return _user(row)

    def service_secret(self, key: str = "session_secret") -> bytes:
        """A random secret kept in the store (created on first use), e.g. to sign sessions."""
        with self._read() as conn:
            row = conn.execute(select(service_settings.c.value).where(service_settings.c.key == key)).first()
        if row is not None:
            return bytes.fromhex(row.value)
        now = self._now(None)
        with self._write() as tx:
            row = tx.conn.execute(select(service_settings.c.value).where(service_settings.c.key == key)).first()
            if row is not None:
                return bytes.fromhex(row.value)
            value = secrets.token_hex(32)
            tx.conn.execute(insert(service_settings).values(key=key, value=value))
            tx.audit(now, "system", "secret.created", "service_setting", key, {"key": key})
        return bytes.fromhex(value)

    # ------------------------------------------------------------------ cases in

    def _case_values(self, raw: Mapping[str, Any], *, now: datetime, source: str, index: int | None = None) -> dict[str, Any]:
        where = f"rows[{index}]: " if index is not None else ""
        try:
            application_id = _optional_text(raw.get("application_id"), "application_id")
            if not application_id:
                raise ReviewValidationError("application_id is required")
            priority = raw.get("priority") or "normal"
            if priority not in PRIORITIES:
                raise ReviewValidationError(f"priority must be one of {list(PRIORITIES)}, got {priority!r}")
            if raw.get("due_at") is not None:
                due_at = _as_aware(raw["due_at"], "due_at")
            else:
                hours = _optional_float(raw.get("due_hours"), "due_hours", low=0) if raw.get("due_hours") is not None else None
                due_at = now + timedelta(hours=hours if hours is not None else DEFAULT_DUE_HOURS)
            recommendation = raw.get("model_recommendation")
            if recommendation is not None and recommendation not in RECOMMENDATIONS:
                raise ReviewValidationError(f"model_recommendation must be approve, decline or null, got {recommendation!r}")
            if source not in SOURCES:
                raise ReviewValidationError(f"source must be one of {list(SOURCES)}, got {source!r}")
            summary = raw.get("applicant_summary") or {}
            if not isinstance(summary, Mapping):
                raise ReviewValidationError("applicant_summary must be a mapping")
            flags = raw.get("quality_flags") or []
            if isinstance(flags, str) or not isinstance(flags, (list, tuple)):
                raise ReviewValidationError("quality_flags must be a list of strings")
            four_eyes = bool(raw.get("requires_four_eyes") or False)
            expert_queue = _optional_text(raw.get("expert_queue"), "expert_queue", 64)
            if expert_queue is None and self.queues is not None:
                expert_queue = self.queues.route_case(raw)
            return {
                "case_id": uuid.uuid4().hex,
                "application_id": application_id,
                "application_date": _as_date(raw.get("application_date")),
                "created_at": now,
                "updated_at": now,
                "due_at": due_at,
                "priority": priority,
                "queue": _queue_for("open", four_eyes),
                "status": "open",
                "resume_status": None,
                "requires_four_eyes": four_eyes,
                "amount": _optional_float(raw.get("amount"), "amount", low=0),
                "pd": _optional_float(raw.get("pd"), "pd", low=0, high=1),
                "score_band": _optional_text(raw.get("score_band"), "score_band", 16),
                "model_version": _optional_text(raw.get("model_version"), "model_version", 64),
                "policy_version": _optional_text(raw.get("policy_version"), "policy_version", 64),
                "policy_rule": _optional_text(raw.get("policy_rule"), "policy_rule"),
                "model_recommendation": recommendation,
                "blind_review": bool(raw.get("blind_review") or False),
                "reasons": _clean_reasons(raw.get("reasons")),
                "quality_flags": [str(f) for f in flags],
                "applicant_summary": _json_safe(dict(summary)),
                "confidence": _optional_float(raw.get("confidence"), "confidence", low=0, high=1),
                "claimed_by": None,
                "claimed_at": None,
                "source": source,
                "final_decision": None,
                "decided_at": None,
                "expert_queue": expert_queue,
                "claim_expires_at": None,
            }
        except ReviewValidationError as exc:
            raise ReviewValidationError(where + exc.message) from None

    def _insert_cases(self, tx: _Tx, rows: list[dict[str, Any]], actor: str, now: datetime) -> None:
        tx.conn.execute(insert(cases), rows)
        tx.conn.execute(
            insert(review_events),
            [{"case_id": r["case_id"], "event_type": "created", "actor": actor, "at": now,
              "details": {"source": r["source"], "priority": r["priority"], "queue": r["queue"],
                          "expert_queue": r["expert_queue"]}} for r in rows],
        )
        for r in rows:
            tx.audit(now, actor, "case.created", "case", r["case_id"], {
                "application_id": r["application_id"], "source": r["source"], "priority": r["priority"],
                "due_at": r["due_at"], "requires_four_eyes": r["requires_four_eyes"], "pd": r["pd"],
                "model_recommendation": r["model_recommendation"], "blind_review": r["blind_review"],
                "policy_version": r["policy_version"], "policy_rule": r["policy_rule"],
                "model_version": r["model_version"], "expert_queue": r["expert_queue"],
                # what the reviewer is shown, pinned: a later change to the case's inputs shows up
                "inputs_hash": hashlib.sha256(audit.canonical_json({
                    "applicant_summary": r.get("applicant_summary"), "pd": r["pd"], "reasons": r.get("reasons"),
                    "quality_flags": r.get("quality_flags"), "confidence": r.get("confidence"),
                }).encode()).hexdigest(),
            })

    def publish_cases(self, rows: Iterable[Mapping[str, Any]], *, actor: str = "pipeline", now: datetime | None = None) -> int:
        """Open a case per row whose application has none yet; returns how many were new.

        Idempotent: an application gets one case, ever; publishing it again is a no-op.
        Row keys are the case columns (``application_id`` required; ``due_hours`` may stand in
        for ``due_at``); see :func:`aios_pipelines.review.publish.case_rows_from_scored`.
        """
        now = self._now(now)
        prepared: dict[str, dict[str, Any]] = {}
        for i, raw in enumerate(rows):
            values = self._case_values(raw, now=now, source=raw.get("source") or "batch", index=i)
            prepared.setdefault(values["application_id"], values)
        if not prepared:
            return 0
        with self._write() as tx:
            ids = list(prepared)
            existing: set[str] = set()
            for chunk in _chunks(ids):
                existing.update(
                    r.application_id for r in tx.conn.execute(
                        select(cases.c.application_id).where(cases.c.application_id.in_(chunk))
                    )
                )
            new_rows = [prepared[a] for a in ids if a not in existing]
            if new_rows:
                self._insert_cases(tx, new_rows, actor, now)
        return len(new_rows)

    def create_task(self, row: Mapping[str, Any], *, actor: str, now: datetime | None = None) -> dict[str, Any]:
        """Open one case from the task API; 409 if the application already has one."""
        now = self._now(now)
        values = self._case_values(row, now=now, source="api")
        with self._write() as tx:
            found = tx.conn.execute(
                select(cases.c.case_id).where(cases.c.application_id == values["application_id"])
            ).first()
            if found is not None:
                raise ConflictError(f"application {values['application_id']} already has case {found.case_id}")
            self._insert_cases(tx, [values], actor, now)
        return self.get_case(values["case_id"])

    # ------------------------------------------------------------------ cases out

    def get_case(self, case_id: str) -> dict[str, Any]:
        with self._read() as conn:
            row = conn.execute(select(cases).where(cases.c.case_id == case_id)).first()
        if row is None:
            raise NotFoundError(f"no case {case_id!r}")
        return _row(row)

    def applications_with_cases(self, application_ids: Iterable[str]) -> set[str]:
        """Which of ``application_ids`` have a case (one query per chunk, not per id)."""
        found: set[str] = set()
        with self._read() as conn:
            for chunk in _chunks([str(a) for a in application_ids]):
                found.update(
                    r.application_id
                    for r in conn.execute(select(cases.c.application_id).where(cases.c.application_id.in_(chunk)))
                )
        return found

    def get_case_by_application(self, application_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(select(cases).where(cases.c.application_id == str(application_id))).first()
        return _row(row) if row is not None else None

    def case_history(self, case_id: str) -> dict[str, list[dict[str, Any]]]:
        """The events and decisions of a case, oldest first."""
        with self._read() as conn:
            events = [_row(r) for r in conn.execute(
                select(review_events).where(review_events.c.case_id == case_id).order_by(review_events.c.event_id))]
            made = [_row(r) for r in conn.execute(
                select(decisions).where(decisions.c.case_id == case_id).order_by(decisions.c.seq))]
        return {"events": events, "decisions": made}

    def list_cases(
        self,
        status: str | Sequence[str] | None = None,
        mine: str | None = None,
        overdue: bool | None = None,
        priority: str | None = None,
        *,
        queue: str | None = None,
        expert_queue: str | Sequence[str] | None = None,
        or_escalated: bool = False,
        now: datetime | None = None,
        limit: int = 500,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Cases by priority, then due time. ``mine`` is a user name (cases it has claimed);
        ``overdue=True`` keeps undecided cases past due, ``False`` the others. ``expert_queue``
        keeps the cases of those expert queues (``or_escalated``: and every escalated case,
        which any senior may settle)."""
        now = self._now(now)
        query = select(cases)
        if expert_queue is not None:
            names = [expert_queue] if isinstance(expert_queue, str) else list(expert_queue)
            in_queues = cases.c.expert_queue.in_(names)
            if self.default_queue in names:  # older cases, and queues the policy no longer declares
                in_queues = or_(in_queues, cases.c.expert_queue.is_(None))
                if self.queues is not None:
                    in_queues = or_(in_queues, cases.c.expert_queue.not_in(self.queues.names))
            query = query.where(or_(in_queues, cases.c.status == "escalated") if or_escalated else in_queues)
        if status:
            statuses = [status] if isinstance(status, str) else list(status)
            unknown = [s for s in statuses if s not in STATUSES]
            if unknown:
                raise ReviewValidationError(f"unknown status {unknown}; one of {list(STATUSES)}")
            query = query.where(cases.c.status.in_(statuses))
        if priority:
            if priority not in PRIORITIES:
                raise ReviewValidationError(f"priority must be one of {list(PRIORITIES)}, got {priority!r}")
            query = query.where(cases.c.priority == priority)
        if queue:
            query = query.where(cases.c.queue == queue)
        if mine:
            query = query.where(cases.c.claimed_by == mine)
        is_overdue = and_(cases.c.due_at < now, cases.c.status != "decided")
        if overdue is True:
            query = query.where(is_overdue)
        elif overdue is False:
            query = query.where(~is_overdue)
        rank = sql_case({p: r for p, r in PRIORITY_RANK.items()}, value=cases.c.priority, else_=9)
        query = query.order_by(rank, cases.c.due_at, cases.c.case_id).limit(max(1, min(int(limit), 5000))).offset(max(0, int(offset)))
        with self._read() as conn:
            return [_row(r) for r in conn.execute(query)]

    def status_counts(self) -> dict[str, int]:
        with self._read() as conn:
            rows = conn.execute(select(cases.c.status, func.count()).group_by(cases.c.status))
            counts = {status: 0 for status in STATUSES}
            counts.update({r[0]: int(r[1]) for r in rows})
        return counts

    def queue_counts(self, now: datetime | None = None) -> dict[str, tuple[int, int]]:
        """Per expert queue: (undecided cases, of which overdue). Every declared queue is listed."""
        now = self._now(now)
        overdue = func.sum(sql_case((cases.c.due_at < now, 1), else_=0))
        query = (
            select(cases.c.expert_queue, func.count(), overdue)
            .where(cases.c.status.in_(OPEN_STATUSES))
            .group_by(cases.c.expert_queue)
        )
        counts: dict[str, tuple[int, int]] = {name: (0, 0) for name in (self.queues.names if self.queues else [])}
        with self._read() as conn:
            for name, total, late in conn.execute(query):
                key = self.queue_of({"expert_queue": name})
                before = counts.get(key, (0, 0))
                counts[key] = (before[0] + int(total), before[1] + int(late or 0))
        return counts

    # ------------------------------------------------------------------ claims

    def claim(self, case_id: str, user: User | str, *, now: datetime | None = None) -> dict[str, Any]:
        """Take a case. Open cases: any writer. Second reviews and escalations: seniors only.

        Two reviewers racing: one gets the case, the other :class:`ConflictError`."""
        now = self._now(now)
        with self._write() as tx:
            who = tx.writer(user)
            case = tx.case(case_id)
            if case["claimed_by"] == who.name:
                return case  # already yours: claiming again changes nothing
            deadline = self._claim_deadline(case, now)
            if case["status"] == "open":
                self._check_queue(case, who)
                tx.transition(case, status="claimed", claimed_by=who.name, claimed_at=now, claim_expires_at=deadline,
                              updated_at=now)
            elif case["status"] in ("awaiting_second_review", "escalated"):
                self._check_senior_may_act(tx, case, who)
                self._check_queue(case, who)
                tx.transition(case, expect_claimed_by=None, claimed_by=who.name, claimed_at=now,
                              claim_expires_at=deadline, updated_at=now)
            else:
                raise ConflictError(_state_message(case))
            details = {"status": case["status"], "expert_queue": self.queue_of(case),
                       "claim_expires_at": deadline}
            tx.event(case_id, "claimed", who.name, now, details)
            tx.audit(now, who.name, "case.claimed", "case", case_id, details)
            return tx.case(case_id)

    def release(self, case_id: str, user: User | str, *, now: datetime | None = None) -> dict[str, Any]:
        """Give a claimed case back (the claimer, or an admin)."""
        now = self._now(now)
        with self._write() as tx:
            who = tx.writer(user)
            case = tx.case(case_id)
            holder = case["claimed_by"]
            if holder is None:
                raise ConflictError(f"case {case_id} is not claimed")
            if holder != who.name and not who.is_admin:
                raise PermissionDeniedError(f"case {case_id} is claimed by {holder}; only they or an admin can release it")
            status = "open" if case["status"] == "claimed" else case["status"]
            tx.transition(case, expect_claimed_by=holder, status=status, claimed_by=None, claimed_at=None,
                          claim_expires_at=None, updated_at=now)
            details = {"claimed_by": holder, "status": status, "expert_queue": self.queue_of(case),
                       "reason": "released by the reviewer" if holder == who.name else "released by an admin"}
            tx.event(case_id, "released", who.name, now, details)
            tx.audit(now, who.name, "case.released", "case", case_id, details)
            return tx.case(case_id)

    def release_idle_claims(self, now: datetime | None = None, *, actor: str = "system:idle_claims") -> list[str]:
        """Put back in their queue the cases whose claim outlived its deadline (the queue's
        idle limit, set when the case was claimed) without a decision; returns their ids.
        Each release is a ``released`` event and a ``case.released`` audit entry with
        ``reason: idle``."""
        now = self._now(now)
        released: list[str] = []
        with self._write() as tx:
            idle = tx.conn.execute(
                select(cases).where(cases.c.claimed_by.is_not(None), cases.c.claim_expires_at.is_not(None),
                                    cases.c.claim_expires_at < now, cases.c.status.in_(CLAIMABLE_STATUSES))
                .order_by(cases.c.claim_expires_at, cases.c.case_id)
            ).fetchall()
            for row in idle:
                case = _row(row)
                status = "open" if case["status"] == "claimed" else case["status"]
                tx.transition(case, expect_claimed_by=case["claimed_by"], status=status, claimed_by=None,
                              claimed_at=None, claim_expires_at=None, updated_at=now)
                details = _json_safe({
                    "reason": "idle", "claimed_by": case["claimed_by"], "claimed_at": case["claimed_at"],
                    "claim_expired_at": case["claim_expires_at"], "status": status,
                    "expert_queue": self.queue_of(case),
                })
                tx.event(case["case_id"], "released", actor, now, details)
                tx.audit(now, actor, "case.released", "case", case["case_id"], details)
                released.append(case["case_id"])
        return released

    def _check_senior_may_act(self, tx: _Tx, case: Mapping[str, Any], who: User) -> None:
        what = "second reviews" if case["status"] == "awaiting_second_review" else "escalated cases"
        if not who.is_senior:
            raise PermissionDeniedError(f"only a senior underwriter or an admin works {what}; {who.name} is a {who.role}")
        voters = {v["reviewer"] for v in tx.votes(case["case_id"])}
        if who.name in voters:
            if case["status"] == "awaiting_second_review":
                raise PermissionDeniedError(
                    f"four eyes: {who.name} made the first decision on case {case['case_id']}; "
                    "the second review must come from a different reviewer"
                )
            raise PermissionDeniedError(
                f"{who.name} already decided case {case['case_id']}; another senior settles the escalation"
            )

    # ------------------------------------------------------------------ decisions

    def decide(
        self,
        case_id: str,
        user: User | str,
        decision: str,
        reason_codes: Sequence[str] | str | None = None,
        note: str | None = None,
        *,
        now: datetime | None = None,
    ) -> DecisionOutcome:
        """Record a decision: approve, decline or request_info.

        - an open case is claimed by the decider in the same transaction (a racer gets 409);
        - a decline needs at least one reason code; going against the model's recommendation
          (unless the review is blind) needs reason codes and a note;
        - ``request_info`` parks the case in ``waiting_info`` until :meth:`return_info`;
        - four eyes: the first decision waits for a second one from a different senior
          underwriter (or admin); agreement decides, disagreement escalates (with a note);
        - escalated cases are settled by a senior who has not decided the case before.
        """
        if decision not in DECISIONS:
            raise ReviewValidationError(f"decision must be one of {list(DECISIONS)}, got {decision!r}")
        codes = clean_reason_codes(reason_codes)
        note = _clean_note(note)
        now = self._now(now)
        with self._write() as tx:
            who = tx.writer(user)
            case = tx.case(case_id)
            status = case["status"]
            if status == "decided":
                raise ConflictError(_state_message(case))
            if status == "waiting_info":
                raise ConflictError(f"case {case_id} is waiting for information; return it to the queue first")
            if status in ("open", "claimed"):
                self._check_queue(case, who)
                if status == "open":
                    tx.transition(case, status="claimed", claimed_by=who.name, claimed_at=now, updated_at=now)
                    tx.event(case_id, "claimed", who.name, now, {"by_deciding": True})
                    tx.audit(now, who.name, "case.claimed", "case", case_id, {"status": "open", "by_deciding": True})
                    case = tx.case(case_id)
                elif case["claimed_by"] != who.name:
                    raise ConflictError(_state_message(case))
            else:  # awaiting_second_review, escalated
                self._check_senior_may_act(tx, case, who)
                self._check_queue(case, who)
                if case["claimed_by"] not in (None, who.name):
                    raise ConflictError(_state_message(case))
            votes = tx.votes(case_id)

            is_override = False
            direction: str | None = None
            if decision != "request_info":
                if decision == "decline" and not codes:
                    raise ReviewValidationError("a decline needs at least one reason code")
                recommendation = case["model_recommendation"]
                if recommendation is not None and decision != recommendation:
                    is_override = True
                    direction = "low_side" if decision == "approve" else "high_side"
                    if not case["blind_review"] and (not codes or not note):
                        raise ReviewValidationError(
                            f"the model recommends {recommendation}: overriding it needs reason codes and a note"
                        )

            stage, new_status, event_type, details = self._outcome(case, decision, votes, note)
            is_final = new_status == "decided"
            values: dict[str, Any] = {
                "status": new_status,
                "queue": _queue_for(new_status, case["requires_four_eyes"]),
                "claimed_by": None,
                "claimed_at": None,
                "claim_expires_at": None,
                "updated_at": now,
                "resume_status": ("open" if status == "claimed" else status) if new_status == "waiting_info" else None,
            }
            if is_final:
                values.update(final_decision=decision, decided_at=now)
            tx.transition(case, expect_claimed_by=case["claimed_by"], **values)

            record = {
                "decision_id": uuid.uuid4().hex,
                "case_id": case_id,
                "reviewer": who.name,
                "reviewer_role": who.role,
                "decision": decision,
                "reason_codes": codes,
                "note": note,
                "stage": stage,
                "is_override": is_override,
                "override_direction": direction,
                "is_final": is_final,
                "case_status_after": new_status,
                "decided_at": now,
            }
            seq = tx.conn.execute(insert(decisions).values(**record)).inserted_primary_key[0]
            record["seq"] = seq
            tx.event(case_id, event_type, who.name, now, {**details, "decision": decision, "stage": stage})
            tx.audit(now, who.name, "decision.recorded", "case", case_id,
                     {**{k: v for k, v in record.items() if k != "decided_at"}, "status_before": status})
            if new_status == "escalated":
                tx.audit(now, who.name, "case.escalated", "case", case_id, details)

            deliveries: list[int] = []
            if is_final or decision == "request_info":
                after = tx.case(case_id)
                event_name = EVENT_TASK_DECIDED if is_final else EVENT_INFO_REQUESTED
                deliveries = self._enqueue_webhooks(tx, event_name, _webhook_payload(event_name, after, record), now)
            return DecisionOutcome(case=tx.case(case_id), decision=record, deliveries=deliveries)

    @staticmethod
    def _outcome(case: Mapping[str, Any], decision: str, votes: list[dict[str, Any]],
                 note: str | None) -> tuple[str, str, str, dict[str, Any]]:
        """(stage, new status, event type, event details) of a decision on a case."""
        status = case["status"]
        if decision == "request_info":
            stage = {"awaiting_second_review": "second", "escalated": "final"}.get(status, "first")
            return stage, "waiting_info", "info_requested", {"note": note}
        if status in ("open", "claimed"):
            if case["requires_four_eyes"]:
                return "first", "awaiting_second_review", "second_review_requested", {}
            return "final", "decided", "decided", {}
        if status == "awaiting_second_review":
            first = [v for v in votes if v["stage"] == "first"][-1]
            if decision == first["decision"]:
                return "second", "decided", "decided", {"first_reviewer": first["reviewer"]}
            if not note:
                raise ReviewValidationError(
                    f"the first reviewer ({first['reviewer']}) decided {first['decision']}: "
                    "disagreeing escalates the case and needs a note"
                )
            return "second", "escalated", "escalated", {
                "reason": "four_eyes_disagreement", "first_reviewer": first["reviewer"],
                "first_decision": first["decision"],
            }
        # escalated: a senior settles it; a four-eyes case nobody has decided yet still needs two
        if case["requires_four_eyes"] and not votes:
            return "first", "awaiting_second_review", "second_review_requested", {"from": "escalation"}
        return "final", "decided", "decided", {"settles_escalation": True}

    def return_info(self, case_id: str, actor: str = "system", note: str | None = None, *,
                    now: datetime | None = None) -> dict[str, Any]:
        """The requested information arrived: the case goes back where it was (usually open)."""
        now = self._now(now)
        note = _clean_note(note)
        actor = actor.name if isinstance(actor, User) else str(actor)
        with self._write() as tx:
            case = tx.case(case_id)
            if case["status"] != "waiting_info":
                raise ConflictError(f"case {case_id} is {case['status']}, not waiting for information")
            back = case["resume_status"] or "open"
            tx.transition(case, status=back, resume_status=None, queue=_queue_for(back, case["requires_four_eyes"]),
                          claimed_by=None, claimed_at=None, claim_expires_at=None, updated_at=now)
            tx.event(case_id, "info_returned", actor, now, {"note": note, "status": back})
            tx.audit(now, actor, "case.info_returned", "case", case_id, {"note": note, "status": back})
            return tx.case(case_id)

    def escalate_overdue(self, now: datetime | None = None, *, actor: str = "system:overdue") -> list[str]:
        """Move every case past its due time that is still open, claimed or awaiting its second
        review to the escalation queue; returns their ids. Cases waiting for information from
        the applicant are left alone (nobody can work them), and so are escalated ones."""
        now = self._now(now)
        escalated: list[str] = []
        with self._write() as tx:
            overdue = tx.conn.execute(
                select(cases).where(cases.c.due_at < now, cases.c.status.in_(OVERDUE_ESCALATES)).order_by(cases.c.due_at)
            ).fetchall()
            for chunk in _chunks([_row(r) for r in overdue]):
                ids = [c["case_id"] for c in chunk]
                # Under the write lock nothing else moves these cases, so one UPDATE per chunk.
                tx.conn.execute(
                    update(cases).where(cases.c.case_id.in_(ids), cases.c.status.in_(OVERDUE_ESCALATES)).values(
                        status="escalated", queue="escalation", claimed_by=None, claimed_at=None, claim_expires_at=None,
                        updated_at=now)
                )
                entries = []
                for case in chunk:
                    details = _json_safe({"reason": "overdue", "from_status": case["status"], "due_at": case["due_at"],
                                          "claimed_by": case["claimed_by"]})
                    entries.append({"case_id": case["case_id"], "event_type": "escalated", "actor": actor, "at": now,
                                    "details": details})
                    tx.audit(now, actor, "case.escalated", "case", case["case_id"], details)
                    escalated.append(case["case_id"])
                tx.conn.execute(insert(review_events), entries)
        return escalated

    def decisions_since(self, cursor: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Decisions with ``seq > cursor``, in seq order, each with its case's context.

        The cursor contract: pass 0 first, then the ``seq`` of the last row you stored. ``seq``
        is assigned under the store's write lock, so no decision with a smaller seq can appear
        after you have seen a larger one; decisions are never updated or deleted.
        """
        query = (
            select(
                decisions,
                cases.c.application_id, cases.c.application_date, cases.c.created_at.label("case_created_at"),
                cases.c.source, cases.c.pd, cases.c.score_band, cases.c.amount, cases.c.model_version,
                cases.c.policy_version, cases.c.policy_rule, cases.c.model_recommendation, cases.c.blind_review,
                cases.c.requires_four_eyes, cases.c.priority,
            )
            .join(cases, cases.c.case_id == decisions.c.case_id)
            .where(decisions.c.seq > int(cursor))
            .order_by(decisions.c.seq)
            .limit(max(1, int(limit)))
        )
        with self._read() as conn:
            return [_row(r) for r in conn.execute(query)]

    def all_cases(self) -> list[dict[str, Any]]:
        """Every case as it stands now (for the warehouse copy), oldest first."""
        with self._read() as conn:
            return [_row(r) for r in conn.execute(select(cases).order_by(cases.c.created_at, cases.c.case_id))]

    def case_columns(self, columns: Sequence[str], case_ids: Iterable[str] | None = None) -> list[tuple]:
        """Every case as it stands now (or only ``case_ids``), only ``columns``, oldest first:
        the warehouse copy's read. Times are naive UTC, JSON columns their stored text."""
        query = select(*[_as_stored(cases.c[name]) for name in columns]).order_by(cases.c.created_at, cases.c.case_id)
        with self._read() as conn:
            if case_ids is None:
                return [tuple(row) for row in conn.execute(query)]
            rows = [tuple(row) for chunk in _chunks(sorted(set(case_ids)))
                    for row in conn.execute(query.where(cases.c.case_id.in_(chunk)))]
        order = {name: i for i, name in enumerate(columns)}
        if "created_at" in order and "case_id" in order:
            rows.sort(key=lambda r: (r[order["created_at"]], r[order["case_id"]]))
        return rows

    def cases_changed(self, after_seq: int, up_to_seq: int) -> set[str]:
        """Cases created or changed by the audit entries ``after_seq < seq <= up_to_seq``.

        Every change to a case appends an audit entry naming it in the same transaction, and
        seq is assigned under the write lock: an entry at or below a head read earlier is
        already committed, so (previous head, current head] is exactly what changed between.
        """
        query = (select(audit_log.c.entity_id).distinct()
                 .where(audit_log.c.seq > int(after_seq), audit_log.c.seq <= int(up_to_seq),
                        audit_log.c.entity == "case"))
        with self._read() as conn:
            return {row.entity_id for row in conn.execute(query)}

    def claim_events(self, case_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The ``claimed`` events of the given cases, in order (for the decisions copy)."""
        found: list[dict[str, Any]] = []
        ids = sorted(set(case_ids))
        with self._read() as conn:
            for chunk in _chunks(ids):
                query = (select(review_events.c.event_id, review_events.c.case_id, review_events.c.event_type,
                                review_events.c.actor, review_events.c.at)
                         .where(review_events.c.event_type == "claimed", review_events.c.case_id.in_(chunk)))
                found.extend(_row(r) for r in conn.execute(query))
        return sorted(found, key=lambda e: e["event_id"])

    def events_since(self, cursor: int = 0, limit: int = 10_000) -> list[dict[str, Any]]:
        """Case events with ``event_id > cursor`` in order (events are never updated or deleted)."""
        query = select(review_events).where(review_events.c.event_id > int(cursor)).order_by(review_events.c.event_id)
        with self._read() as conn:
            return [_row(r) for r in conn.execute(query.limit(max(1, int(limit))))]

    def event_columns(self, columns: Sequence[str], cursor: int = 0, limit: int = 10_000) -> list[tuple]:
        """``events_since`` as tuples of ``columns`` for the warehouse copy: times naive UTC,
        ``details`` the JSON text the store holds (canonical: keys sorted, compact, UTF-8; text
        an older store wrote keeps its key order and spacing)."""
        query = (select(*[_as_stored(review_events.c[name]) for name in columns])
                 .where(review_events.c.event_id > int(cursor)).order_by(review_events.c.event_id)
                 .limit(max(1, int(limit))))
        with self._read() as conn:
            return [tuple(row) for row in conn.execute(query)]

    def last_decision_seq(self) -> int:
        with self._read() as conn:
            value = conn.execute(select(func.max(decisions.c.seq))).scalar()
        return int(value or 0)

    # ------------------------------------------------------------------ audit

    def audit_entries(self, *, entity: str | None = None, entity_id: str | None = None,
                      after_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        query = select(audit_log).where(audit_log.c.seq > after_seq)
        if entity is not None:
            query = query.where(audit_log.c.entity == entity)
        if entity_id is not None:
            query = query.where(audit_log.c.entity_id == str(entity_id))
        with self._read() as conn:
            return [_row(r) for r in conn.execute(query.order_by(audit_log.c.seq).limit(limit))]

    def audit_head(self) -> tuple[int, str] | None:
        """The last entry's (seq, entry_hash): save it elsewhere to detect a cut-off tail later."""
        with self._read() as conn:
            row = conn.execute(select(audit_log.c.seq, audit_log.c.entry_hash).order_by(audit_log.c.seq.desc()).limit(1)).first()
        return (row.seq, row.entry_hash) if row else None

    def audit_entry_hash(self, seq: int) -> str | None:
        """The hash of entry ``seq`` (the genesis hash for 0), or None when there is none."""
        if int(seq) == 0:
            return audit.GENESIS_HASH
        with self._read() as conn:
            row = conn.execute(select(audit_log.c.entry_hash).where(audit_log.c.seq == int(seq))).first()
        return row.entry_hash if row else None

    def verify_audit_chain_from(self, start: tuple[int, str]) -> tuple[bool, int | None, tuple[int, str]]:
        """Verify only the entries after ``start`` = (seq, entry_hash) of an entry verified
        earlier: the entry must still carry that hash and every later one link on from it.
        Returns (ok, first bad seq, (seq, hash) of the last entry checked). An edit to an entry
        at or before ``start`` that leaves ``start``'s own hash alone is NOT seen here; the full
        :meth:`verify_audit_chain` (the daily audit checkpoint, ``aios audit verify``) sees it."""
        seq, expected_hash = int(start[0]), str(start[1])
        if self.audit_entry_hash(seq) != expected_hash:
            return False, seq, (seq, expected_hash)
        return self._verify_chain_after((seq, expected_hash))

    def verify_audit_chain(self, anchor: tuple[int, str] | None = None) -> tuple[bool, int | None]:
        """Recompute the chain: ``(True, None)`` or ``(False, first bad seq)``.

        With ``anchor`` (a head saved earlier) the entry at that seq must still carry that hash."""
        ok, bad, _ = self._verify_chain_after((0, audit.GENESIS_HASH))
        if not ok:
            return ok, bad
        if anchor is not None and self.audit_entry_hash(int(anchor[0])) != anchor[1]:
            return False, anchor[0]
        return True, None

    def _verify_chain_after(self, start: tuple[int, str]) -> tuple[bool, int | None, tuple[int, str]]:
        """:func:`audit.verify_entries_to_head` over every entry after ``start``: in this
        process, or for a long stretch on a shared database split into one stretch per core,
        each verified in its own process and joined at the seams (:func:`audit.join_segments`
        gives the same answer as one pass)."""
        with self._read() as conn:
            head = conn.execute(select(func.max(audit_log.c.seq))).scalar()
        processes = min(os.cpu_count() or 1, MAX_VERIFY_PROCESSES)
        if head is None or head - start[0] < PARALLEL_VERIFY_MIN_ENTRIES or processes < 2 or self.single_connection:
            return self._verify_chain_after_in_process(start)
        bounds = [start[0] + (head - start[0]) * i // processes for i in range(processes + 1)]
        try:
            # spawn: the caller may be a threaded server or a Dagster step; fork would copy its locks
            with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn")) as pool:
                checks = list(pool.map(_verify_audit_stretch, [self.url] * processes, bounds[:-1], bounds[1:]))
        except BrokenProcessPool as exc:  # e.g. a __main__ without the ``if __name__`` guard
            logger.warning("audit chain verified in one process: the verifying processes failed (%s)", exc)
            return self._verify_chain_after_in_process(start)
        return audit.join_segments(start, checks)

    def _verify_chain_after_in_process(self, start: tuple[int, str]) -> tuple[bool, int | None, tuple[int, str]]:
        with self._read() as conn:
            return audit.verify_entries_to_head(_audit_rows_as_stored(conn, start[0]), start)

    # ------------------------------------------------------------------ webhooks

    def register_webhook(self, url: str, secret: str, *, actor: str, now: datetime | None = None) -> dict[str, Any]:
        if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
            raise ReviewValidationError(f"webhook url must be http(s)://host/..., got {url!r}")
        if not isinstance(secret, str) or len(secret) < 16:
            raise ReviewValidationError("webhook secret must have at least 16 characters")
        now = self._now(now)
        with self._write() as tx:
            webhook_id = tx.conn.execute(
                insert(webhooks).values(url=url, secret=secret, active=True, created_by=actor, created_at=now)
            ).inserted_primary_key[0]
            tx.audit(now, actor, "webhook.registered", "webhook", webhook_id, {"url": url})
        return self.get_webhook(webhook_id)

    def get_webhook(self, webhook_id: int) -> dict[str, Any]:
        """A webhook without its secret."""
        with self._read() as conn:
            row = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).first()
        if row is None:
            raise NotFoundError(f"no webhook {webhook_id}")
        return {k: v for k, v in _row(row).items() if k != "secret"}

    def list_webhooks(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return [{k: v for k, v in _row(r).items() if k != "secret"}
                    for r in conn.execute(select(webhooks).order_by(webhooks.c.id))]

    def _enqueue_webhooks(self, tx: _Tx, event_name: str, payload: Mapping[str, Any], now: datetime) -> list[int]:
        """Outbox: one pending delivery per active webhook, in the decision's transaction."""
        body = audit.canonical_json(_json_safe(dict(payload)))
        ids = []
        for hook in tx.conn.execute(select(webhooks.c.id).where(webhooks.c.active.is_(True)).order_by(webhooks.c.id)):
            ids.append(tx.conn.execute(
                insert(webhook_deliveries).values(webhook_id=hook.id, event=event_name, payload=body, attempts=0,
                                                  created_at=now)
            ).inserted_primary_key[0])
        return ids

    def get_delivery(self, delivery_id: int) -> dict[str, Any]:
        """A delivery with its webhook's url and secret (for the sender)."""
        query = (
            select(webhook_deliveries, webhooks.c.url, webhooks.c.secret, webhooks.c.active)
            .join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id)
            .where(webhook_deliveries.c.id == delivery_id)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"no webhook delivery {delivery_id}")
        return _row(row)

    def list_deliveries(self, webhook_id: int | None = None) -> list[dict[str, Any]]:
        query = select(webhook_deliveries).order_by(webhook_deliveries.c.id)
        if webhook_id is not None:
            query = query.where(webhook_deliveries.c.webhook_id == webhook_id)
        with self._read() as conn:
            return [_row(r) for r in conn.execute(query)]

    def pending_deliveries(self, max_attempts: int) -> list[int]:
        """Deliveries not yet delivered with attempts left (for a retry sweep)."""
        with self._read() as conn:
            return [r.id for r in conn.execute(
                select(webhook_deliveries.c.id)
                .join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id)
                .where(webhook_deliveries.c.delivered_at.is_(None), webhook_deliveries.c.attempts < max_attempts,
                       webhooks.c.active.is_(True))
                .order_by(webhook_deliveries.c.id)
            )]

    def record_delivery(self, delivery_id: int, *, attempts: int, last_status: int | None, last_error: str | None,
                        delivered: bool, now: datetime | None = None) -> None:
        """The outcome of one round of attempts at a delivery."""
        now = self._now(now)
        with self._write() as tx:
            row = tx.conn.execute(select(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)).first()
            if row is None:
                raise NotFoundError(f"no webhook delivery {delivery_id}")
            total = row.attempts + attempts
            tx.conn.execute(
                update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id).values(
                    attempts=total, last_status=last_status, last_error=(last_error or None) and last_error[:1000],
                    delivered_at=now if delivered else None,
                )
            )
            tx.audit(now, "system:webhooks", "webhook.delivered" if delivered else "webhook.failed",
                     "webhook_delivery", delivery_id,
                     {"webhook_id": row.webhook_id, "event": row.event, "attempts": total, "last_status": last_status})

    # ------------------------------------------------------------------ idempotency

    def idempotency_begin(self, actor: str, key: str, method: str, path: str, request_hash: str, *,
                          now: datetime | None = None) -> IdempotencyState:
        """Reserve ``key`` for this request, or say what an earlier use of it was."""
        now = self._now(now)
        with self._write() as tx:
            row = tx.conn.execute(
                select(idempotency_keys).where(idempotency_keys.c.actor == actor, idempotency_keys.c.key == key)
            ).first()
            if row is None:
                tx.conn.execute(insert(idempotency_keys).values(
                    key=key, actor=actor, method=method, path=path, request_hash=request_hash, created_at=now))
                return IdempotencyState("new")
        if row.method != method or row.path != path or row.request_hash != request_hash:
            return IdempotencyState("mismatch")
        if row.response_status is None:
            return IdempotencyState("in_progress")
        return IdempotencyState("replay", row.response_status, row.response_body)

    def idempotency_complete(self, actor: str, key: str, status: int, body: str) -> None:
        with self._write() as tx:
            tx.conn.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.actor == actor, idempotency_keys.c.key == key)
                .values(response_status=status, response_body=body)
            )

    def idempotency_abandon(self, actor: str, key: str) -> None:
        """Forget a reservation whose request failed unexpectedly, so the client may retry."""
        with self._write() as tx:
            tx.conn.execute(
                idempotency_keys.delete().where(
                    idempotency_keys.c.actor == actor, idempotency_keys.c.key == key,
                    idempotency_keys.c.response_status.is_(None),
                )
            )

    # ------------------------------------------------------------------ online decisions

    def record_online_decision(
        self,
        decision: Mapping[str, Any],
        case_row: Mapping[str, Any] | None = None,
        *,
        actor: str,
        now: datetime | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Store one online decision and, when the policy routed it to people, its review case,
        in one transaction with their audit entries. Returns (decision row, case or None).

        ``decision`` has the columns of ``online_decisions`` but ``seq``, ``decision_id``,
        ``decided_at``, ``requested_by``, ``case_id`` and ``expert_queue`` (set here).
        An application is decided online once: a second one, or one that already has a review
        case, is a :class:`ConflictError` naming the first.
        """
        now = self._now(now)
        values = _online_values(decision, actor=actor, now=now)
        case_values = self._case_values(case_row, now=now, source="api") if case_row is not None else None
        if case_values is not None and case_values["application_id"] != values["application_id"]:
            raise ReviewValidationError("the case row is for another application than the decision")
        with self._write() as tx:
            earlier = tx.conn.execute(
                select(online_decisions.c.decision_id).where(online_decisions.c.application_id == values["application_id"])
            ).first()
            if earlier is not None:
                raise ConflictError(
                    f"application {values['application_id']} was already decided online (decision {earlier.decision_id})"
                )
            found = tx.conn.execute(
                select(cases.c.case_id).where(cases.c.application_id == values["application_id"])
            ).first()
            if found is not None:
                raise ConflictError(f"application {values['application_id']} already has review case {found.case_id}")
            case = None
            if case_values is not None:
                self._insert_cases(tx, [case_values], actor, now)
                values["case_id"] = case_values["case_id"]
                values["expert_queue"] = case_values["expert_queue"]
            values["seq"] = tx.conn.execute(insert(online_decisions).values(**values)).inserted_primary_key[0]
            tx.audit(now, actor, "online_decision.recorded", "online_decision", values["decision_id"], {
                **{k: values[k] for k in (
                    "application_id", "action", "policy_rule", "policy_hard_rule", "pd", "score_band", "model_version",
                    "decision_source", "fallback_reason", "policy_version", "policy_fingerprint", "automation_paused",
                    "case_id", "expert_queue",
                )},
                "reason_codes": [r["code"] for r in values["reasons"]],
                # the inputs the decision was made on, pinned
                "inputs_hash": hashlib.sha256(audit.canonical_json(values["application"]).encode()).hexdigest(),
            })
            if case_values is not None:
                case = tx.case(case_values["case_id"])
        return values, case

    def get_online_decision(self, decision_id: str) -> dict[str, Any]:
        with self._read() as conn:
            row = conn.execute(select(online_decisions).where(online_decisions.c.decision_id == decision_id)).first()
        if row is None:
            raise NotFoundError(f"no online decision {decision_id!r}")
        return _row(row)

    def online_decisions_since(self, cursor: int = 0, limit: int = 10_000) -> list[dict[str, Any]]:
        """Online decisions with ``seq > cursor``, in order (the same cursor contract as
        :meth:`decisions_since`: seq is assigned under the write lock, rows never change)."""
        query = (select(online_decisions).where(online_decisions.c.seq > int(cursor))
                 .order_by(online_decisions.c.seq).limit(max(1, int(limit))))
        with self._read() as conn:
            return [_row(r) for r in conn.execute(query)]

    def last_online_seq(self) -> int:
        with self._read() as conn:
            value = conn.execute(select(func.max(online_decisions.c.seq))).scalar()
        return int(value or 0)


def _online_values(decision: Mapping[str, Any], *, actor: str, now: datetime) -> dict[str, Any]:
    """An ``online_decisions`` row from what the decision service computed."""
    application_id = _optional_text(decision.get("application_id"), "application_id")
    if not application_id:
        raise ReviewValidationError("application_id is required")
    action = decision.get("action")
    if action not in ONLINE_ACTIONS:
        raise ReviewValidationError(f"action must be one of {list(ONLINE_ACTIONS)}, got {action!r}")
    source = decision.get("decision_source")
    if source not in ONLINE_SOURCES:
        raise ReviewValidationError(f"decision_source must be one of {list(ONLINE_SOURCES)}, got {source!r}")
    pd = _optional_float(decision.get("pd"), "pd", low=0, high=1)
    if pd is None:
        raise ReviewValidationError("pd is required")
    application_date = _as_date(decision.get("application_date"))
    if application_date is None:
        raise ReviewValidationError("application_date is required")
    due_hours = decision.get("review_due_hours")
    return {
        "decision_id": uuid.uuid4().hex,
        "application_id": application_id,
        "application_date": application_date,
        "decided_at": now,
        "requested_by": actor,
        "pd": pd,
        "score_band": _optional_text(decision.get("score_band"), "score_band", 16),
        "model_version": _optional_text(decision.get("model_version"), "model_version", 64),
        "decision_source": source,
        "fallback_reason": _optional_text(decision.get("fallback_reason"), "fallback_reason", 4000),
        "confidence": _optional_float(decision.get("confidence"), "confidence", low=0, high=1),
        "reasons": _clean_reasons(decision.get("reasons")),
        "quality_flags": [str(f) for f in decision.get("quality_flags") or []],
        "action": action,
        "policy_rule": _optional_text(decision.get("policy_rule"), "policy_rule") or "",
        "policy_hard_rule": _optional_text(decision.get("policy_hard_rule"), "policy_hard_rule", 64),
        "requires_four_eyes": bool(decision.get("requires_four_eyes") or False),
        "review_priority": _optional_text(decision.get("review_priority"), "review_priority", 16),
        "review_due_hours": None if due_hours is None else int(due_hours),
        "policy_version": _optional_text(decision.get("policy_version"), "policy_version", 64) or "",
        "policy_fingerprint": _optional_text(decision.get("policy_fingerprint"), "policy_fingerprint", 64) or "",
        "automation_paused": bool(decision.get("automation_paused") or False),
        "expert_queue": None,
        "case_id": None,
        "application": _json_safe(dict(decision.get("application") or {})),
    }


def _webhook_payload(event_name: str, case: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "event": event_name,
        "case_id": case["case_id"],
        "application_id": case["application_id"],
        "status": case["status"],
        "final_decision": case["final_decision"],
        "decided_at": case["decided_at"],
        "decision": {k: record[k] for k in ("decision_id", "reviewer", "reviewer_role", "decision", "reason_codes",
                                            "note", "stage", "is_override", "override_direction", "decided_at")},
        "case": {k: case[k] for k in ("pd", "score_band", "amount", "model_version", "policy_version", "policy_rule",
                                      "model_recommendation", "requires_four_eyes", "source")},
    }


def _configure_sqlite(engine: Engine) -> None:
    """WAL, a busy timeout, foreign keys; and our own BEGIN (IMMEDIATE for writes)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001
        dbapi_connection.isolation_level = None  # let the "begin" hook below issue BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("aios_write") else "BEGIN")


def _verify_audit_stretch(url: str, after_seq: int, upto_seq: int) -> audit.SegmentCheck:
    """One process's share of :meth:`ReviewStore._verify_chain_after`: the entries with
    ``after_seq < seq <= upto_seq``, read in one transaction of its own."""
    store = ReviewStore(url)
    try:
        with store._read() as conn:
            return audit.verify_segment(_audit_rows_as_stored(conn, after_seq, upto_seq))
    finally:
        store.dispose()


def _audit_rows_as_stored(conn: Connection, after_seq: int, upto_seq: int | None = None) -> Iterator[dict[str, Any]]:
    """Audit entries ``after_seq < seq <= upto_seq`` in order, for verifying the chain: the
    payload as the JSON text the store holds (``audit.verify_entries_to_head`` hashes it as it
    is when it is canonical) and ``at`` parsed from the stored UTC time by ``fromisoformat``,
    without SQLAlchemy's per-value result processing: verifying is 60-70 % reading."""
    query = select(audit_log.c.seq, type_coerce(audit_log.c.at, String).label("at"), audit_log.c.actor,
                   audit_log.c.action, audit_log.c.entity, audit_log.c.entity_id,
                   cast(audit_log.c.payload, Text).label("payload"), audit_log.c.prev_hash, audit_log.c.entry_hash)
    query = query.where(audit_log.c.seq > int(after_seq))
    if upto_seq is not None:
        query = query.where(audit_log.c.seq <= int(upto_seq))
    for rows in conn.execute(query.order_by(audit_log.c.seq)).partitions(_AUDIT_READ_ROWS):
        for seq, at, actor, action, entity, entity_id, payload, prev_hash, entry_hash in rows:
            yield {"seq": seq, "at": _stored_utc(at), "actor": actor, "action": action, "entity": entity,
                   "entity_id": entity_id, "payload": payload, "prev_hash": prev_hash, "entry_hash": entry_hash}


def _stored_utc(value: str | datetime) -> datetime:
    """A stored UTC time (SQLite's text, or the driver's naive datetime) as an aware datetime,
    what the ``UtcDateTime`` column gives back."""
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
