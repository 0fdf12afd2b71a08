"""Review-store rows as the warehouse tables the analytics read (see
``aios_pipelines.analytics.review_tables`` for their schemas). Pure: no Dagster, no I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import polars as pl

from aios_pipelines.analytics.review_tables import (
    HUMAN_DECISIONS_SCHEMA,
    REVIEW_CASES_SCHEMA,
    REVIEW_EVENTS_SCHEMA,
)


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _frame(rows: list[dict[str, Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame([{k: row.get(k) for k in schema} for row in rows], schema=schema, orient="row")


def cases_table(cases: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    rows = []
    for case in cases:
        rows.append(
            {
                **{k: case.get(k) for k in REVIEW_CASES_SCHEMA},
                "created_at": _naive_utc(case.get("created_at")),
                "due_at": _naive_utc(case.get("due_at")),
                "decided_at": _naive_utc(case.get("decided_at")),
                "model_version": None if case.get("model_version") is None else str(case["model_version"]),
            }
        )
    return _frame(rows, REVIEW_CASES_SCHEMA)


def events_table(events: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    rows = [
        {
            **{k: event.get(k) for k in REVIEW_EVENTS_SCHEMA},
            "at": _naive_utc(event.get("at")),
            "details": json.dumps(event.get("details") or {}, sort_keys=True, default=str),
        }
        for event in events
    ]
    return _frame(rows, REVIEW_EVENTS_SCHEMA)


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
