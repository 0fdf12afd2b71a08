"""The decision policy: a versioned YAML file a lender owns, loaded and validated here.

The policy says what automation may decide on its own (hard-rule declines, auto-approve,
auto-decline on the model's probability of default) and how everything else reaches a
person (review priority, due time, four eyes, and the expert queue that works it, with the
roles or named reviewers allowed to). Conditions name the lender's application
columns directly, in a deliberately small language that is parsed, never evaluated as code:

    {column: NAME, op: OP, value: V}            OP: < <= > >= == != in not_in is_null
    {ratio: [NUMERATOR, DENOMINATOR], op: OP, value: V}
    {all: [CONDITION, ...]}   {any: [CONDITION, ...]}

Every error names the file and the field, e.g.
``decision_policy.yaml: hard_rules[2].when.op: unknown op '=~' ...``.
Evaluation lives in :mod:`aios_pipelines.policy.evaluate`. Nothing here imports Dagster.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, Union

import yaml

from aios_pipelines.settings import SHIPPED_ASSETS_DIR

DEFAULT_POLICY_PATH = SHIPPED_ASSETS_DIR / "policy" / "decision_policy.yaml"

ACTIONS = ("auto_approve", "auto_decline", "review")
PRIORITIES = ("high", "normal", "low")
DECISION_SOURCES = ("model", "fallback")

NUMERIC_OPS = ("<", "<=", ">", ">=")
EQUALITY_OPS = ("==", "!=")
SET_OPS = ("in", "not_in")
NULL_OP = "is_null"
OPS = NUMERIC_OPS + EQUALITY_OPS + SET_OPS + (NULL_OP,)

# The ``rule`` a decision records: what decided it.
RULE_AUTO_APPROVE = "auto_approve"
RULE_AUTO_DECLINE = "auto_decline"
RULE_FALLBACK_AUTO_APPROVE = "fallback:auto_approve"
RULE_PAUSED = "automation_paused"
RULE_GREY_ZONE = "review:grey_zone"
RULE_AMOUNT_OVER_LIMIT = "review:amount_over_limit"
RULE_NO_SCORE = "review:no_score"
RULE_FALLBACK_REVIEW = "fallback:review"
HARD_RULE_PREFIX = "hard_rule:"
# Rules that route a case to review; review priorities may match them with ``routed_by``.
REVIEW_RULES = (RULE_PAUSED, RULE_GREY_ZONE, RULE_AMOUNT_OVER_LIMIT, RULE_NO_SCORE, RULE_FALLBACK_REVIEW)

_ID = re.compile(r"^[a-z][a-z0-9_]*$")


class PolicyError(ValueError):
    """The policy file is malformed or does not fit the data; the message names file and field."""


# --------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class Compare:
    """One comparison of a column (or a ratio of two columns) with a constant.

    ``value`` is a number or string for comparisons, a tuple for ``in``/``not_in`` and a
    bool for ``is_null`` (``False`` means "is not null").
    """

    op: str
    value: Any
    column: str | None = None
    ratio: tuple[str, str] | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return self.ratio if self.ratio is not None else (self.column,)  # type: ignore[return-value]

    @property
    def operand(self) -> str:
        if self.ratio is not None:
            return f"{self.ratio[0]} / {self.ratio[1]}"
        return str(self.column)

    def describe(self) -> str:
        if self.op == NULL_OP:
            return f"{self.operand} is {'' if self.value else 'not '}null"
        if self.op in SET_OPS:
            return f"{self.operand} {self.op.replace('_', ' ')} {list(self.value)!r}"
        return f"{self.operand} {self.op} {self.value!r}"


@dataclass(frozen=True)
class AllOf:
    conditions: tuple["Condition", ...]

    def describe(self) -> str:
        return "(" + " and ".join(c.describe() for c in self.conditions) + ")"


@dataclass(frozen=True)
class AnyOf:
    conditions: tuple["Condition", ...]

    def describe(self) -> str:
        return "(" + " or ".join(c.describe() for c in self.conditions) + ")"


Condition = Union[Compare, AllOf, AnyOf]


def iter_compares(condition: Condition) -> Iterator[Compare]:
    if isinstance(condition, Compare):
        yield condition
    else:
        for inner in condition.conditions:
            yield from iter_compares(inner)


# --------------------------------------------------------------------------- policy parts


@dataclass(frozen=True)
class HardRule:
    id: str
    description: str
    when: Condition

    @property
    def rule(self) -> str:
        return HARD_RULE_PREFIX + self.id


@dataclass(frozen=True)
class AutoApprove:
    max_pd: float
    max_amount: float


@dataclass(frozen=True)
class AutoDecline:
    min_pd: float


@dataclass(frozen=True)
class FourEyes:
    min_amount: float


@dataclass(frozen=True)
class ReviewPriorityRule:
    """First matching rule sets priority and due time; every criterion given must hold."""

    id: str
    priority: str
    due_hours: int
    when: Condition | None = None
    pd_min: float | None = None
    pd_max: float | None = None
    score_bands: tuple[str, ...] | None = None
    routed_by: tuple[str, ...] | None = None

    @property
    def has_pd_range(self) -> bool:
        return self.pd_min is not None or self.pd_max is not None


@dataclass(frozen=True)
class ReviewSettings:
    default_priority: str
    default_due_hours: int
    priorities: tuple[ReviewPriorityRule, ...]


# Roles that may be named as a queue's workers (admins may work every queue anyway).
QUEUE_ROLES = ("underwriter", "senior_underwriter", "admin")
DEFAULT_QUEUE = "general"
DEFAULT_IDLE_CLAIM_HOURS = 4.0


@dataclass(frozen=True)
class ExpertQueue:
    """A queue of review cases and who may work it.

    A routed case lands in the first declared queue whose criteria all hold (the criteria
    are those of a review priority: ``when``, ``pd_range``, ``score_bands``, ``routed_by``);
    a queue without criteria only takes cases as the default queue. ``roles`` and
    ``reviewers`` (user names) say who may claim and decide its cases; admins always may.
    """

    id: str
    description: str
    roles: tuple[str, ...]
    reviewers: tuple[str, ...]
    idle_claim_hours: float
    when: Condition | None = None
    pd_min: float | None = None
    pd_max: float | None = None
    score_bands: tuple[str, ...] | None = None
    routed_by: tuple[str, ...] | None = None

    @property
    def has_pd_range(self) -> bool:
        return self.pd_min is not None or self.pd_max is not None

    @property
    def has_criteria(self) -> bool:
        return self.when is not None or self.has_pd_range or self.score_bands is not None or self.routed_by is not None


@dataclass(frozen=True)
class QueueSettings:
    """The expert queues, in routing order; ``default`` takes what no queue's criteria take."""

    default: str
    idle_claim_hours: float
    declared: tuple[ExpertQueue, ...]

    def get(self, queue_id: str) -> ExpertQueue:
        for queue in self.declared:
            if queue.id == queue_id:
                return queue
        raise KeyError(queue_id)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(q.id for q in self.declared)


