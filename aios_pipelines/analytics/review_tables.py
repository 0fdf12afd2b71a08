"""Warehouse tables copied out of the review store: the contract between the review plane
(which writes them, through the ``review_cases`` / ``human_decisions`` / ``online_decisions``
assets) and the dbt project (which reads them as sources). One place, so the two sides cannot
drift apart. (``online_applications`` has the contract's columns: ``loaded_schema``.)"""

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
    "details": pl.String(),  # JSON text as the review store holds it (canonical: sorted, compact)
}

# One row per online decision: the columns of the batch ``scored_applications`` (same names,
# same types, so a union of the two is one decision table), then what only an online decision
# has. ``origin`` is 'online' (the batch rows are 'batch' in a union).
ONLINE_DECISIONS_SCHEMA: dict[str, pl.DataType] = {
    "application_id": pl.String(),
    "application_date": pl.Date(),
    "pd": pl.Float64(),
    "score_band": pl.String(),
    "model_version": pl.String(),
    "decision_source": pl.String(),  # model | fallback_rules
    "confidence": pl.Float64(),
    "reason_features": pl.List(pl.String()),
    "reason_codes": pl.List(pl.String()),
    "reason_texts": pl.List(pl.String()),
    "quality_flags": pl.List(pl.String()),
    "action": pl.String(),  # auto_approve | auto_decline | review
    "policy_rule": pl.String(),
    "policy_hard_rule": pl.String(),
    "requires_four_eyes": pl.Boolean(),
    "review_priority": pl.String(),
    "review_due_hours": pl.Int64(),
    "policy_version": pl.String(),
    "policy_fingerprint": pl.String(),
    "automation_paused": pl.Boolean(),
    "fallback_reason": pl.String(),
    "origin": pl.String(),  # online
    "decision_id": pl.String(),
    "decided_at": pl.Datetime("us"),
    "requested_by": pl.String(),
    "case_id": pl.String(),  # the review case of a referral
    "expert_queue": pl.String(),
    "copied_cursor": pl.Int64(),  # the review store's online decision sequence
}
