"""Retention: remove applicants' personal fields once an application is older than the
retention period, from the warehouse and from the review store, and record it in the audit log.

What is personal is declared in the data contract (``personal: true``); the features derived
from a personal column are personal too. What stays: ids, timestamps, the loan's own terms
(amount, term, channel), scores, decisions, reasons, reviewers and every count, so the
analytics, the decision records and the audit chain outlive the personal data. Where a text
names a personal field's value (a quarantine reason, a quality flag such as
``annual_income: 812000 is outside the training range``), the text after the field's name is
replaced by :data:`REMOVED`.

The period: ``months`` (``$AIOS_RETENTION_MONTHS``, default :data:`DEFAULT_MONTHS`). The
personal fields are part of the credit application records (kept at least 25 months) and of
the AI system's logs (at least 6 months), so the period may not go below the longer of the
two unless an override reason is given; the override is written into the audit entry of every
run that removes something under it.

A run (:func:`apply_retention`): plan what would change in both stores (read-only), then, unless
it is a dry run, rewrite the warehouse rows in one DuckDB transaction (recording the run in
``retention_runs``), then the review store's rows and the audit entry ``retention.applied`` in
one review-store transaction. The audit entry carries the period, the cut-off, the override,
the rows changed per table and sha256 digests of the values removed (of each table and of the
whole run), never the values. Entries written before keep what they pinned (hashes of the
inputs a reviewer was shown), so the chain still verifies. A second run finds nothing left to
remove and changes nothing, the audit log included.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import polars as pl

from aios_pipelines.features.build import DERIVED_FEATURES, feature_definition
from aios_pipelines.ingestion.contract import DataContract
from aios_pipelines.review.audit import canonical_json

MONTHS_ENV = "AIOS_RETENTION_MONTHS"
# The usual legal minimums for what the personal fields are part of.
LEGAL_MINIMUM_MONTHS: dict[str, int] = {
    "credit application records": 25,
    "AI system logs": 6,
}
DEFAULT_MONTHS = max(LEGAL_MINIMUM_MONTHS.values())
REMOVED = "[removed under the retention policy]"
RUNS_TABLE = "retention_runs"
AUDIT_ACTION = "retention.applied"
AUDIT_ENTITY = "retention"


class RetentionError(ValueError):
    """A retention setting that may not be used as given; the message says what to do."""


# --------------------------------------------------------------------------- the period


def months_before(day: date, months: int) -> date:
    """The same day ``months`` calendar months earlier (the month's last day if shorter)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class RetentionPolicy:
    months: int = DEFAULT_MONTHS
    override_reason: str | None = None

    @classmethod
    def from_settings(cls, months: int | str | None = None, override_reason: str | None = None) -> "RetentionPolicy":
        """``months`` given, else ``$AIOS_RETENTION_MONTHS``, else the default; checked against
        the legal minimums (:meth:`check`)."""
        where = "--months"
        if months is None and os.environ.get(MONTHS_ENV):
            months, where = os.environ[MONTHS_ENV], f"${MONTHS_ENV}"
        if months is None:
            months = DEFAULT_MONTHS
        try:
            value = int(months)
        except (TypeError, ValueError):
            raise RetentionError(f"{where} must be a whole number of months, got {months!r}") from None
        reason = (override_reason or "").strip() or None
        policy = cls(value, reason)
        policy.check()
        return policy

    def minimums_broken(self) -> dict[str, int]:
        return {what: minimum for what, minimum in LEGAL_MINIMUM_MONTHS.items() if self.months < minimum}

    def check(self) -> None:
        if self.months < 1:
            raise RetentionError(f"the retention period must be at least 1 month, got {self.months}")
        broken = self.minimums_broken()
        if broken and not self.override_reason:
            listed = " and ".join(f"{minimum} months for {what}" for what, minimum in broken.items())
            raise RetentionError(
                f"a retention period of {self.months} months is shorter than the legal minimum of {listed}. "
                "If a shorter period really applies to you, pass --override-reason \"...\" saying why: "
                "the override is recorded in the audit log with every removal made under it."
            )

    @property
    def overridden(self) -> bool:
        return bool(self.minimums_broken())

    def cutoff(self, today: date) -> date:
        """Applications dated before this day are past the period."""
        return months_before(today, self.months)


# --------------------------------------------------------------------------- what is personal


@dataclass(frozen=True)
class PersonalFields:
    """The personal contract columns and the personal feature names derived from them."""

    columns: tuple[str, ...]
    features: tuple[str, ...]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.columns) | frozenset(self.features)

    @classmethod
    def of(cls, contract: DataContract) -> "PersonalFields":
        dataset = contract.applications
        personal = set(dataset.personal_columns)
        definition = feature_definition(dataset)
        derived = {d.name: d for d in DERIVED_FEATURES}
        features = []
        for name in definition.features:
            if name in derived:
                inputs = [dataset.by_meaning(m) for m in derived[name].inputs]
                if any(c is not None and c.name in personal for c in inputs):
                    features.append(name)
            elif definition.source_columns.get(name) in personal:
                features.append(name)
        return cls(tuple(dataset.personal_columns), tuple(features))


