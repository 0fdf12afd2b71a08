"""Review-store rows as the warehouse tables the analytics read (see
``aios_pipelines.analytics.review_tables`` for their schemas, the online decisions' too).
Pure: no Dagster, no I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any

import polars as pl

from aios_pipelines.analytics.review_tables import (
    HUMAN_DECISIONS_SCHEMA,
    ONLINE_DECISIONS_SCHEMA,
    REVIEW_CASES_SCHEMA,
    REVIEW_EVENTS_SCHEMA,
)
from aios_pipelines.decisioning.online import ONLINE_SOURCE_FILE
from aios_pipelines.ingestion.contract import DatasetSpec
from aios_pipelines.ingestion.validation import LANDING_DATE, SOURCE_FILE_COLUMN, SOURCE_ROW_COLUMN, loaded_schema


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _frame(rows: list[dict[str, Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame([{k: row.get(k) for k in schema} for row in rows], schema=schema, orient="row")


def cases_table(
    cases: Iterable[Mapping[str, Any]], queue_of: Callable[[Mapping[str, Any]], str] | None = None
) -> pl.DataFrame:
    """``all_cases`` rows. ``queue_of`` names a case's expert queue (``ReviewStore.queue_of``:
    an older case stored before the queues existed is in the default queue); without it the
    stored value is copied as is."""
    times = {"created_at", "due_at", "decided_at"}
    return cases_table_from_columns(
        [tuple(_naive_utc(case.get(k)) if k in times else case.get(k) for k in CASE_COPY_COLUMNS) for case in cases],
        queue_of,
    )


# The store's case columns the warehouse copy keeps, in REVIEW_CASES_SCHEMA's order:
# ``ReviewStore.case_columns(CASE_COPY_COLUMNS)`` reads exactly these.
CASE_COPY_COLUMNS = tuple(REVIEW_CASES_SCHEMA)


def cases_table_from_columns(
    rows: Sequence[Sequence[Any]], queue_of: Callable[[Mapping[str, Any]], str] | None = None
) -> pl.DataFrame:
    """``cases_table`` from ``ReviewStore.case_columns(CASE_COPY_COLUMNS)`` tuples (times naive
    UTC), built column by column: a day's first copy takes every case published, so no per-row
    dicts."""
    values = {name: [row[i] for row in rows] for i, name in enumerate(CASE_COPY_COLUMNS)}
    values["model_version"] = [None if v is None else str(v) for v in values["model_version"]]
    if queue_of is not None:
        # a case's expert queue depends only on its stored name: resolve each name once
        resolved = {name: queue_of({"expert_queue": name}) for name in set(values["expert_queue"])}
        values["expert_queue"] = [resolved[name] for name in values["expert_queue"]]
    return pl.DataFrame(values, schema=REVIEW_CASES_SCHEMA)


# --------------------------------------------------------------------------- copy state

# One row, written in the copy's own transaction: how far the case copy and the audit
# verification have got, so the next copy reads only what changed since.
COPY_STATE_TABLE = "review_copy_state"
COPY_STATE_SCHEMA: dict[str, pl.DataType] = {
    "copied_at": pl.Datetime("us"),
    "cases_audit_seq": pl.Int64(),   # every case changed by audit entries up to here is copied
    "cases_audit_hash": pl.String(),  # that entry's hash: a replaced store does not match it
    "verified_seq": pl.Int64(),       # the chain verified up to this entry ...
    "verified_hash": pl.String(),     # ... which had this hash
    "policy_fingerprint": pl.String(),  # expert queues are resolved by this policy
}


def copy_state_row(state: Mapping[str, Any]) -> pl.DataFrame:
    return pl.DataFrame([{k: state.get(k) for k in COPY_STATE_SCHEMA}], schema=COPY_STATE_SCHEMA, orient="row")


def incremental_cases_from(
    state: Mapping[str, Any] | None, *, policy_fingerprint: str, head_seq: int,
    entry_hash_at: Callable[[int], str | None], cases_table_exists: bool,
) -> int | None:
    """The audit seq to copy changed cases from, or None for a full copy: on the first copy,
    when the policy (and so the expert queues) changed, or when the store no longer holds the
    entry the last copy stopped at with the same hash (a replaced or restored store)."""
    if state is None or not cases_table_exists or state.get("cases_audit_seq") is None:
        return None
    seq = int(state["cases_audit_seq"])
    if state.get("policy_fingerprint") != policy_fingerprint or seq > head_seq:
        return None
    return seq if entry_hash_at(seq) == state.get("cases_audit_hash") else None


# The store's event columns the warehouse copy keeps, in REVIEW_EVENTS_SCHEMA's order:
# ``ReviewStore.event_columns(EVENT_COPY_COLUMNS)`` reads exactly these.
EVENT_COPY_COLUMNS = tuple(REVIEW_EVENTS_SCHEMA)


def events_table(rows: Sequence[Sequence[Any]]) -> pl.DataFrame:
    """``ReviewStore.event_columns(EVENT_COPY_COLUMNS)`` tuples (times naive UTC, details the
    stored JSON text), built column by column: a day's first copy carries an event per case."""
    return pl.DataFrame({name: [row[i] for row in rows] for i, name in enumerate(EVENT_COPY_COLUMNS)},
                        schema=REVIEW_EVENTS_SCHEMA)


