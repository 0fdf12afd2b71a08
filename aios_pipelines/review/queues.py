"""Expert queues: which queue a routed case lands in, and who may work it.

The decision policy declares the queues (``queues`` in ``decision_policy.yaml``, parsed by
:mod:`aios_pipelines.policy.policy`); this module applies them. The pipeline uses
:func:`queue_for_case` when it publishes cases, the service when it creates tasks and online
decisions, and the review store (given :class:`QueueRules`) refuses a claim or a decision by
someone the case's queue does not admit.

A case whose queue the policy no longer declares (or an older case stored before queues
existed) is treated as being in the default queue, so nothing is ever stranded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping, Sequence

from aios_pipelines.policy.evaluate import condition_holds
from aios_pipelines.policy.policy import DecisionPolicy, ExpertQueue, iter_compares, route_matches

HARD_RULE_PREFIX = "hard_rule:"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _holds_on(condition: Any, applicant: Mapping[str, Any]) -> bool:
    """A condition on a possibly partial applicant: false when a column it names is absent."""
    needed = {c for cmp in iter_compares(condition) for c in cmp.columns}
    if not needed <= set(applicant):
        return False
    try:
        return condition_holds(condition, applicant)
    except ValueError:
        return False


def _matches(queue: ExpertQueue, applicant: Mapping[str, Any], pd: float | None, band: str | None,
             routes: Sequence[str]) -> bool:
    if not queue.has_criteria:
        return False
    if queue.has_pd_range:
        if pd is None:
            return False
        if queue.pd_min is not None and pd < queue.pd_min:
            return False
        if queue.pd_max is not None and pd > queue.pd_max:
            return False
    if queue.score_bands is not None and band not in queue.score_bands:
        return False
    if queue.routed_by is not None and not any(route_matches(p, r) for p in queue.routed_by for r in routes):
        return False
    return queue.when is None or _holds_on(queue.when, applicant)


def queue_for_case(
    policy: DecisionPolicy,
    applicant: Mapping[str, Any] | None,
    *,
    pd: float | None = None,
    score_band: str | None = None,
    rule: str | None = None,
    hard_rule: str | None = None,
    amount: float | None = None,
) -> str:
    """The queue a routed case lands in: the first declared queue whose criteria all hold,
    else the default. ``hard_rule`` is the id of a hard rule that held (recorded while
    automation is paused), matched by ``routed_by`` as ``hard_rule:<id>``."""
    values = dict(applicant or {})
    if amount is not None and not _missing(amount):
        values.setdefault(policy.amount_column, amount)
    pd_value = None if _missing(pd) else float(pd)  # type: ignore[arg-type]
    routes = [r for r in (rule, f"{HARD_RULE_PREFIX}{hard_rule}" if hard_rule else None) if r]
    for queue in policy.queues.declared:
        if _matches(queue, values, pd_value, score_band, routes):
            return queue.id
    return policy.queues.default


@dataclass(frozen=True)
class QueueRules:
    """The policy's queues as the review store and service enforce them."""

    policy: DecisionPolicy

    @property
    def default(self) -> str:
        return self.policy.queues.default

    @property
    def names(self) -> list[str]:
        return list(self.policy.queues.ids)

    def queue(self, name: str | None) -> ExpertQueue:
        """The declared queue ``name``; the default queue for None or an undeclared name."""
        settings = self.policy.queues
        if name and name in settings.ids:
            return settings.get(name)
        return settings.get(settings.default)

    def resolve(self, name: str | None) -> str:
        return self.queue(name).id

    def may_work(self, user_name: str, role: str, name: str | None) -> bool:
        if role == "admin":
            return True
        queue = self.queue(name)
        return role in queue.roles or user_name in queue.reviewers

    def workable(self, user_name: str, role: str) -> list[str]:
        """The queues ``user_name`` may work, in declared order."""
        return [q.id for q in self.policy.queues.declared if self.may_work(user_name, role, q.id)]

    def who(self, name: str | None) -> str:
        """Who works a queue, for messages: ``roles senior_underwriter; reviewers ann``."""
        queue = self.queue(name)
        parts = []
        if queue.roles:
            parts.append("roles " + ", ".join(queue.roles))
        if queue.reviewers:
            parts.append("reviewers " + ", ".join(queue.reviewers))
        return "; ".join(parts) + " (and admins)"

    def idle_limit(self, name: str | None) -> timedelta:
        """How long a claim on a case of this queue may stay without a decision."""
        return timedelta(hours=self.queue(name).idle_claim_hours)

    def route_case(self, row: Mapping[str, Any]) -> str:
        """The queue of a case row as the store receives it (applicant summary, amount, PD,
        band, the rule that routed it)."""
        applicant = row.get("applicant_summary") or {}
        return queue_for_case(
            self.policy,
            applicant if isinstance(applicant, Mapping) else {},
            pd=row.get("pd"),
            score_band=row.get("score_band"),
            rule=row.get("policy_rule"),
            hard_rule=row.get("policy_hard_rule"),
            amount=row.get("amount"),
        )