def redact_text(value: Any, names: frozenset[str]) -> Any:
    """``"<personal field>: anything"`` becomes ``"<field>: [removed ...]"``; other text stays."""
    if not isinstance(value, str):
        return value
    head, sep, _ = value.partition(":")
    if sep and head.strip() in names and value != f"{head}: {REMOVED}":
        return f"{head}: {REMOVED}"
    return value


def redact_texts(values: Any, names: frozenset[str]) -> Any:
    if values is None:
        return None
    return [redact_text(v, names) for v in values]


def redact_mapping(value: Any, names: frozenset[str]) -> Any:
    """A JSON object (or its text): personal keys set to null; other text: null."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None  # not an object we can read field by field (a malformed row's cells)
        if not isinstance(parsed, dict):
            return None
        redacted = redact_mapping(parsed, names)
        return value if redacted == parsed else json.dumps(redacted, sort_keys=True)
    if isinstance(value, Mapping):
        return {k: (None if k in names else v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- the targets


@dataclass(frozen=True)
class Target:
    """One table: the column that dates a row, a key naming the row in the digest, and how
    each column is redacted (``null`` for a personal column, ``mapping``, ``text``, ``texts``)."""

    table: str
    date_column: str
    key: str
    columns: dict[str, str]


def warehouse_targets(contract: DataContract, personal: PersonalFields) -> list[Target]:
    app_id = contract.applications.id_column.name
    raw = {c: "null" for c in personal.columns}
    features = {f: "null" for f in personal.features}
    return [
        Target("raw_applications", "landing_date", app_id, raw),
        Target("online_applications", "landing_date", app_id, raw),
        Target("quarantined_applications", "landing_date", "record_id",
               {"raw_record": "mapping", "reason": "text", "all_reasons": "texts"}),
        Target("application_features", "application_date", "application_id", features),
        Target("training_set", "application_date", "application_id", features),
        Target("scored_applications", "application_date", "application_id", {"quality_flags": "texts"}),
        Target("online_decisions", "application_date", "application_id", {"quality_flags": "texts"}),
    ]


STORE_TARGETS = [
    Target("cases", "application_date", "case_id", {"applicant_summary": "mapping", "quality_flags": "texts"}),
    Target("online_decisions", "application_date", "decision_id", {"application": "mapping", "quality_flags": "texts"}),
]


def _redactor(kind: str, names: frozenset[str]) -> Callable[[Any], Any]:
    if kind == "null":
        return lambda value: None
    if kind == "mapping":
        return lambda value: redact_mapping(value, names)
    if kind == "text":
        return lambda value: redact_text(value, names)
    if kind == "texts":
        return lambda value: redact_texts(value, names)
    raise ValueError(f"unknown redaction {kind!r}")


@dataclass
class TablePlan:
    store: str  # warehouse | review_store
    table: str
    rows: int = 0
    fields: list[str] = field(default_factory=list)
    sha256: str = ""
    updates: list[dict[str, Any]] = field(default_factory=list, repr=False)  # row locator + new values

    def summary(self) -> dict[str, Any]:
        return {"rows": self.rows, "fields": sorted(self.fields), "sha256": self.sha256}


def plan_rows(rows: Iterable[Mapping[str, Any]], target: Target, names: frozenset[str], locator: str
              ) -> tuple[list[dict[str, Any]], list[str], str]:
    """The rows of ``target`` that still hold personal data: their new values (with
    ``locator``), the fields touched, and a sha256 over what is removed (sorted, canonical)."""
    redactors = {column: _redactor(kind, names) for column, kind in target.columns.items()}
    updates: list[dict[str, Any]] = []
    removed_lines: list[str] = []
    touched: set[str] = set()
    for row in rows:
        new: dict[str, Any] = {}
        removed: dict[str, Any] = {}
        for column, redact in redactors.items():
            old = row.get(column)
            value = redact(old)
            if value != old and not (old is None and value is None):
                new[column], removed[column] = value, old
        if new:
            touched.update(new)
            updates.append({locator: row[locator], **{c: new.get(c, row.get(c)) for c in redactors}})
            removed_lines.append(canonical_json({"key": row.get(target.key), "removed": removed}))
    digest = hashlib.sha256("\n".join(sorted(removed_lines)).encode("utf-8")).hexdigest() if updates else ""
    return updates, sorted(touched), digest


# --------------------------------------------------------------------------- the warehouse


def _warehouse_columns(con: Any, table: str) -> dict[str, str] | None:
    found = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_name = ? and table_schema = current_schema()",
        [table],
    ).fetchall()
    return {name: kind for name, kind in found} or None


def _row_id(con: Any) -> tuple[str, str]:
    """(the select expression of a row's id, the update's match on it) for the warehouse's
    engine: DuckDB's ``rowid``; PostgreSQL's ``ctid``, which holds only while the rows are
    locked, so there the plan is read ``for update`` in the transaction that writes."""
    if getattr(con, "engine", "duckdb") == "postgres":
        return "ctid::text", "{table}.ctid = {view}.__rowid::tid"
    return "rowid", "{table}.rowid = {view}.__rowid"


def plan_warehouse(con: Any, targets: list[Target], names: frozenset[str], cutoff: date,
                   lock: bool = False) -> list[TablePlan]:
    from aios_pipelines.storage.warehouse import quote_identifier as q

    row_id = _row_id(con)[0]
    plans = []
    for target in targets:
        present = _warehouse_columns(con, target.table)
        if present is None or target.date_column not in present:
            continue
        columns = {c: k for c, k in target.columns.items() if c in present}
        if not columns:
            continue
        scoped = Target(target.table, target.date_column, target.key, columns)
        key = f", {q(target.key)}" if target.key in present and target.key not in columns else ""
        # columns that are simply nulled: only rows that still hold a value need a look
        pending = (" and (" + " or ".join(f"{q(c)} is not null" for c in columns) + ")"
                   if all(kind == "null" for kind in columns.values()) else "")
        frame = con.sql(
            f"select {row_id} as __rowid{key}, {', '.join(q(c) for c in columns)} from {q(target.table)} "
            f"where {q(target.date_column)} < ?{pending}{' for update' if lock else ''}",
            params=[cutoff],
        ).pl()
        updates, touched, digest = plan_rows(frame.iter_rows(named=True), scoped, names, "__rowid")
        plans.append(TablePlan("warehouse", target.table, len(updates), touched, digest, updates))
    return plans


def write_warehouse(con: Any, plans: list[TablePlan]) -> None:
    """Rewrite the planned rows, by row id, inside the caller's transaction."""
    from aios_pipelines.storage.warehouse import quote_identifier as q

    row_id, match = _row_id(con)
    for i, plan in enumerate(plans):
        if not plan.updates:
            continue
        table = q(plan.table)
        columns = [c for c in plan.updates[0] if c != "__rowid"]
        schema = dict(con.sql(f"select {row_id} as __rowid, {', '.join(q(c) for c in columns)} from {table} limit 0")
                      .pl().schema)
        view = f"retention_rows_{i}"
        con.register(view, pl.DataFrame(plan.updates, schema=schema, orient="row").to_arrow())
        assignments = ", ".join(f"{q(c)} = {view}.{q(c)}" for c in columns)
        con.execute(f"update {table} set {assignments} from {view} where {match.format(table=table, view=view)}")
        con.unregister(view)