def decisions_table(
    decisions: Iterable[Mapping[str, Any]], claim_events: Iterable[Mapping[str, Any]]
) -> pl.DataFrame:
    """``decisions_since`` rows; ``claimed_at`` is the reviewer's last claim of the case before
    the decision (a decision on an unclaimed case claims it in the same instant)."""
    claims: dict[tuple[str, str], list[datetime]] = {}
    for event in claim_events:
        if event.get("event_type") == "claimed":
            claims.setdefault((event["case_id"], event["actor"]), []).append(_naive_utc(event["at"]))
    rows = []
    for decision in decisions:
        decided_at = _naive_utc(decision["decided_at"])
        earlier = [t for t in claims.get((decision["case_id"], decision["reviewer"]), []) if t <= decided_at]
        rows.append(
            {
                **{k: decision.get(k) for k in HUMAN_DECISIONS_SCHEMA},
                "reason_codes": list(decision.get("reason_codes") or []),
                "claimed_at": max(earlier) if earlier else decided_at,
                "decided_at": decided_at,
                "case_created_at": _naive_utc(decision.get("case_created_at")),
                "copied_cursor": int(decision["seq"]),
            }
        )
    return _frame(rows, HUMAN_DECISIONS_SCHEMA)


# --------------------------------------------------------------------------- online decisions


def online_decisions_table(rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """``ReviewStore.online_decisions_since`` rows as the warehouse's ``online_decisions``."""
    out = []
    for row in rows:
        reasons = list(row.get("reasons") or [])
        out.append(
            {
                **{k: row.get(k) for k in ONLINE_DECISIONS_SCHEMA},
                "reason_features": [r.get("feature") for r in reasons],
                "reason_codes": [r.get("code") for r in reasons],
                "reason_texts": [r.get("text") or "" for r in reasons],
                "quality_flags": list(row.get("quality_flags") or []),
                "origin": "online",
                "decided_at": _naive_utc(row.get("decided_at")),
                "copied_cursor": int(row["seq"]),
            }
        )
    return _frame(out, ONLINE_DECISIONS_SCHEMA)


def _typed_value(value: Any, column_type: str) -> Any:
    if value is None:
        return None
    if column_type == "timestamp":
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return _naive_utc(parsed)
    if column_type == "date":
        return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
    if column_type == "integer":
        return int(value)
    if column_type == "float":
        return float(value)
    return str(value)


def online_applications_table(rows: Iterable[Mapping[str, Any]], dataset: DatasetSpec) -> pl.DataFrame:
    """The applications of online decisions, shaped like ``raw_applications`` (the contract's
    columns, typed, then ``landing_date`` = the application's date, ``source_file`` =
    ``api:online`` and ``source_row`` = the decision's sequence number)."""
    schema = loaded_schema(dataset)
    out = []
    for row in rows:
        application = row.get("application") or {}
        typed = {c.name: _typed_value(application.get(c.name), c.type) for c in dataset.columns}
        typed.update({LANDING_DATE: row["application_date"], SOURCE_FILE_COLUMN: ONLINE_SOURCE_FILE,
                      SOURCE_ROW_COLUMN: int(row["seq"])})
        out.append(typed)
    return _frame(out, schema)
