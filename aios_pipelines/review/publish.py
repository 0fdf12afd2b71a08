"""From scored applications to review cases: the pure half of publishing.

The pipeline reads ``scored_applications`` (one row per application, see
:mod:`aios_pipelines.modeling.scoring`) and the raw applications, turns the rows routed to
review into case rows here, and hands them to :meth:`ReviewStore.publish_cases`. The task
API uses :func:`route_task` to fill what a caller left out from the same policy.

The model's recommendation for a grey-zone case: approve below a PD cut-off, decline at or
above it. By default the cut-off is the middle of the grey zone on the log-odds scale
(between ``auto_approve.max_pd`` and ``auto_decline.min_pd``; about 0.13 for the shipped
policy). An applicant caught by a hard rule (while automation is paused) is a decline.

Expert queue: the first queue the policy declares whose criteria hold for the case (see
:mod:`aios_pipelines.review.queues`), else the policy's default queue.

Blind review: a fixed share of cases (chosen by a hash of the application id, so the
choice is stable across re-runs) hides the model's recommendation from the reviewer, which
measures how often people agree with the model when they cannot see it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import polars as pl

from aios_pipelines.policy.evaluate import condition_holds, score_band
from aios_pipelines.policy.policy import DecisionPolicy, iter_compares, route_matches
from aios_pipelines.review.queues import queue_for_case
from aios_pipelines.review.store import ReviewValidationError

DEFAULT_BLIND_SHARE = 0.05
API_RULE = "api:task"
# Columns of raw_applications that describe the landing, not the applicant.
LANDING_COLUMNS = ("landing_date", "source_file", "source_row", "ingested_at")


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def recommendation_cutoff(policy: DecisionPolicy) -> float:
    """The PD at which the model's recommendation turns from approve to decline."""
    low = min(max(policy.auto_approve.max_pd, 1e-6), 1 - 1e-6)
    high = min(max(policy.auto_decline.min_pd, 1e-6), 1 - 1e-6)
    mid = (_logit(low) + _logit(high)) / 2
    return 1 / (1 + math.exp(-mid))


def model_recommendation(pd: float | None, cutoff: float, *, hard_rule: str | None = None) -> str | None:
    if hard_rule:
        return "decline"
    if pd is None or (isinstance(pd, float) and math.isnan(pd)):
        return None
    return "approve" if pd < cutoff else "decline"