def redacted_before(warehouse: Any) -> date | None:
    """The latest cut-off retention applied to the warehouse: rows dated before it have lost
    their personal fields (training leaves them out). None if retention never ran."""
    if not warehouse.table_exists(RUNS_TABLE):
        return None
    return warehouse.scalar(f"select max(cutoff) from {RUNS_TABLE}")


# --------------------------------------------------------------------------- the review store


def _store_rows(conn: Any, target: Target, cutoff: date) -> list[dict[str, Any]]:
    from sqlalchemy import Date, cast, func, select

    from aios_pipelines.review import schema

    table = getattr(schema, target.table)
    dated: Any = table.c[target.date_column]
    if target.table == "cases":  # a case without an application date is dated by its creation
        created = func.date(table.c.created_at) if conn.dialect.name == "sqlite" else cast(table.c.created_at, Date)
        dated = func.coalesce(dated, created)
    query = select(table.c[target.key], *[table.c[c] for c in target.columns]).where(dated < cutoff)
    return [dict(r._mapping) for r in conn.execute(query)]


def plan_store(conn: Any, names: frozenset[str], cutoff: date) -> list[TablePlan]:
    plans = []
    for target in STORE_TARGETS:
        updates, touched, digest = plan_rows(_store_rows(conn, target, cutoff), target, names, target.key)
        plans.append(TablePlan("review_store", target.table, len(updates), touched, digest, updates))
    return plans