def default_queue_settings() -> QueueSettings:
    """A policy without a ``queues`` section: one queue every underwriter works."""
    return QueueSettings(
        default=DEFAULT_QUEUE,
        idle_claim_hours=DEFAULT_IDLE_CLAIM_HOURS,
        declared=(
            ExpertQueue(
                id=DEFAULT_QUEUE,
                description="Every routed case.",
                roles=("underwriter", "senior_underwriter"),
                reviewers=(),
                idle_claim_hours=DEFAULT_IDLE_CLAIM_HOURS,
            ),
        ),
    )


@dataclass(frozen=True)
class ScoreBand:
    label: str
    max_pd: float


@dataclass(frozen=True)
class ScorecardBin:
    when: Condition
    points: float


@dataclass(frozen=True)
class ScorecardFactor:
    id: str
    description: str
    bins: tuple[ScorecardBin, ...]
    default_points: float

    @property
    def point_values(self) -> tuple[float, ...]:
        return tuple(b.points for b in self.bins) + (self.default_points,)


@dataclass(frozen=True)
class PdTableRow:
    min_points: float
    pd: float


@dataclass(frozen=True)
class FallbackScorecard:
    base_points: float
    factors: tuple[ScorecardFactor, ...]
    pd_table: tuple[PdTableRow, ...]  # sorted by min_points, highest first
    allow_auto_approve: bool

    @property
    def min_points(self) -> float:
        return self.base_points + sum(min(f.point_values) for f in self.factors)

    @property
    def max_points(self) -> float:
        return self.base_points + sum(max(f.point_values) for f in self.factors)


@dataclass(frozen=True)
class ReasonSettings:
    max_reasons: int
    required_for: tuple[str, ...]