def is_blind(application_id: str, share: float) -> bool:
    """Stable pseudo-random choice of ``share`` of applications for blind review."""
    if share <= 0:
        return False
    digest = hashlib.sha256(str(application_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def applicant_summary(application: Mapping[str, Any] | None, id_column: str = "application_id",
                      columns: Sequence[str] | None = None) -> dict[str, Any]:
    """The applicant's inputs a reviewer reads (landing bookkeeping left out)."""
    if not application:
        return {}
    keys = columns if columns is not None else [
        k for k in application if k != id_column and k not in LANDING_COLUMNS and not k.startswith("_")
    ]
    return {k: application.get(k) for k in keys}


def case_rows_from_scored(
    scored: Iterable[Mapping[str, Any]],
    applications: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    policy: DecisionPolicy,
    blind_share: float = DEFAULT_BLIND_SHARE,
    cutoff: float | None = None,
    summary_columns: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Case rows for :meth:`ReviewStore.publish_cases` from ``scored_applications`` rows.

    ``scored``: rows as dicts (``frame.to_dicts()``); only ``action == "review"`` rows become
    cases. ``applications``: raw application rows by application id, for the amount and the
    applicant summary.
    """
    applications = applications or {}
    cut = recommendation_cutoff(policy) if cutoff is None else cutoff
    rows: list[dict[str, Any]] = []
    for row in scored:
        if row.get("action", "review") != "review":
            continue
        app_id = str(row["application_id"])
        application = applications.get(app_id) or {}
        amount = application.get(policy.amount_column, row.get("amount"))
        pd = None if _missing(row.get("pd")) else float(row["pd"])
        codes = row.get("reason_codes") or []
        texts = row.get("reason_texts") or []
        features = row.get("reason_features") or []
        reasons = [
            {"code": code, "text": texts[i] if i < len(texts) else "", "feature": features[i] if i < len(features) else None}
            for i, code in enumerate(codes)
        ]
        summary = applicant_summary(application, columns=summary_columns)
        rows.append({
            "application_id": app_id,
            "application_date": row.get("application_date"),
            "priority": row.get("review_priority") or policy.review.default_priority,
            "due_hours": row.get("review_due_hours") or policy.review.default_due_hours,
            "requires_four_eyes": bool(row.get("requires_four_eyes")),
            "amount": None if _missing(amount) else amount,
            "pd": pd,
            "score_band": row.get("score_band"),
            "model_version": row.get("model_version"),
            "policy_version": row.get("policy_version") or policy.version,
            "policy_rule": row.get("policy_rule"),
            "model_recommendation": model_recommendation(pd, cut, hard_rule=row.get("policy_hard_rule")),
            "blind_review": is_blind(app_id, blind_share),
            "reasons": reasons,
            "quality_flags": list(row.get("quality_flags") or []),
            "applicant_summary": summary,
            "confidence": None if _missing(row.get("confidence")) else row.get("confidence"),
            "source": "batch",
            "expert_queue": queue_for_case(
                policy, {**summary, **application}, pd=pd, score_band=row.get("score_band"),
                rule=row.get("policy_rule"), hard_rule=row.get("policy_hard_rule"),
                amount=None if _missing(amount) else amount,
            ),
        })
    return rows


def _condition_holds_on(condition: Any, applicant: Mapping[str, Any]) -> bool:
    """A policy condition on a partial applicant: false when a column it names is absent."""
    needed = {c for cmp in iter_compares(condition) for c in cmp.columns}
    if not needed <= set(applicant):
        return False
    try:
        return condition_holds(condition, applicant)
    except ValueError:
        return False


def route_task(
    policy: DecisionPolicy,
    *,
    pd: float | None,
    amount: float | None,
    applicant: Mapping[str, Any] | None = None,
    rule: str | None = None,
) -> dict[str, Any]:
    """Band, four eyes, priority, due hours and expert queue of a task, by the policy."""
    applicant = dict(applicant or {})
    if amount is not None:
        applicant.setdefault(policy.amount_column, amount)
    band = score_band(policy, pd) if pd is not None else None
    routes = [rule or API_RULE]
    priority, due_hours = policy.review.default_priority, policy.review.default_due_hours
    for prio in policy.review.priorities:
        if prio.has_pd_range:
            if pd is None or (prio.pd_min is not None and pd < prio.pd_min) or (prio.pd_max is not None and pd > prio.pd_max):
                continue
        if prio.score_bands is not None and band not in prio.score_bands:
            continue
        if prio.routed_by is not None and not any(route_matches(p, r) for p in prio.routed_by for r in routes):
            continue
        if prio.when is not None and not _condition_holds_on(prio.when, applicant):
            continue
        priority, due_hours = prio.priority, prio.due_hours
        break
    return {
        "score_band": band,
        "requires_four_eyes": amount is None or amount >= policy.four_eyes.min_amount,
        "priority": priority,
        "due_hours": due_hours,
        "policy_version": policy.version,
        "policy_rule": rule or API_RULE,
        "expert_queue": queue_for_case(policy, applicant, pd=pd, score_band=band, rule=rule or API_RULE),
    }


# A day at 1M applications routes about half a million cases to review. Publishing them in
# one transaction held every case, its applicant and its audit entry in memory at once
# (7.2 GiB) and kept the store's one write lock for three minutes, so reviewers' decisions
# waited or timed out. Batches bound both; an application still gets one case, ever, so a
# run stopped between batches is completed by running it again.
DEFAULT_PUBLISH_BATCH = 20_000


@dataclass(frozen=True)
class PublishSummary:
    routed_to_review: int
    newly_published: int
    four_eyes_cases: int
    blind_review_cases: int
    batches: int
    application_ids: tuple[str, ...]

    @property
    def already_in_store(self) -> int:
        return self.routed_to_review - self.newly_published


def publish_scored_in_batches(
    store: Any,
    scored: pl.DataFrame,
    applications: pl.DataFrame,
    *,
    id_column: str,
    policy: DecisionPolicy,
    actor: str,
    batch_size: int = DEFAULT_PUBLISH_BATCH,
) -> PublishSummary:
    """Publish the review rows of ``scored`` (``scored_applications`` rows) as cases, one
    write transaction per ``batch_size`` rows, in the order given. ``applications``: the raw
    application rows of those ids (``id_column`` is the contract's id column).

    Only one batch's rows are ever held as Python objects. A batch that fails leaves the
    batches before it published; running again publishes the rest and nothing twice."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if "action" in scored.columns:
        scored = scored.filter(pl.col("action") == "review")
    cutoff = recommendation_cutoff(policy)
    ids = applications.get_column(id_column).cast(pl.String) if applications.height else None
    applications = applications.with_columns(ids.alias("__aios_application_id")) if ids is not None else applications
    routed = published = four_eyes = blind = batches = 0
    application_ids: list[str] = []
    for batch in scored.iter_slices(batch_size):
        batch_ids = batch.get_column("application_id").cast(pl.String)
        by_id: dict[str, dict[str, Any]] = {}
        if ids is not None:
            matching = applications.filter(pl.col("__aios_application_id").is_in(batch_ids.implode()))
            by_id = {
                str(row.pop("__aios_application_id")): row for row in matching.iter_rows(named=True)
            }
        rows = case_rows_from_scored(batch.iter_rows(named=True), by_id, policy=policy, cutoff=cutoff)
        try:
            published += store.publish_cases(rows, actor=actor)
        except ReviewValidationError as error:
            first = batches * batch_size
            raise ReviewValidationError(
                f"batch {batches + 1} of the review rows (the day's rows {first}..{first + len(rows) - 1}; rows[i] "
                f"below counts within the batch; {published} cases were published by the batches before it, and a run "
                f"after the fix keeps them and publishes the rest): {error}"
            ) from error
        routed += len(rows)
        four_eyes += sum(1 for r in rows if r["requires_four_eyes"])
        blind += sum(1 for r in rows if r["blind_review"])
        application_ids.extend(r["application_id"] for r in rows)
        batches += 1
    return PublishSummary(routed, published, four_eyes, blind, batches, tuple(application_ids))
