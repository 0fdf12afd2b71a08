"""Tables of the review store (SQLAlchemy Core; the same DDL on SQLite and PostgreSQL).

Times are stored as UTC without a zone (``UtcDateTime``) and come back as aware UTC
datetimes, so both engines store and compare them the same way. ``audit_log``,
``decisions``, ``review_events`` and ``online_decisions`` are append-only: triggers refuse
UPDATE and DELETE.

``queue`` is the stage lane of a case (standard, four eyes, second review, escalation) and
moves with its status; ``expert_queue`` is the policy's expert queue (who may work the case),
fixed when the case is created. Columns added after a store was first created
(``ADDED_CASE_COLUMNS``) are added to an older store by ``ReviewStore.create_all``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    DDL,
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.types import TypeDecorator

ROLES = ("underwriter", "senior_underwriter", "risk_analyst", "admin")
WRITER_ROLES = ("underwriter", "senior_underwriter", "admin")
SENIOR_ROLES = ("senior_underwriter", "admin")

STATUSES = ("open", "claimed", "waiting_info", "awaiting_second_review", "escalated", "decided")
PRIORITIES = ("high", "normal", "low")
QUEUES = ("standard", "four_eyes", "second_review", "escalation")
SOURCES = ("batch", "api")
ONLINE_ACTIONS = ("auto_approve", "auto_decline", "review")
ONLINE_SOURCES = ("model", "fallback_rules")
RECOMMENDATIONS = ("approve", "decline")
DECISIONS = ("approve", "decline", "request_info")
FINAL_DECISIONS = ("approve", "decline")
STAGES = ("first", "second", "final")
OVERRIDE_DIRECTIONS = ("low_side", "high_side")
EVENT_TYPES = (
    "created",
    "claimed",
    "released",
    "decided",
    "info_requested",
    "info_returned",
    "escalated",
    "second_review_requested",
)


class UtcDateTime(TypeDecorator):
    """An aware UTC datetime in, stored zone-less as UTC, an aware UTC datetime out."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {value!r}")
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the review store needs aware (UTC) datetimes")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


def _in(column: str, values: tuple[str, ...], *, nullable: bool = False) -> str:
    listed = ", ".join(f"'{v}'" for v in values)
    check = f"{column} IN ({listed})"
    return f"({column} IS NULL OR {check})" if nullable else check


metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("user_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    CheckConstraint(_in("role", ROLES), name="ck_users_role"),
)

