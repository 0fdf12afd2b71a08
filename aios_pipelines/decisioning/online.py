"""Online decisions: one application at a time, by the batch path's own functions.

An application arrives as JSON (the data contract's columns). It is checked with
:func:`~aios_pipelines.ingestion.validation.validate_rows` (the contract rules the nightly
ingestion applies), turned into features with
:func:`~aios_pipelines.features.build.build_features`, and scored and routed with
:func:`~aios_pipelines.modeling.scoring.score_applications`, the function behind the
``scored_applications`` asset: same PD, same reasons, same action as the batch path would
give the same application with the same model and policy.

The champion model is held by a :class:`ChampionHolder`: loaded once, then the registry's
``champion`` alias is checked at most every ``check_interval_seconds``; when it has moved (a
promotion or a rollback) the new version is loaded and swapped in by replacing one
reference to an immutable :class:`ChampionSnapshot`. A request takes the snapshot once and
uses only it, so no request ever sees half a swap, and requests never wait for a load
(except the very first one, when there is nothing to serve with yet). When the champion
cannot be used (no champion, missing or corrupt files, a failure while predicting) the
policy's fallback scorecard answers, exactly as in the batch path, and the answer says so
(``decision_source = fallback_rules`` and ``fallback_reason``).
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import lightgbm as lgb
import polars as pl
import yaml

from aios_pipelines.features.build import APPLICATION_ID, build_features
from aios_pipelines.ingestion.contract import DataContract, DatasetSpec, load_contract
from aios_pipelines.ingestion.landing import MALFORMED, RAW_CELLS, ROW_NUMBER, SOURCE_FILE
from aios_pipelines.ingestion.validation import (
    LANDING_DATE,
    SOURCE_FILE_COLUMN,
    SOURCE_ROW_COLUMN,
    loaded_schema,
    validate_rows,
)
from aios_pipelines.modeling.scoring import FALLBACK_SOURCE, MODEL_SOURCE, ScoringModel, score_applications
from aios_pipelines.modeling.training import FeatureSpec
from aios_pipelines.policy import automation_switch
from aios_pipelines.policy.evaluate import evaluate, fallback_pd_row
from aios_pipelines.policy.policy import (
    DECISION_SOURCES,
    HARD_RULE_PREFIX,
    RULE_AMOUNT_OVER_LIMIT,
    RULE_AUTO_APPROVE,
    RULE_AUTO_DECLINE,
    RULE_FALLBACK_AUTO_APPROVE,
    RULE_FALLBACK_REVIEW,
    RULE_GREY_ZONE,
    RULE_NO_SCORE,
    RULE_PAUSED,
    DecisionPolicy,
    load_policy,
)

CHAMPION_ALIAS = "champion"
DEFAULT_CHECK_INTERVAL_SECONDS = 5.0
ONLINE_SOURCE_FILE = "api:online"
WHAT_IF_ID = "what-if"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------- the champion


@dataclass(frozen=True)
class ChampionSnapshot:
    """What scores right now: the champion's model, or nothing (the fallback scorecard) and why.

    Immutable: a swap replaces the whole snapshot, never a part of it."""

    model: ScoringModel | None
    alias_version: int | None  # the version the alias named when this was loaded (None: no champion)
    fallback_reason: str | None  # why ``model`` is None
    loaded_at: datetime
    generation: int  # 1 for the first snapshot, +1 for every swap

    @property
    def decision_source(self) -> str:
        return MODEL_SOURCE if self.model is not None else FALLBACK_SOURCE

    @property
    def model_version(self) -> str | None:
        return self.model.version if self.model is not None else None


class SingleThreadBooster(lgb.Booster):
    """A booster whose predictions run on one thread unless told otherwise.

    The champion is trained with ``num_threads`` > 1, and LightGBM predicts with that many
    OpenMP threads. For one application that is pure overhead, and worse: the idle OpenMP
    threads spin while polars (the features, the policy) runs, and on a 2-core machine one
    decision took 27 ms instead of 1.4 ms (features + predict + policy, measured side by side;
    benchmarks/README.md). The trees, and so every prediction and contribution, are the same:
    only the thread count of ``predict`` differs.
    """

    def predict(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("num_threads", 1)
        return super().predict(data, *args, **kwargs)

    @classmethod
    def of(cls, booster: lgb.Booster) -> "SingleThreadBooster":
        copy = cls(model_str=booster.model_to_string(num_iteration=-1))
        copy.best_iteration = booster.best_iteration
        return copy


def load_scoring_model(registry: Any, version: int) -> ScoringModel:
    """A registered version as scoring needs it (the batch path's ``_load_champion``, by
    number), predicting on one thread (:class:`SingleThreadBooster`)."""
    booster, card = registry.load_booster(version)
    ranges = {k: (float(v[0]), float(v[1])) for k, v in (card.get("feature_ranges") or {}).items()}
    return ScoringModel(SingleThreadBooster.of(booster), FeatureSpec.from_dict(card["feature_spec"]), str(version), ranges)


class ChampionHolder:
    """The champion, loaded once and swapped atomically when the registry's alias moves.

    ``registry`` needs ``alias_version(alias) -> int | None`` and ``load_booster(version) ->
    (booster, model card)`` (:class:`~aios_pipelines.modeling.registry.ModelRegistry`);
    ``registry_factory`` instead makes it on the first check (a registry that cannot be
    opened then means the fallback rules, not a failed request). The registry is only ever
    called by one thread at a time (under a lock); a request that finds the check due while
    another thread is checking or loading goes on with the current snapshot.
    ``check_interval_seconds=0`` checks on every request.
    """

    def __init__(
        self,
        registry: Any = None,
        *,
        registry_factory: Callable[[], Any] | None = None,
        alias: str = CHAMPION_ALIAS,
        check_interval_seconds: float = DEFAULT_CHECK_INTERVAL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime] = utcnow,
    ):
        if check_interval_seconds < 0:
            raise ValueError(f"check_interval_seconds must not be negative, got {check_interval_seconds}")
        if (registry is None) == (registry_factory is None):
            raise ValueError("give a registry or a registry_factory")
        self.registry = registry
        self._registry_factory = registry_factory
        self.alias = alias
        self.check_interval_seconds = float(check_interval_seconds)
        self._monotonic = monotonic
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: ChampionSnapshot | None = None
        self._checked_at = -math.inf
        self.swaps = 0
        self.last_check_error: str | None = None

    @property
    def snapshot(self) -> ChampionSnapshot | None:
        """The snapshot in use, without checking the registry (None before the first load)."""
        return self._snapshot

    def current(self) -> ChampionSnapshot:
        """The snapshot to score one request with; checks the alias when the check is due."""
        snapshot = self._snapshot
        if snapshot is None:
            with self._lock:
                if self._snapshot is None:
                    self._check()
                return self._snapshot  # type: ignore[return-value]
        if self._monotonic() - self._checked_at < self.check_interval_seconds:
            return snapshot
        if self._lock.acquire(blocking=False):
            try:
                self._check()
            finally:
                self._lock.release()
        return self._snapshot  # type: ignore[return-value]

    def refresh(self) -> ChampionSnapshot:
        """Check the alias now (waiting for a check in progress) and swap if it moved."""
        with self._lock:
            self._check()
            return self._snapshot  # type: ignore[return-value]

    # ---- under the lock

    def _check(self) -> None:
        self._checked_at = self._monotonic()
        current = self._snapshot
        try:
            if self.registry is None:
                self.registry = self._registry_factory()  # type: ignore[misc]
            version = self.registry.alias_version(self.alias)
        except Exception as exc:  # the registry is unreachable: keep serving what is loaded
            self.last_check_error = f"{type(exc).__name__}: {exc}"
            if current is None:
                self._install(None, None, f"the model registry cannot be read: {self.last_check_error}")
            return
        self.last_check_error = None
        if current is not None and version == current.alias_version and (current.model is not None or version is None):
            return
        if version is None:
            self._install(None, None, f"no model holds the {self.alias} alias")
            return
        try:
            model = load_scoring_model(self.registry, int(version))
        except Exception as exc:  # missing or corrupt files: the fallback rules answer
            self._install(None, int(version), f"champion v{version} cannot be loaded: {exc}")
            return
        self._install(model, int(version), None)

    def _install(self, model: ScoringModel | None, version: int | None, reason: str | None) -> None:
        previous = self._snapshot
        if previous is not None and previous.model is None and model is None and previous.fallback_reason == reason:
            return  # still unusable for the same reason: nothing to swap
        generation = 1 if previous is None else previous.generation + 1
        # One assignment of an immutable object: a request holds either the old or the new snapshot.
        self._snapshot = ChampionSnapshot(model, version, reason, self._clock(), generation)
        if previous is not None:
            self.swaps += 1


# --------------------------------------------------------------------------- contract checks


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class ContractViolation(ValueError):
    """The application breaks the data contract; ``problems`` names every bad field."""

    def __init__(self, problems: Sequence[FieldProblem]):
        self.problems = list(problems)
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in self.problems))


def _cell(value: Any) -> str | None:
    """A JSON value as the text cell a landing CSV would hold (the contract types it)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _day_of(value: Any, fallback: date) -> date:
    """The date an application timestamp names (its own landing day); ``fallback`` when it is
    not a timestamp (the contract check then says so)."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).date()
        except ValueError:
            return fallback
    return fallback


def contract_json_schema(dataset: DatasetSpec, title: str = "Application") -> dict[str, Any]:
    """A JSON Schema of one application (for the OpenAPI document; the check itself is
    :func:`validate_rows`)."""
    types = {
        "string": {"type": "string"},
        "integer": {"type": "integer"},
        "float": {"type": "number"},
        "timestamp": {"type": "string", "format": "date-time"},
        "date": {"type": "string", "format": "date"},
    }
    properties: dict[str, Any] = {}
    for column in dataset.columns:
        schema: dict[str, Any] = dict(types[column.type])
        if column.min is not None:
            schema["minimum"] = column.min
        if column.max is not None:
            schema["maximum"] = column.max
        if column.allowed_values is not None:
            schema["enum"] = list(column.allowed_values)
        if column.nullable:
            schema = {"anyOf": [schema, {"type": "null"}]}
        schema["description"] = column.description
        properties[column.name] = schema
    return {
        "title": title,
        "type": "object",
        "properties": properties,
        "required": [c.name for c in dataset.columns if not c.nullable],
        "additionalProperties": False,
    }


# What validate_rows parses as a timestamp, in the one spelling both it and Python read alike
# (the Z / +00:00 suffix it strips is allowed too).
_PLAIN_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)(?:Z|\+00:?00)?$")
_PLAIN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EXACT_INTEGER = 2**53  # beyond this a float no longer holds every integer


def _plain_value(value: Any, column: Any, now: datetime) -> tuple[bool, Any]:
    """(True, typed value) when ``value`` is plainly valid for ``column``: of its JSON type,
    in range, allowed, already in the form ``validate_rows`` would give it; else (False, None)."""
    if value is None:
        return column.nullable, None
    if column.type == "string":
        if not isinstance(value, str) or not value or value != value.strip():
            return False, None
        typed: Any = value
    elif column.type in ("integer", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, None
        number = float(value)
        if not math.isfinite(number) or abs(number) > _EXACT_INTEGER:
            return False, None
        if column.type == "integer":
            if number != round(number):
                return False, None
            typed = int(number)
        else:
            typed = number
        if (column.min is not None and typed < column.min) or (column.max is not None and typed > column.max):
            return False, None
    elif column.type == "timestamp":
        match = _PLAIN_TIMESTAMP.match(value) if isinstance(value, str) else None
        if match is None:
            return False, None
        try:
            typed = datetime.fromisoformat(match.group(1))
        except ValueError:
            return False, None
        if typed > now:
            return False, None
    elif column.type == "date":
        if not isinstance(value, str) or not _PLAIN_DATE.match(value):
            return False, None
        try:
            typed = date.fromisoformat(value)
        except ValueError:
            return False, None
    else:
        return False, None
    if column.allowed_values is not None and typed not in column.allowed_values:
        return False, None
    return True, typed


def _plainly_valid_row(payload: Mapping[str, Any], dataset: DatasetSpec, now: datetime) -> pl.DataFrame | None:
    """The typed row ``validate_rows`` would load for ``payload``, built directly, when every
    value is plainly valid (see :func:`_plain_value`); None when anything needs a closer look.
    Never accepts what ``validate_rows`` refuses (tests/test_online_contract.py compares the two
    on good and bad applications)."""
    names = dataset.column_names
    if any(key not in names for key in payload):
        return None
    row: dict[str, Any] = {}
    for column in dataset.columns:
        ok, typed = _plain_value(payload.get(column.name), column, now)
        if not ok:
            return None
        row[column.name] = typed
    stamp = row[dataset.timestamp_column.name]
    day = stamp.date() if isinstance(stamp, datetime) else stamp
    row.update({LANDING_DATE: day, SOURCE_FILE_COLUMN: ONLINE_SOURCE_FILE, SOURCE_ROW_COLUMN: 1})
    return pl.DataFrame([row], schema=loaded_schema(dataset), orient="row")


def validate_application(
    payload: Any, dataset: DatasetSpec, *, now: datetime, contract_label: str = "the data contract",
    fast: bool = True,
) -> pl.DataFrame:
    """One application (a JSON object) checked against the contract, as the nightly ingestion
    checks a landing row: the typed row (the contract's columns plus ``landing_date``,
    ``source_file`` and ``source_row``, like ``raw_applications``) or :class:`ContractViolation`
    naming each bad field. The landing day is the application's own date; a timestamp in the
    future (after ``now``) is refused.

    An application whose every value is plainly valid (``fast``) is typed directly, in
    microseconds; any other goes through
    :func:`~aios_pipelines.ingestion.validation.validate_rows` itself (about 10 ms for one row:
    the price of one polars query plan per rule), which loads it or names every bad field."""
    at = now.astimezone(timezone.utc).replace(tzinfo=None) if now.tzinfo else now
    if fast and isinstance(payload, Mapping):
        row = _plainly_valid_row(payload, dataset, at)
        if row is not None:
            return row
    if not isinstance(payload, Mapping):
        raise ContractViolation([FieldProblem("(body)", "expected a JSON object with the contract's columns")])
    names = dataset.column_names
    problems: list[FieldProblem] = [
        FieldProblem(str(key), f"not a column of {contract_label}") for key in payload if key not in names
    ]
    flagged = {p.field for p in problems}
    cells: dict[str, str | None] = {}
    for column in dataset.columns:
        value = payload.get(column.name)
        if isinstance(value, (Mapping, list, tuple)):
            problems.append(FieldProblem(column.name, f"expected {column.type}, got a JSON "
                                                      f"{'object' if isinstance(value, Mapping) else 'array'}"))
            flagged.add(column.name)
            value = None
        cells[column.name] = _cell(value)
    landing_day = _day_of(payload.get(dataset.timestamp_column.name), at.date())
    schema = {ROW_NUMBER: pl.Int64, SOURCE_FILE: pl.String, **{n: pl.String for n in names},
              MALFORMED: pl.String, RAW_CELLS: pl.String}
    raw = pl.DataFrame(
        {ROW_NUMBER: [1], SOURCE_FILE: [ONLINE_SOURCE_FILE], **{n: [cells[n]] for n in names},
         MALFORMED: [None], RAW_CELLS: [None]},
        schema=schema,
    )
    result = validate_rows(raw, dataset, landing_day, now=at)
    if result.quarantined.height:
        for reason in result.quarantined["all_reasons"][0]:
            field, _, message = reason.partition(": ")
            if field not in names:
                field, message = "(row)", reason
            if field not in flagged:
                problems.append(FieldProblem(field, message))
    if problems:
        order = {n: i for i, n in enumerate(names)}
        problems.sort(key=lambda p: order.get(p.field, -1))
        raise ContractViolation(problems)
    return result.loaded


# --------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class OnlineDecision:
    """One application decided: the scored row (the columns of ``scored_applications``), the
    application as validated, and the snapshot that scored it."""

    application_id: str
    application_date: date
    application: dict[str, Any]  # the contract's columns, typed
    scored: dict[str, Any]
    snapshot: ChampionSnapshot
    automation_paused: bool

    @property
    def action(self) -> str:
        return self.scored["action"]

    @property
    def reasons(self) -> list[dict[str, Any]]:
        codes = self.scored.get("reason_codes") or []
        texts = self.scored.get("reason_texts") or []
        features = self.scored.get("reason_features") or []
        return [{"code": c, "text": texts[i] if i < len(texts) else "", "feature": features[i] if i < len(features) else None}
                for i, c in enumerate(codes)]

    def record(self) -> dict[str, Any]:
        """The row the review store keeps (``online_decisions`` without the columns it sets)."""
        row = self.scored
        return {
            "application_id": self.application_id,
            "application_date": self.application_date,
            "pd": row["pd"],
            "score_band": row["score_band"],
            "model_version": row["model_version"],
            "decision_source": row["decision_source"],
            "fallback_reason": row["fallback_reason"],
            "confidence": row["confidence"],
            "reasons": self.reasons,
            "quality_flags": list(row.get("quality_flags") or []),
            "action": row["action"],
            "policy_rule": row["policy_rule"],
            "policy_hard_rule": row["policy_hard_rule"],
            "requires_four_eyes": bool(row["requires_four_eyes"]),
            "review_priority": row["review_priority"],
            "review_due_hours": row["review_due_hours"],
            "policy_version": row["policy_version"],
            "policy_fingerprint": row["policy_fingerprint"],
            "automation_paused": bool(row["automation_paused"]),
            "application": self.application,
        }


def describe_rule(policy: DecisionPolicy, rule: str) -> str:
    """What a decision's rule means, in the policy's own terms."""
    approve, decline = policy.auto_approve, policy.auto_decline
    if rule.startswith(HARD_RULE_PREFIX):
        rule_id = rule[len(HARD_RULE_PREFIX):]
        for hard in policy.hard_rules:
            if hard.id == rule_id:
                text = hard.description or hard.id
                return f"hard rule {hard.id}: {text} ({hard.when.describe()})"
        return f"hard rule {rule_id}"
    descriptions = {
        RULE_PAUSED: "automation is paused: every application goes to a person",
        RULE_FALLBACK_REVIEW: "the fallback scorecard is in use: no automatic decision on its PD",
        RULE_FALLBACK_AUTO_APPROVE: (f"fallback scorecard PD <= {approve.max_pd} and {policy.amount_column} <= "
                                     f"{approve.max_amount:g} (the policy allows the fallback to approve)"),
        RULE_NO_SCORE: "no PD: the model could not score this application",
        RULE_AUTO_DECLINE: f"PD >= {decline.min_pd}",
        RULE_AUTO_APPROVE: f"PD <= {approve.max_pd} and {policy.amount_column} <= {approve.max_amount:g}",
        RULE_AMOUNT_OVER_LIMIT: (f"PD <= {approve.max_pd} but {policy.amount_column} above {approve.max_amount:g} "
                                 "(or missing)"),
        RULE_GREY_ZONE: f"PD between {approve.max_pd} and {decline.min_pd}: the grey zone",
    }
    return descriptions.get(rule, rule)


def load_reason_catalog(contract_path: Path) -> dict[str, dict[str, Any]]:
    """The reason catalogue beside the contract (``reason_codes.yaml``), as scoring reads it."""
    path = Path(contract_path).with_name("reason_codes.yaml")
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


class OnlineDecisions:
    """Validate, build features, score, route: the online decision for one application."""

    def __init__(
        self,
        contract: DataContract,
        policy: DecisionPolicy,
        reason_catalog: Mapping[str, Mapping[str, Any]],
        champion: ChampionHolder,
        *,
        control_dir: Path | None = None,
    ):
        self.contract = contract
        self.policy = policy
        self.reason_catalog = {k: dict(v) for k, v in reason_catalog.items()}
        self.champion = champion
        self.control_dir = Path(control_dir) if control_dir is not None else None
        self.dataset = contract.applications
        self.contract_label = f"the data contract {contract.name} {contract.version}"

    @classmethod
    def from_environment(
        cls,
        *,
        policy: DecisionPolicy | None = None,
        paths: Any = None,
        check_interval_seconds: float = DEFAULT_CHECK_INTERVAL_SECONDS,
    ) -> "OnlineDecisions":
        """The data directory's registry (``$AIOS_MLFLOW_TRACKING_URI`` overrides its tracking
        store), the contract in force (``$AIOS_CONTRACT``), the policy in force and the
        operators' automation switch; the same sources as the pipeline's resources."""
        from aios_pipelines.modeling.registry import ModelRegistry, configured_registry_config
        from aios_pipelines.settings import aios_paths, contract_path

        paths = (paths or aios_paths()).ensure()
        config = configured_registry_config(paths)
        path = contract_path()
        return cls(
            load_contract(path),
            policy or load_policy(),
            load_reason_catalog(path),
            ChampionHolder(registry_factory=lambda: ModelRegistry(config), check_interval_seconds=check_interval_seconds),
            control_dir=paths.control,
        )

    def automation_paused(self) -> bool:
        if self.control_dir is None:
            return False
        return automation_switch.status(self.control_dir).paused

    def validate(self, payload: Any, *, now: datetime) -> pl.DataFrame:
        return validate_application(payload, self.dataset, now=now, contract_label=self.contract_label)

    def decide(self, payload: Any, *, now: datetime | None = None) -> OnlineDecision:
        """The decision for one application (a JSON object with the contract's columns).

        Raises :class:`ContractViolation` when the application breaks the contract. Never
        fails on the model: a champion that cannot be used yields the fallback decision."""
        now = now or utcnow()
        loaded = self.validate(payload, now=now)
        id_column = self.dataset.id_column.name
        features = build_features(loaded, self.dataset)
        applications = loaded.rename({id_column: APPLICATION_ID}) if id_column != APPLICATION_ID else loaded
        snapshot = self.champion.current()
        paused = self.automation_paused()
        outcome = score_applications(
            features,
            applications,
            self.policy,
            self.reason_catalog,
            snapshot.model,
            automation_paused=paused,
            fallback_reason=snapshot.fallback_reason,
        )
        scored = outcome.scored.to_dicts()[0]
        application = loaded.select(self.dataset.column_names).to_dicts()[0]
        return OnlineDecision(
            application_id=str(scored[APPLICATION_ID]),
            application_date=scored["application_date"],
            application=application,
            scored=scored,
            snapshot=snapshot,
            automation_paused=paused,
        )

    def evaluate_policy(
        self,
        application: Any,
        *,
        pd: Any = None,
        decision_source: str = "model",
        automation_paused: bool | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """What the policy alone decides for these inputs (a what-if): never scores, never
        stores. ``application`` holds at least the columns the policy names; ``pd`` may be
        left out with ``decision_source="fallback"`` (the fallback scorecard's PD is used)."""
        now = now or utcnow()
        problems: list[FieldProblem] = []
        if not isinstance(application, Mapping):
            raise ContractViolation([FieldProblem("application", "expected a JSON object with the policy's columns")])
        if decision_source not in DECISION_SOURCES:
            problems.append(FieldProblem("decision_source", f"must be one of {list(DECISION_SOURCES)}, got {decision_source!r}"))
        pd_value: float | None = None
        if pd is not None:
            if isinstance(pd, bool) or not isinstance(pd, (int, float)) or not 0.0 <= float(pd) <= 1.0:
                problems.append(FieldProblem("pd", f"must be a number in [0, 1] or null, got {pd!r}"))
            else:
                pd_value = float(pd)
        needed = [c for c in self.policy.columns if c != self.dataset.id_column.name]
        names = self.dataset.column_names
        for column in needed:
            if column not in application:
                problems.append(FieldProblem(f"application.{column}", f"missing: policy {self.policy.version} needs it"))
        given = [c for c in names if c in application or c in needed]
        keep = {self.dataset.id_column.name, self.dataset.timestamp_column.name, *given}
        subset = dataclasses.replace(self.dataset, columns=tuple(c for c in self.dataset.columns if c.name in keep))
        values = {c: application.get(c) for c in given}
        values.setdefault(self.dataset.id_column.name, WHAT_IF_ID)
        values.setdefault(self.dataset.timestamp_column.name, now.astimezone(timezone.utc).replace(tzinfo=None).isoformat())
        extra = {k: v for k, v in application.items() if k not in names}
        typed: dict[str, Any] = {}
        try:
            loaded = validate_application({**values, **extra}, subset, now=now, contract_label=self.contract_label)
            typed = loaded.select(given).to_dicts()[0]
        except ContractViolation as exc:
            missing = {p.field for p in problems}
            problems += [FieldProblem(f"application.{p.field}", p.message) for p in exc.problems
                         if f"application.{p.field}" not in missing]
        if problems:
            raise ContractViolation(problems)
        paused = self.automation_paused() if automation_paused is None else bool(automation_paused)
        if pd_value is None and decision_source == "fallback":
            pd_value = fallback_pd_row(self.policy, typed)
        decision = evaluate(self.policy, typed, pd_value, automation_paused=paused, decision_source=decision_source)
        return {
            "action": decision.action,
            "rule": decision.rule,
            "rule_description": describe_rule(self.policy, decision.rule),
            "hard_rule": decision.hard_rule,
            "score_band": decision.score_band,
            "requires_four_eyes": decision.requires_four_eyes,
            "priority": decision.priority,
            "due_hours": decision.due_hours,
            "reasons_required": decision.reasons_required,
            "pd": pd_value,
            "decision_source": decision_source,
            "automation_paused": paused,
            "policy_version": self.policy.version,
            "policy_fingerprint": self.policy.fingerprint,
            "application": typed,
        }