@dataclass(frozen=True)
class DecisionPolicy:
    version: str
    name: str
    description: str
    amount_column: str
    hard_rules: tuple[HardRule, ...]
    auto_approve: AutoApprove
    auto_decline: AutoDecline
    four_eyes: FourEyes
    review: ReviewSettings
    score_bands: tuple[ScoreBand, ...]
    fallback: FallbackScorecard
    reasons: ReasonSettings
    source_path: Path | None = None
    fingerprint: str = ""
    queues: QueueSettings = field(default_factory=default_queue_settings)

    @property
    def band_labels(self) -> tuple[str, ...]:
        return tuple(b.label for b in self.score_bands)

    def referenced_columns(self) -> list[tuple[str, str]]:
        """Every application column the policy names, with where it names it."""
        found: list[tuple[str, str]] = [(self.amount_column, "amount_column")]
        for rule in self.hard_rules:
            for cmp in iter_compares(rule.when):
                found += [(c, f"hard_rules[{rule.id}].when") for c in cmp.columns]
        for prio in self.review.priorities:
            if prio.when is not None:
                for cmp in iter_compares(prio.when):
                    found += [(c, f"review.priorities[{prio.id}].when") for c in cmp.columns]
        for factor in self.fallback.factors:
            for i, b in enumerate(factor.bins):
                for cmp in iter_compares(b.when):
                    found += [(c, f"fallback_scorecard.factors[{factor.id}].bins[{i}].when") for c in cmp.columns]
        return found

    @property
    def columns(self) -> tuple[str, ...]:
        """The distinct application columns the policy needs, in first-use order."""
        return tuple(dict.fromkeys(c for c, _ in self.referenced_columns()))

    def queue_conditions(self) -> list[tuple[str, Condition]]:
        """The conditions of the expert queues' ``when`` criteria, with where they are. Kept
        apart from :meth:`referenced_columns`: routing a case to a queue never needs a column
        the decision itself does not (a condition on an absent column simply does not hold)."""
        return [(f"queues.declared[{q.id}].when", q.when) for q in self.queues.declared if q.when is not None]

    def summary(self) -> dict[str, Any]:
        """Key thresholds, for run metadata and reports."""
        return {
            "name": self.name,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "hard_rules": [f"{r.id}: {r.when.describe()}" for r in self.hard_rules],
            "auto_approve_max_pd": self.auto_approve.max_pd,
            "auto_approve_max_amount": self.auto_approve.max_amount,
            "auto_decline_min_pd": self.auto_decline.min_pd,
            "four_eyes_min_amount": self.four_eyes.min_amount,
            "score_bands": {b.label: b.max_pd for b in self.score_bands},
            "fallback_allow_auto_approve": self.fallback.allow_auto_approve,
            "max_reasons": self.reasons.max_reasons,
        }


# --------------------------------------------------------------------------- parsing helpers


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _mapping(raw: Any, where: str, required: Sequence[str] = (), optional: Sequence[str] = ()) -> dict:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: expected a mapping, got {type(raw).__name__} {raw!r}")
    missing = [k for k in required if k not in raw]
    if missing:
        raise PolicyError(f"{where}: missing field(s) {missing}")
    unknown = sorted(str(k) for k in set(raw) - set(required) - set(optional))
    if unknown:
        raise PolicyError(f"{where}: unknown field(s) {unknown}; allowed: {sorted([*required, *optional])}")
    return raw


def _list(raw: Any, where: str, *, allow_empty: bool = False) -> list:
    if not isinstance(raw, list):
        raise PolicyError(f"{where}: expected a list, got {type(raw).__name__} {raw!r}")
    if not raw and not allow_empty:
        raise PolicyError(f"{where}: must not be empty")
    return raw


def _number(raw: Any, where: str, *, minimum: float | None = None) -> float:
    if not _is_number(raw) or not math.isfinite(raw):
        raise PolicyError(f"{where}: expected a finite number, got {raw!r}")
    if minimum is not None and raw < minimum:
        raise PolicyError(f"{where}: must be >= {minimum}, got {raw!r}")
    return raw


def _probability(raw: Any, where: str) -> float:
    value = _number(raw, where)
    if not 0.0 <= value <= 1.0:
        raise PolicyError(f"{where}: a probability must lie in [0, 1], got {raw!r}")
    return float(value)


