"""Warehouse tables copied out of the review store: the contract between the review plane
(which writes them, through the ``review_cases`` / ``human_decisions`` assets) and the dbt
project (which reads them as sources). One place, so the two sides cannot drift apart."""

from __future__ import annotations

import polars as pl

# One row per case published to (or created in) the review store.
REVIEW_CASES_SCHEMA: dict[str, pl.DataType] = {
    "case_id": pl.String(),
    "application_id": pl.String(),
    "application_date": pl.Date(),
    "source": pl.String(),  # batch | api
    "queue": pl.String(),  # stage lane: standard | four_eyes | second_review | escalation (moves with the status)
    "expert_queue": pl.String(),  # the policy's expert queue (who may work the case), fixed at creation
    "priority": pl.String(),  # high | normal | low
    "created_at": pl.Datetime("us"),
    "due_at": pl.Datetime("us"),
    "requires_four_eyes": pl.Boolean(),
    "blind_review": pl.Boolean(),  # recommendation hidden from the reviewer (automation-bias measurement)
    "model_recommendation": pl.String(),  # approve | decline
    "pd": pl.Float64(),
    "score_band": pl.String(),
    "model_version": pl.String(),
    "policy_version": pl.String(),
    "policy_rule": pl.String(),
    "status": pl.String(),  # open | claimed | waiting_info | awaiting_second_review | escalated | decided
    "final_decision": pl.String(),  # approve | decline | NULL while pending
    "decided_at": pl.Datetime("us"),
}

# One row per human decision (a four-eyes case has two or more), copied incrementally.
HUMAN_DECISIONS_SCHEMA: dict[str, pl.DataType] = {
    "decision_id": pl.String(),
    "case_id": pl.String(),
    "application_id": pl.String(),
    "reviewer": pl.String(),
    "reviewer_role": pl.String(),
    "decision": pl.String(),  # approve | decline | request_info
    "reason_codes": pl.List(pl.String()),
    "note": pl.String(),
    "stage": pl.String(),  # first | second | final
    "model_recommendation": pl.String(),
    "is_override": pl.Boolean(),
    "override_direction": pl.String(),  # low_side (approved what the model would decline) | high_side | NULL
    "blind_review": pl.Boolean(),
    "claimed_at": pl.Datetime("us"),
    "decided_at": pl.Datetime("us"),
    "case_created_at": pl.Datetime("us"),
    "copied_cursor": pl.Int64(),  # the review store's monotonically increasing decision sequence
}

# One row per event in a case's life (created, claimed, released, decided, escalated, ...).
REVIEW_EVENTS_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.Int64(),
    "case_id": pl.String(),
    "event_type": pl.String(),
    "actor": pl.String(),
    "at": pl.Datetime("us"),
    "details": pl.String(),  # JSON
}