def _write_store(conn: Any, plans: list[TablePlan]) -> None:
    from sqlalchemy import text, update

    from aios_pipelines.review import schema

    for plan in plans:
        if not plan.updates:
            continue
        table = getattr(schema, plan.table)
        key = next(t.key for t in STORE_TARGETS if t.table == plan.table)
        append_only = plan.table in schema.APPEND_ONLY_TABLES
        # online_decisions is append-only (triggers refuse UPDATE): retention is the one writer
        # allowed to change it, inside this transaction, and its audit entry says so.
        if append_only and conn.dialect.name == "sqlite":
            conn.execute(text(f"DROP TRIGGER IF EXISTS {plan.table}_no_update"))
        elif append_only and conn.dialect.name == "postgresql":
            conn.execute(text(f"ALTER TABLE {plan.table} DISABLE TRIGGER {plan.table}_append_only"))
        for row in plan.updates:
            conn.execute(update(table).where(table.c[key] == row[key])
                         .values(**{c: v for c, v in row.items() if c != key}))
        if append_only and conn.dialect.name == "sqlite":
            conn.execute(text(
                f"CREATE TRIGGER IF NOT EXISTS {plan.table}_no_update BEFORE UPDATE ON {plan.table} "
                f"BEGIN SELECT RAISE(ABORT, '{plan.table} is append-only'); END"))
        elif append_only and conn.dialect.name == "postgresql":
            conn.execute(text(f"ALTER TABLE {plan.table} ENABLE TRIGGER {plan.table}_append_only"))


def _audited_run_ids(conn: Any) -> set[str]:
    from sqlalchemy import select

    from aios_pipelines.review.schema import audit_log

    found: set[str] = set()
    for (payload,) in conn.execute(select(audit_log.c.payload).where(audit_log.c.action == AUDIT_ACTION)):
        data = payload if isinstance(payload, dict) else json.loads(payload)
        found.add(str(data.get("run_id")))
        found.update(str(r.get("run_id")) for r in data.get("warehouse_runs_recorded_late", []))
    return found


# --------------------------------------------------------------------------- a run