cases = Table(
    "cases",
    metadata,
    Column("case_id", String(32), primary_key=True),
    Column("application_id", String(128), nullable=False, unique=True),
    Column("application_date", Date),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("due_at", UtcDateTime, nullable=False),
    Column("priority", String(16), nullable=False),
    Column("queue", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("resume_status", String(32)),  # where a waiting_info case goes back to
    Column("requires_four_eyes", Boolean, nullable=False),
    Column("amount", Float),
    Column("pd", Float),
    Column("score_band", String(16)),
    Column("model_version", String(64)),
    Column("policy_version", String(64)),
    Column("policy_rule", String(128)),
    Column("model_recommendation", String(16)),
    Column("blind_review", Boolean, nullable=False, default=False),
    Column("reasons", JSON(none_as_null=True), nullable=False),
    Column("quality_flags", JSON(none_as_null=True), nullable=False),
    Column("applicant_summary", JSON(none_as_null=True), nullable=False),
    Column("confidence", Float),
    Column("claimed_by", String(64)),
    Column("claimed_at", UtcDateTime),
    Column("source", String(16), nullable=False),
    Column("final_decision", String(16)),
    Column("decided_at", UtcDateTime),
    # Added with the expert queues (ADDED_CASE_COLUMNS): NULL in older rows = the default queue.
    Column("expert_queue", String(64)),
    Column("claim_expires_at", UtcDateTime),  # a claim still held then is released (idle)
    CheckConstraint(_in("status", STATUSES), name="ck_cases_status"),
    CheckConstraint(_in("resume_status", STATUSES, nullable=True), name="ck_cases_resume_status"),
    CheckConstraint(_in("priority", PRIORITIES), name="ck_cases_priority"),
    CheckConstraint(_in("queue", QUEUES), name="ck_cases_queue"),
    CheckConstraint(_in("source", SOURCES), name="ck_cases_source"),
    CheckConstraint(_in("model_recommendation", RECOMMENDATIONS, nullable=True), name="ck_cases_recommendation"),
    CheckConstraint(_in("final_decision", FINAL_DECISIONS, nullable=True), name="ck_cases_final_decision"),
    CheckConstraint("pd IS NULL OR (pd >= 0 AND pd <= 1)", name="ck_cases_pd"),
)
Index("ix_cases_status_priority_due", cases.c.status, cases.c.priority, cases.c.due_at)
Index("ix_cases_claimed_by", cases.c.claimed_by)
Index("ix_cases_due_at", cases.c.due_at)
Index("ix_cases_expert_queue_status", cases.c.expert_queue, cases.c.status)
Index("ix_cases_claim_expires_at", cases.c.claim_expires_at)

# Columns of ``cases`` that stores created before them lack; create_all adds them.
ADDED_CASE_COLUMNS = ("expert_queue", "claim_expires_at")

decisions = Table(
    "decisions",
    metadata,
    # seq is the copy-out cursor: assigned under the store's write lock, so a smaller seq is
    # never committed after a larger one.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("decision_id", String(32), nullable=False, unique=True),
    Column("case_id", String(32), ForeignKey("cases.case_id"), nullable=False),
    Column("reviewer", String(64), nullable=False),
    Column("reviewer_role", String(32), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("reason_codes", JSON(none_as_null=True), nullable=False),
    Column("note", Text),
    Column("stage", String(16), nullable=False),
    Column("is_override", Boolean, nullable=False),
    Column("override_direction", String(16)),
    Column("is_final", Boolean, nullable=False),
    Column("case_status_after", String(32), nullable=False),
    Column("decided_at", UtcDateTime, nullable=False),
    CheckConstraint(_in("decision", DECISIONS), name="ck_decisions_decision"),
    CheckConstraint(_in("stage", STAGES), name="ck_decisions_stage"),
    CheckConstraint(_in("override_direction", OVERRIDE_DIRECTIONS, nullable=True), name="ck_decisions_direction"),
    sqlite_autoincrement=True,
)
Index("ix_decisions_case", decisions.c.case_id)

review_events = Table(
    "review_events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(32), ForeignKey("cases.case_id"), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("details", JSON(none_as_null=True), nullable=False),
    CheckConstraint(_in("event_type", EVENT_TYPES), name="ck_events_type"),
    sqlite_autoincrement=True,
)
Index("ix_review_events_case", review_events.c.case_id, review_events.c.event_id)

# One row per decision made online (POST /api/decisions): the same columns as the batch
# ``scored_applications`` rows, the application as received (typed by the contract), and the
# review case when the policy routed it to people. seq is the copy-out cursor, as for decisions.
online_decisions = Table(
    "online_decisions",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("decision_id", String(32), nullable=False, unique=True),
    Column("application_id", String(128), nullable=False, unique=True),
    Column("application_date", Date, nullable=False),
    Column("decided_at", UtcDateTime, nullable=False),
    Column("requested_by", String(64), nullable=False),
    Column("pd", Float, nullable=False),
    Column("score_band", String(16)),
    Column("model_version", String(64)),
    Column("decision_source", String(32), nullable=False),
    Column("fallback_reason", Text),
    Column("confidence", Float),
    Column("reasons", JSON(none_as_null=True), nullable=False),  # [{code, text, feature}], most important first
    Column("quality_flags", JSON(none_as_null=True), nullable=False),
    Column("action", String(16), nullable=False),
    Column("policy_rule", String(128), nullable=False),
    Column("policy_hard_rule", String(64)),
    Column("requires_four_eyes", Boolean, nullable=False),
    Column("review_priority", String(16)),
    Column("review_due_hours", Integer),
    Column("policy_version", String(64), nullable=False),
    Column("policy_fingerprint", String(64), nullable=False),
    Column("automation_paused", Boolean, nullable=False),
    Column("expert_queue", String(64)),
    Column("case_id", String(32), ForeignKey("cases.case_id")),
    Column("application", JSON(none_as_null=True), nullable=False),  # contract columns as validated
    CheckConstraint(_in("action", ONLINE_ACTIONS), name="ck_online_action"),
    CheckConstraint(_in("decision_source", ONLINE_SOURCES), name="ck_online_source"),
    CheckConstraint("pd >= 0 AND pd <= 1", name="ck_online_pd"),
    sqlite_autoincrement=True,
)
Index("ix_online_decisions_decided_at", online_decisions.c.decided_at)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("entity", String(32), nullable=False),
    Column("entity_id", String(128), nullable=False),
    Column("payload", JSON(none_as_null=True), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False, unique=True),
)
Index("ix_audit_entity", audit_log.c.entity, audit_log.c.entity_id)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", Text, nullable=False),
    # The secret signs deliveries (HMAC), so it has to be kept as is, unlike user tokens.
    Column("secret", Text, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("webhook_id", Integer, ForeignKey("webhooks.id"), nullable=False),
    Column("event", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime),
)
Index("ix_webhook_deliveries_pending", webhook_deliveries.c.delivered_at, webhook_deliveries.c.id)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(255), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("method", String(8), nullable=False),
    Column("path", Text, nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("response_status", Integer),  # NULL while the first request is still running
    Column("response_body", Text),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("actor", "key", name="uq_idempotency_actor_key"),
)

service_settings = Table(
    "service_settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

APPEND_ONLY_TABLES = ("audit_log", "decisions", "review_events", "online_decisions")

for _table in APPEND_ONLY_TABLES:
    for _verb in ("UPDATE", "DELETE"):
        event.listen(
            metadata,
            "after_create",
            DDL(
                f"CREATE TRIGGER IF NOT EXISTS {_table}_no_{_verb.lower()} BEFORE {_verb} ON {_table} "
                f"BEGIN SELECT RAISE(ABORT, '{_table} is append-only'); END"
            ).execute_if(dialect="sqlite"),
        )
    event.listen(
        metadata,
        "after_create",
        DDL(
            f"CREATE OR REPLACE TRIGGER {_table}_append_only BEFORE UPDATE OR DELETE ON {_table} "
            "FOR EACH ROW EXECUTE FUNCTION aios_append_only()"
        ).execute_if(dialect="postgresql"),
    )

event.listen(
    metadata,
    "before_create",
    DDL(
        "CREATE OR REPLACE FUNCTION aios_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION '%% is append-only', TG_TABLE_NAME; END $$"
    ).execute_if(dialect="postgresql"),
)