def _positive_int(raw: Any, where: str) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw <= 0:
        raise PolicyError(f"{where}: expected a positive integer, got {raw!r}")
    return raw


def _text(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise PolicyError(f"{where}: expected a non-empty string, got {raw!r}")
    return raw


def _identifier(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not _ID.match(raw):
        raise PolicyError(f"{where}: expected an identifier (lowercase letters, digits, _), got {raw!r}")
    return raw


def _choice(raw: Any, where: str, choices: Sequence[str]) -> str:
    if raw not in choices:
        raise PolicyError(f"{where}: must be one of {list(choices)}, got {raw!r}")
    return raw


def _scalar(raw: Any, where: str) -> Any:
    if isinstance(raw, bool) or isinstance(raw, str) or _is_number(raw):
        if _is_number(raw) and not math.isfinite(raw):
            raise PolicyError(f"{where}: expected a finite number, got {raw!r}")
        return raw
    raise PolicyError(f"{where}: expected a number, string or boolean, got {raw!r}")


def _scalar_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    return "number"


def parse_condition(raw: Any, where: str) -> Condition:
    """Parse one condition; anything but the small mapping language is an error."""
    if isinstance(raw, str):
        raise PolicyError(
            f"{where}: conditions are mappings such as {{column: annual_income, op: '<', value: 10000}}, "
            f"not expressions; got {raw!r}"
        )
    if isinstance(raw, dict) and ("all" in raw or "any" in raw):
        key = "all" if "all" in raw else "any"
        _mapping(raw, where, required=[key])
        items = _list(raw[key], f"{where}.{key}")
        inner = tuple(parse_condition(item, f"{where}.{key}[{i}]") for i, item in enumerate(items))
        return AllOf(inner) if key == "all" else AnyOf(inner)
    _mapping(raw, where, required=["op"], optional=["column", "ratio", "value"])
    has_column, has_ratio = "column" in raw, "ratio" in raw
    if has_column == has_ratio:
        raise PolicyError(f"{where}: give exactly one of 'column' or 'ratio' (or use 'all'/'any')")
    column: str | None = None
    ratio: tuple[str, str] | None = None
    if has_column:
        column = _text(raw["column"], f"{where}.column")
    else:
        parts = raw["ratio"]
        if not isinstance(parts, list) or len(parts) != 2:
            raise PolicyError(f"{where}.ratio: expected [numerator_column, denominator_column], got {parts!r}")
        ratio = (_text(parts[0], f"{where}.ratio[0]"), _text(parts[1], f"{where}.ratio[1]"))
    op = raw["op"]
    if op not in OPS:
        raise PolicyError(f"{where}.op: unknown op {op!r}, expected one of {list(OPS)}")
    value_where = f"{where}.value"
    if op == NULL_OP:
        value = raw.get("value", True)
        if not isinstance(value, bool):
            raise PolicyError(f"{value_where}: is_null takes true (is null) or false (is not null), got {value!r}")
    elif "value" not in raw:
        raise PolicyError(f"{where}: op {op!r} needs a 'value'")
    elif op in NUMERIC_OPS:
        value = _number(raw["value"], value_where)
    elif op in EQUALITY_OPS:
        value = _scalar(raw["value"], value_where)
        if ratio is not None and not _is_number(value):
            raise PolicyError(f"{value_where}: a ratio compares with numbers only, got {value!r}")
    else:
        if ratio is not None:
            raise PolicyError(f"{where}.op: {op!r} is not available for a ratio")
        items = _list(raw["value"], value_where)
        value = tuple(_scalar(v, f"{value_where}[{i}]") for i, v in enumerate(items))
        kinds = {_scalar_kind(v) for v in value}
        if len(kinds) != 1:
            raise PolicyError(f"{value_where}: mixes {sorted(kinds)}; use values of one kind")
    return Compare(op=op, value=value, column=column, ratio=ratio)


# --------------------------------------------------------------------------- sections

_TOP_LEVEL = (
    "version", "name", "description", "amount_column", "hard_rules", "auto_approve", "auto_decline",
    "four_eyes", "review", "score_bands", "fallback_scorecard", "reasons", "queues",
)


def _parse_hard_rules(raw: Any) -> tuple[HardRule, ...]:
    rules: list[HardRule] = []
    for i, item in enumerate(_list(raw, "hard_rules", allow_empty=True)):
        where = f"hard_rules[{i}]"
        _mapping(item, where, required=["id", "when"], optional=["description"])
        rule_id = _identifier(item["id"], f"{where}.id")
        if any(r.id == rule_id for r in rules):
            raise PolicyError(f"{where}.id: duplicate hard rule id {rule_id!r}")
        rules.append(
            HardRule(
                id=rule_id,
                description=str(item.get("description", "")),
                when=parse_condition(item["when"], f"{where}.when"),
            )
        )
    return tuple(rules)


def _parse_score_bands(raw: Any) -> tuple[ScoreBand, ...]:
    bands: list[ScoreBand] = []
    for i, item in enumerate(_list(raw, "score_bands")):
        where = f"score_bands[{i}]"
        _mapping(item, where, required=["band", "max_pd"])
        label = _text(item["band"], f"{where}.band")
        if any(b.label == label for b in bands):
            raise PolicyError(f"{where}.band: duplicate band {label!r}")
        max_pd = _probability(item["max_pd"], f"{where}.max_pd")
        if bands and max_pd <= bands[-1].max_pd:
            raise PolicyError(f"{where}.max_pd: cut-offs must increase, {max_pd} <= {bands[-1].max_pd}")
        bands.append(ScoreBand(label, max_pd))
    if bands[-1].max_pd != 1.0:
        raise PolicyError(f"score_bands[{len(bands) - 1}].max_pd: the last band must end at 1.0 to cover every PD")
    return tuple(bands)


def route_matches(pattern: str, route: str) -> bool:
    """A ``routed_by`` pattern: exact, or a prefix when it ends with ``*``."""
    if pattern.endswith("*"):
        return route.startswith(pattern[:-1])
    return route == pattern


def _parse_criteria(
    item: dict, where: str, bands: Sequence[str], known_routes: Sequence[str]
) -> tuple[Condition | None, float | None, float | None, tuple[str, ...] | None, tuple[str, ...] | None]:
    """The matching criteria shared by review priorities and expert queues:
    ``(when, pd_min, pd_max, score_bands, routed_by)``, each None when not given."""
    when = parse_condition(item["when"], f"{where}.when") if "when" in item else None
    pd_min = pd_max = None
    if "pd_range" in item:
        rng = _mapping(item["pd_range"], f"{where}.pd_range", optional=["min", "max"])
        if not rng:
            raise PolicyError(f"{where}.pd_range: give min, max or both")
        pd_min = _probability(rng["min"], f"{where}.pd_range.min") if "min" in rng else None
        pd_max = _probability(rng["max"], f"{where}.pd_range.max") if "max" in rng else None
        if pd_min is not None and pd_max is not None and pd_min > pd_max:
            raise PolicyError(f"{where}.pd_range: min {pd_min} is above max {pd_max}")
    score_bands = None
    if "score_bands" in item:
        score_bands = tuple(_list(item["score_bands"], f"{where}.score_bands"))
        for j, label in enumerate(score_bands):
            if label not in bands:
                raise PolicyError(f"{where}.score_bands[{j}]: unknown band {label!r}, declared: {list(bands)}")
    routed_by = None
    if "routed_by" in item:
        routed_by = tuple(_text(p, f"{where}.routed_by[{j}]")
                          for j, p in enumerate(_list(item["routed_by"], f"{where}.routed_by")))
        for j, pattern in enumerate(routed_by):
            if not any(route_matches(pattern, route) for route in known_routes):
                raise PolicyError(
                    f"{where}.routed_by[{j}]: {pattern!r} matches no rule that routes to review; "
                    f"known: {list(known_routes)} (a trailing * matches a prefix)"
                )
    return when, pd_min, pd_max, score_bands, routed_by


def _parse_review(raw: Any, bands: Sequence[str], hard_rules: Sequence[HardRule]) -> ReviewSettings:
    _mapping(raw, "review", optional=["default", "priorities"])
    default = _mapping(raw.get("default", {"priority": "normal", "due_hours": 48}), "review.default",
                       required=["priority", "due_hours"])
    known_routes = list(REVIEW_RULES) + [r.rule for r in hard_rules]
    priorities: list[ReviewPriorityRule] = []
    for i, item in enumerate(_list(raw.get("priorities", []), "review.priorities", allow_empty=True)):
        where = f"review.priorities[{i}]"
        _mapping(item, where, required=["id", "priority", "due_hours"],
                 optional=["when", "pd_range", "score_bands", "routed_by"])
        rule_id = _identifier(item["id"], f"{where}.id")
        if any(p.id == rule_id for p in priorities):
            raise PolicyError(f"{where}.id: duplicate review priority id {rule_id!r}")
        if not any(k in item for k in ("when", "pd_range", "score_bands", "routed_by")):
            raise PolicyError(
                f"{where}: needs at least one of when, pd_range, score_bands, routed_by (use review.default otherwise)"
            )
        when, pd_min, pd_max, score_bands, routed_by = _parse_criteria(item, where, bands, known_routes)
        priorities.append(
            ReviewPriorityRule(
                id=rule_id,
                priority=_choice(item["priority"], f"{where}.priority", PRIORITIES),
                due_hours=_positive_int(item["due_hours"], f"{where}.due_hours"),
                when=when, pd_min=pd_min, pd_max=pd_max, score_bands=score_bands, routed_by=routed_by,
            )
        )
    return ReviewSettings(
        default_priority=_choice(default["priority"], "review.default.priority", PRIORITIES),
        default_due_hours=_positive_int(default["due_hours"], "review.default.due_hours"),
        priorities=tuple(priorities),
    )


def _positive_hours(raw: Any, where: str) -> float:
    value = _number(raw, where)
    if value <= 0:
        raise PolicyError(f"{where}: must be a positive number of hours, got {raw!r}")
    return float(value)


def _parse_queues(raw: Any, bands: Sequence[str], hard_rules: Sequence[HardRule]) -> QueueSettings:
    """The ``queues`` section; a policy without one gets :func:`default_queue_settings`."""
    if raw is None:
        return default_queue_settings()
    _mapping(raw, "queues", required=["default", "declared"], optional=["idle_claim_hours"])
    idle = _positive_hours(raw.get("idle_claim_hours", DEFAULT_IDLE_CLAIM_HOURS), "queues.idle_claim_hours")
    known_routes = list(REVIEW_RULES) + [r.rule for r in hard_rules]
    declared: list[ExpertQueue] = []
    for i, item in enumerate(_list(raw["declared"], "queues.declared")):
        where = f"queues.declared[{i}]"
        _mapping(item, where, required=["id"], optional=[
            "description", "roles", "reviewers", "idle_claim_hours", "when", "pd_range", "score_bands", "routed_by"])
        queue_id = _identifier(item["id"], f"{where}.id")
        if any(q.id == queue_id for q in declared):
            raise PolicyError(f"{where}.id: duplicate queue id {queue_id!r}")
        roles = tuple(_choice(r, f"{where}.roles[{j}]", QUEUE_ROLES)
                      for j, r in enumerate(_list(item.get("roles", []), f"{where}.roles", allow_empty=True)))
        reviewers = tuple(_text(r, f"{where}.reviewers[{j}]")
                          for j, r in enumerate(_list(item.get("reviewers", []), f"{where}.reviewers", allow_empty=True)))
        if not roles and not reviewers:
            raise PolicyError(f"{where}: name the roles or the reviewers who work this queue (admins always may)")
        when, pd_min, pd_max, score_bands, routed_by = _parse_criteria(item, where, bands, known_routes)
        declared.append(
            ExpertQueue(
                id=queue_id,
                description=str(item.get("description", "")).strip(),
                roles=roles,
                reviewers=reviewers,
                idle_claim_hours=_positive_hours(item["idle_claim_hours"], f"{where}.idle_claim_hours")
                if "idle_claim_hours" in item else idle,
                when=when, pd_min=pd_min, pd_max=pd_max, score_bands=score_bands, routed_by=routed_by,
            )
        )
    default = _identifier(raw["default"], "queues.default")
    ids = [q.id for q in declared]
    if default not in ids:
        raise PolicyError(f"queues.default: {default!r} is not a declared queue; declared: {ids}")
    return QueueSettings(default=default, idle_claim_hours=idle, declared=tuple(declared))


def _parse_fallback(raw: Any) -> FallbackScorecard:
    where = "fallback_scorecard"
    _mapping(raw, where, required=["factors", "pd_table"], optional=["base_points", "allow_auto_approve"])
    allow = raw.get("allow_auto_approve", False)
    if not isinstance(allow, bool):
        raise PolicyError(f"{where}.allow_auto_approve: expected true or false, got {allow!r}")
    factors: list[ScorecardFactor] = []
    for i, item in enumerate(_list(raw["factors"], f"{where}.factors")):
        fw = f"{where}.factors[{i}]"
        _mapping(item, fw, required=["id", "bins"], optional=["description", "default_points"])
        factor_id = _identifier(item["id"], f"{fw}.id")
        if any(f.id == factor_id for f in factors):
            raise PolicyError(f"{fw}.id: duplicate factor id {factor_id!r}")
        bins = []
        for j, b in enumerate(_list(item["bins"], f"{fw}.bins")):
            bw = f"{fw}.bins[{j}]"
            _mapping(b, bw, required=["when", "points"])
            bins.append(ScorecardBin(parse_condition(b["when"], f"{bw}.when"), _number(b["points"], f"{bw}.points")))
        factors.append(
            ScorecardFactor(
                id=factor_id,
                description=str(item.get("description", "")),
                bins=tuple(bins),
                default_points=_number(item.get("default_points", 0), f"{fw}.default_points"),
            )
        )
    rows: list[PdTableRow] = []
    for i, item in enumerate(_list(raw["pd_table"], f"{where}.pd_table")):
        rw = f"{where}.pd_table[{i}]"
        _mapping(item, rw, required=["min_points", "pd"])
        min_points = _number(item["min_points"], f"{rw}.min_points")
        if any(r.min_points == min_points for r in rows):
            raise PolicyError(f"{rw}.min_points: duplicate min_points {min_points}")
        rows.append(PdTableRow(min_points, _probability(item["pd"], f"{rw}.pd")))
    rows.sort(key=lambda r: r.min_points, reverse=True)
    for higher, lower in zip(rows, rows[1:]):
        if higher.pd > lower.pd:
            raise PolicyError(
                f"{where}.pd_table: more points must not mean a higher PD "
                f"({higher.min_points} points -> {higher.pd} but {lower.min_points} points -> {lower.pd})"
            )
    card = FallbackScorecard(
        base_points=_number(raw.get("base_points", 0), f"{where}.base_points"),
        factors=tuple(factors),
        pd_table=tuple(rows),
        allow_auto_approve=allow,
    )
    if card.min_points < rows[-1].min_points:
        raise PolicyError(
            f"{where}.pd_table: the lowest min_points ({rows[-1].min_points}) must cover the lowest "
            f"achievable score ({card.min_points})"
        )
    return card


def parse_policy(raw: Any, *, text: str | None = None, source_path: Path | None = None) -> DecisionPolicy:
    """Build a policy from already-parsed YAML; errors name the field (not the file)."""
    _mapping(
        raw, "policy",
        required=["version", "name", "amount_column", "auto_approve", "auto_decline", "four_eyes",
                  "score_bands", "fallback_scorecard", "reasons"],
        optional=[k for k in _TOP_LEVEL],
    )
    version = raw["version"]
    if not isinstance(version, str) or not version.strip():
        raise PolicyError(f"version: expected a quoted string such as \"2026.11.1\", got {version!r}")
    approve = _mapping(raw["auto_approve"], "auto_approve", required=["max_pd", "max_amount"])
    decline = _mapping(raw["auto_decline"], "auto_decline", required=["min_pd"])
    four = _mapping(raw["four_eyes"], "four_eyes", required=["min_amount"])
    auto_approve = AutoApprove(
        max_pd=_probability(approve["max_pd"], "auto_approve.max_pd"),
        max_amount=_number(approve["max_amount"], "auto_approve.max_amount", minimum=0),
    )
    auto_decline = AutoDecline(min_pd=_probability(decline["min_pd"], "auto_decline.min_pd"))
    if auto_decline.min_pd <= auto_approve.max_pd:
        raise PolicyError(
            f"auto_decline.min_pd: must be above auto_approve.max_pd "
            f"({auto_decline.min_pd} <= {auto_approve.max_pd})"
        )
    hard_rules = _parse_hard_rules(raw.get("hard_rules", []))
    score_bands = _parse_score_bands(raw["score_bands"])
    reasons_raw = _mapping(raw["reasons"], "reasons", required=["max_reasons", "required_for"])
    required_for = tuple(
        _choice(a, f"reasons.required_for[{i}]", ACTIONS)
        for i, a in enumerate(_list(reasons_raw["required_for"], "reasons.required_for", allow_empty=True))
    )
    return DecisionPolicy(
        version=version,
        name=_text(raw["name"], "name"),
        description=str(raw.get("description", "")).strip(),
        amount_column=_text(raw["amount_column"], "amount_column"),
        hard_rules=hard_rules,
        auto_approve=auto_approve,
        auto_decline=auto_decline,
        four_eyes=FourEyes(min_amount=_number(four["min_amount"], "four_eyes.min_amount", minimum=0)),
        review=_parse_review(raw.get("review", {}), [b.label for b in score_bands], hard_rules),
        score_bands=score_bands,
        fallback=_parse_fallback(raw["fallback_scorecard"]),
        reasons=ReasonSettings(
            max_reasons=_positive_int(reasons_raw["max_reasons"], "reasons.max_reasons"),
            required_for=required_for,
        ),
        source_path=source_path,
        queues=_parse_queues(raw.get("queues"), [b.label for b in score_bands], hard_rules),
        fingerprint=hashlib.sha256(
            (text if text is not None else json.dumps(raw, sort_keys=True, default=str)).encode("utf-8")
        ).hexdigest()[:16],
    )


def policy_path() -> Path:
    """The policy in force: ``$AIOS_POLICY`` when set, else the shipped one."""
    configured = os.environ.get("AIOS_POLICY")
    return Path(configured).expanduser().resolve() if configured else DEFAULT_POLICY_PATH


def load_policy(path: str | Path | None = None) -> DecisionPolicy:
    """Read and validate a policy file (default: :func:`policy_path`); errors name file and field."""
    path = Path(path) if path is not None else policy_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read decision policy {path}: {exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return parse_policy(raw, text=text, source_path=path)
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from None


_NUMBER_TYPES = ("integer", "float")


def validate_policy_columns(
    policy: DecisionPolicy,
    column_names: Sequence[str],
    column_types: Mapping[str, str] | None = None,
) -> None:
    """Fail if the policy names a column the contract lacks.

    With ``column_types`` (contract column name -> contract type such as ``float`` or
    ``string``) it also checks that numeric comparisons, ratios and the amount column use
    number columns and that string values are compared with string columns.
    """
    where_file = f"{policy.source_path}: " if policy.source_path else ""
    known = set(column_names)
    referenced = policy.referenced_columns() + [
        (c, where) for where, condition in policy.queue_conditions() for cmp in iter_compares(condition) for c in cmp.columns
    ]
    missing = [f"{where}: column {column!r}" for column, where in referenced if column not in known]
    if missing:
        raise PolicyError(
            f"{where_file}policy {policy.name} {policy.version} names column(s) the contract lacks: "
            + "; ".join(missing)
            + f" (contract columns: {sorted(known)})"
        )
    if column_types is None:
        return
    problems: list[str] = []

    def is_number(column: str) -> bool:
        return column_types.get(column) in _NUMBER_TYPES

    if not is_number(policy.amount_column):
        problems.append(f"amount_column: {policy.amount_column!r} is {column_types.get(policy.amount_column)!r}, not a number")
    conditions: list[tuple[str, Condition]] = [(f"hard_rules[{r.id}].when", r.when) for r in policy.hard_rules]
    conditions += [(f"review.priorities[{p.id}].when", p.when) for p in policy.review.priorities if p.when is not None]
    conditions += [
        (f"fallback_scorecard.factors[{f.id}].bins[{i}].when", b.when)
        for f in policy.fallback.factors for i, b in enumerate(f.bins)
    ]
    conditions += policy.queue_conditions()
    for where, condition in conditions:
        for cmp in iter_compares(condition):
            if cmp.op == NULL_OP:
                continue
            if cmp.ratio is not None or cmp.op in NUMERIC_OPS:
                for column in cmp.columns:
                    if not is_number(column):
                        problems.append(f"{where}: {cmp.describe()} needs a number column, {column!r} is {column_types.get(column)!r}")
                continue
            values = cmp.value if cmp.op in SET_OPS else (cmp.value,)
            kind = _scalar_kind(values[0])
            column_type = column_types.get(str(cmp.column))
            # The contract has no boolean type, so a boolean value never fits a contract column.
            fits = (kind == "number" and column_type in _NUMBER_TYPES) or (
                kind == "string" and column_type == "string")
            if not fits:
                problems.append(f"{where}: {cmp.describe()} compares {kind} values with a {column_type!r} column")
    if problems:
        raise PolicyError(f"{where_file}policy {policy.name} {policy.version} does not fit the contract: " + "; ".join(problems))