@dataclass
class RetentionReport:
    months: int
    cutoff: date
    dry_run: bool
    override_reason: str | None
    tables: list[TablePlan]
    run_id: str = ""
    audit_seq: int | None = None

    @property
    def rows_changed(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(canonical_json(
            [[t.store, t.table, t.sha256] for t in self.tables if t.rows]).encode("utf-8")).hexdigest()

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        out = [f"retention: {self.months} months; applications dated before {self.cutoff.isoformat()} are past it"
               + (f" (override: {self.override_reason})" if self.override_reason else "")]
        for t in self.tables:
            out.append(f"  {t.store:<12} {t.table:<26} {verb} personal fields of {t.rows:,} row(s)"
                       + (f": {', '.join(t.fields)}" if t.fields else ""))
        if not self.rows_changed:
            out.append("nothing to remove: every older application's personal fields are already gone")
        elif self.dry_run:
            out.append(f"dry run: nothing was changed ({self.rows_changed:,} row(s) would be)")
        else:
            out.append(f"{self.rows_changed:,} row(s) changed; recorded in the audit log as entry {self.audit_seq} "
                       f"(sha256 of what was removed {self.sha256[:16]}...)")
        return out


def apply_retention(
    policy: RetentionPolicy,
    contract: DataContract,
    warehouse: Any,
    store: Any,
    *,
    today: date | None = None,
    dry_run: bool = False,
    actor: str = "system:retention",
    now: datetime | None = None,
) -> RetentionReport:
    """Remove the personal fields of applications older than ``policy``'s period (see the
    module's docstring). ``warehouse``: :class:`~aios_pipelines.storage.warehouse.Warehouse`
    (skipped when its file does not exist yet); ``store``: the review store."""

    policy.check()
    now = now or datetime.now(timezone.utc)
    today = today or now.date()
    cutoff = policy.cutoff(today)
    personal = PersonalFields.of(contract)
    names = personal.names
    targets = warehouse_targets(contract, personal)
    run_id = uuid.uuid4().hex
    override = policy.override_reason if policy.overridden else None

    if warehouse.exists():
        with warehouse.connect(read_only=dry_run) as con:
            # PostgreSQL: other writers may run meanwhile, and a row's ctid holds only while it is
            # locked, so plan and write in one transaction (DuckDB's single writer needs no lock)
            locked = not dry_run and getattr(con, "engine", "duckdb") == "postgres"
            if locked:
                con.execute("begin transaction")
            warehouse_plans = plan_warehouse(con, targets, names, cutoff, lock=locked)
            report = RetentionReport(policy.months, cutoff, dry_run, override, warehouse_plans, run_id)
            changed = sum(p.rows for p in warehouse_plans)
            if locked and not changed:
                con.execute("commit")
            if not dry_run and changed:
                if not locked:
                    con.execute("begin transaction")
                try:
                    write_warehouse(con, warehouse_plans)
                    con.execute(f"create table if not exists {RUNS_TABLE} (run_id varchar, applied_at timestamp, "
                                "months bigint, cutoff date, override_reason varchar, actor varchar, "
                                "rows_changed bigint, sha256 varchar)")
                    con.execute(f"insert into {RUNS_TABLE} values (?, ?, ?, ?, ?, ?, ?, ?)", [
                        run_id, now.astimezone(timezone.utc).replace(tzinfo=None), policy.months, cutoff, override,
                        actor, changed, report.sha256])
                    con.execute("commit")
                except BaseException:
                    con.execute("rollback")
                    raise
            late = []
            if not dry_run and _warehouse_columns(con, RUNS_TABLE) is not None:
                late = [dict(zip(("run_id", "rows_changed", "sha256", "cutoff"), r)) for r in con.execute(
                    f"select run_id, rows_changed, sha256, cutoff from {RUNS_TABLE} where run_id <> ?", [run_id]
                ).fetchall()]
    else:
        report = RetentionReport(policy.months, cutoff, dry_run, override, [], run_id)
        late = []

    if dry_run:
        with store._read() as conn:
            report.tables.extend(plan_store(conn, names, cutoff))
        return report

    with store._write() as tx:
        store_plans = plan_store(tx.conn, names, cutoff)
        report.tables.extend(store_plans)
        audited = _audited_run_ids(tx.conn)
        unrecorded = [{**r, "cutoff": str(r["cutoff"])} for r in late if r["run_id"] not in audited]
        if report.rows_changed or unrecorded:
            _write_store(tx.conn, store_plans)
            tx.audit(now, actor, AUDIT_ACTION, AUDIT_ENTITY, cutoff.isoformat(), {
                "run_id": run_id,
                "months": policy.months,
                "cutoff": cutoff.isoformat(),
                "legal_minimum_months": LEGAL_MINIMUM_MONTHS,
                "override": {"reason": override, "below": policy.minimums_broken()} if override else None,
                "personal_fields": sorted(names),
                "tables": {f"{t.store}.{t.table}": t.summary() for t in report.tables if t.rows},
                "rows_changed": report.rows_changed,
                "sha256": report.sha256,
                # a run whose warehouse part committed but whose audit entry did not (a crash between)
                "warehouse_runs_recorded_late": unrecorded,
            })
            report.audit_seq = tx._head[0] if tx._head else None
    return report

