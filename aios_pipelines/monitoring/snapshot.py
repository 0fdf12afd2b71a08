"""Reading the monitoring tables back out of the warehouse: the trigger snapshot, the daily
drift and stability series, and the analytics tables (``override_rates``,
``time_to_decision``) that dbt builds.

The monitoring tables (written by the ``defs/monitoring`` assets):

* ``feature_drift``: one row per application day x feature: method, score, threshold,
  drifted, the rows compared and the champion version whose reference sample was used.
* ``score_stability``: one row per application day x variable (``pd`` and each numeric
  feature): PSI, band, rows, the model version whose reference was used.
* ``model_performance``: one row per vintage x model version (see ``performance``).

The analytics tables are rolled up to one value per decision day: the override rate as
summed overrides over summed verdicts (``override_rates`` holds one row per day, model
version, score band, rule and reviewer; the trigger snapshot keeps the champion's
verdicts only), the time to decision as the case-weighted mean of the per-queue medians
(``time_to_decision`` holds one row per day and queue; the exact median of the day is not
recoverable from per-queue medians).

Reads only (read-only connections). Nothing here imports Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

import polars as pl

from aios_pipelines.monitoring import thresholds
from aios_pipelines.monitoring.performance import decay_evidence
from aios_pipelines.monitoring.triggers import DayValue, FeatureDay, MonitoringSnapshot, VintageDecay
from aios_pipelines.storage.warehouse import Warehouse

FEATURE_DRIFT = "feature_drift"
SCORE_STABILITY = "score_stability"
MODEL_PERFORMANCE = "model_performance"
OVERRIDE_RATES = "override_rates"
TIME_TO_DECISION = "time_to_decision"
PD_VARIABLE = "pd"

# Accepted names, first match wins (the dbt marts use the first of each).
PERIOD_COLUMNS = ("decision_date", "period_start", "day", "date")
VERDICT_COLUMNS = ("verdicts", "decisions")
OVERRIDE_COUNT_COLUMNS = ("overrides",)
HOURS_COLUMNS = ("p50_hours", "median_hours")
CASE_COLUMNS = ("decided_cases", "cases")


class AnalyticsTableError(ValueError):
    """An analytics table exists but has none of the columns monitoring understands."""


def _first(frame: pl.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in frame.columns), None)


def override_rate_by_day(frame: pl.DataFrame, model_version: str | None = None) -> pl.DataFrame:
    """day, override_rate, verdicts (null when unknown), oldest first; only the verdicts on
    applications scored by ``model_version`` when given and the table names the version."""
    if model_version is not None and "model_version" in frame.columns:
        frame = frame.filter(pl.col("model_version").cast(pl.String) == model_version)
    period = _first(frame, PERIOD_COLUMNS)
    verdicts = _first(frame, VERDICT_COLUMNS)
    overrides = _first(frame, OVERRIDE_COUNT_COLUMNS)
    if period is None or ("override_rate" not in frame.columns and not (verdicts and overrides)):
        raise AnalyticsTableError(
            f"override_rates needs a day column (one of {PERIOD_COLUMNS}) and either overrides + verdicts "
            f"or override_rate; it has {frame.columns}"
        )
    day = pl.col(period).cast(pl.Date).alias("day")
    if verdicts and overrides:
        out = frame.group_by(day).agg(
            (pl.col(overrides).sum() / pl.col(verdicts).sum()).alias("override_rate"),
            pl.col(verdicts).sum().cast(pl.Int64).alias("verdicts"),
        )
    elif verdicts:
        out = frame.group_by(day).agg(
            ((pl.col("override_rate") * pl.col(verdicts)).sum() / pl.col(verdicts).sum()).alias("override_rate"),
            pl.col(verdicts).sum().cast(pl.Int64).alias("verdicts"),
        )
    else:
        out = frame.group_by(day).agg(pl.col("override_rate").mean(), pl.lit(None, dtype=pl.Int64).alias("verdicts"))
    return out.filter(pl.col("override_rate").is_not_null() & pl.col("day").is_not_null()).sort("day")


def review_hours_by_day(frame: pl.DataFrame) -> pl.DataFrame:
    """day, median_hours (case-weighted over queues), cases, oldest first."""
    period = _first(frame, PERIOD_COLUMNS)
    hours = _first(frame, HOURS_COLUMNS)
    cases = _first(frame, CASE_COLUMNS)
    if period is None or hours is None:
        raise AnalyticsTableError(
            f"time_to_decision needs a day column (one of {PERIOD_COLUMNS}) and a median hours column "
            f"(one of {HOURS_COLUMNS}); it has {frame.columns}"
        )
    day = pl.col(period).cast(pl.Date).alias("day")
    if cases:
        out = frame.group_by(day).agg(
            ((pl.col(hours) * pl.col(cases)).sum() / pl.col(cases).sum()).alias("median_hours"),
            pl.col(cases).sum().cast(pl.Int64).alias("cases"),
        )
    else:
        out = frame.group_by(day).agg(pl.col(hours).mean().alias("median_hours"), pl.lit(None, dtype=pl.Int64).alias("cases"))
    return out.filter(pl.col("median_hours").is_not_null() & pl.col("day").is_not_null()).sort("day")


def drift_by_day(warehouse: Warehouse) -> pl.DataFrame:
    """day, champion_version, features, drifted, share, rows: one row per monitored day."""
    if not warehouse.table_exists(FEATURE_DRIFT):
        return pl.DataFrame(schema={"day": pl.Date, "champion_version": pl.String, "features": pl.Int64,
                                    "drifted": pl.Int64, "share": pl.Float64, "rows": pl.Int64})
    return warehouse.query(
        f"""
        select application_date as day, min(champion_version) as champion_version,
               count(*)::bigint as features, count(*) filter (where drifted)::bigint as drifted,
               avg(case when drifted then 1.0 else 0.0 end) as share, max(current_rows)::bigint as rows
        from {FEATURE_DRIFT} group by application_date order by application_date
        """
    )


def feature_days(warehouse: Warehouse, champion_version: str, days: list[date] | None = None) -> pl.DataFrame:
    """day, feature, drifted, score, psi: each monitored feature per day against champion
    ``champion_version`` (psi from ``score_stability``, null where there is none)."""
    schema = {"day": pl.Date, "feature": pl.String, "drifted": pl.Boolean, "score": pl.Float64, "psi": pl.Float64}
    if not warehouse.table_exists(FEATURE_DRIFT):
        return pl.DataFrame(schema=schema)
    day_filter = ""
    params: list = [champion_version]
    if days is not None:
        if not days:
            return pl.DataFrame(schema=schema)
        day_filter = f" and d.application_date in ({', '.join('?' for _ in days)})"
        params += list(days)
    psi_join = (
        f"left join {SCORE_STABILITY} s on s.application_date = d.application_date and s.variable = d.feature "
        f"and s.kind = 'feature' and s.model_version = d.champion_version"
        if warehouse.table_exists(SCORE_STABILITY) else ""
    )
    psi = "s.psi" if psi_join else "cast(null as double precision)"
    return warehouse.query(
        f"""
        select d.application_date as day, d.feature, d.drifted, d.score, {psi} as psi
        from {FEATURE_DRIFT} d {psi_join}
        where d.champion_version = ?{day_filter}
        order by d.application_date, d.feature
        """,
        params,
    ).cast(schema)


def drift_status(days: pl.DataFrame, warn: float = thresholds.DRIFT_WARN_SHARE,
                 error: float = thresholds.DRIFT_ERROR_SHARE) -> pl.DataFrame:
    """``drift_by_day`` with a status column: ok / warn / error."""
    return days.with_columns(
        pl.col("share").map_elements(lambda s: thresholds.grade(s, warn, error), return_dtype=pl.String).alias("status")
    )


def stability_by_day(warehouse: Warehouse) -> pl.DataFrame:
    """day, variable, psi, band, model_version, current_rows."""
    if not warehouse.table_exists(SCORE_STABILITY):
        return pl.DataFrame(schema={"day": pl.Date, "variable": pl.String, "psi": pl.Float64, "band": pl.String,
                                    "model_version": pl.String, "current_rows": pl.Int64})
    return warehouse.query(
        f"select application_date as day, variable, psi, band, model_version, current_rows "
        f"from {SCORE_STABILITY} order by application_date, variable"
    )


def day_ranges(days: list[date]) -> str:
    """'2026-08-30 .. 2026-09-02, 2026-09-05' for a list of days."""
    if not days:
        return "none"
    ordered = sorted(set(days))
    ranges: list[tuple[date, date]] = []
    for day in ordered:
        if ranges and (day - ranges[-1][1]).days == 1:
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ", ".join(a.isoformat() if a == b else f"{a} .. {b}" for a, b in ranges)


@dataclass(frozen=True)
class ChampionFacts:
    """What the snapshot needs to know about the champion (from the registry)."""

    version: int
    created_at: datetime
    data_snapshot_hash: str | None


def load_snapshot(
    warehouse: Warehouse,
    champion: ChampionFacts | None,
    *,
    now: datetime | None = None,
    history_days: int = 60,
) -> MonitoringSnapshot:
    """The monitoring snapshot of the current champion from the warehouse tables."""
    now = now or datetime.now(timezone.utc)
    if champion is None:
        return MonitoringSnapshot(as_of=now, champion_version=None, notes=("no champion model",))
    version = str(champion.version)
    notes: list[str] = []

    drift = drift_by_day(warehouse).filter(pl.col("champion_version") == version).tail(history_days)
    drift_shares = tuple(DayValue(d, float(s), int(r)) for d, s, r in drift.select("day", "share", "rows").iter_rows())
    if not drift_shares:
        notes.append(f"no feature drift measured against champion v{version}")
    per_feature = feature_days(warehouse, version, drift["day"].to_list()) if drift_shares else None
    features = () if per_feature is None else tuple(
        FeatureDay(d, f, bool(x), float(s), None if p is None else float(p))
        for d, f, x, s, p in per_feature.select("day", "feature", "drifted", "score", "psi").iter_rows()
    )

    stability = stability_by_day(warehouse).filter(
        (pl.col("variable") == PD_VARIABLE) & (pl.col("model_version") == version) & pl.col("psi").is_not_null()
    ).tail(history_days)
    pd_psi = tuple(DayValue(d, float(p), int(r)) for d, p, r in stability.select("day", "psi", "current_rows").iter_rows())

    vintages: tuple[VintageDecay, ...] = ()
    if warehouse.table_exists(MODEL_PERFORMANCE):
        evidence = decay_evidence(warehouse.read_table(MODEL_PERFORMANCE), version)
        vintages = tuple(
            VintageDecay(r["vintage"], r["vintage_start"], r["auc"], r["validation_auc"], r["auc_decay"],
                         r["matured"], r["defaults"])
            for r in evidence.iter_rows(named=True)
        )

    override_rates = review_times = None
    if warehouse.table_exists(OVERRIDE_RATES):
        try:
            rates = override_rate_by_day(warehouse.read_table(OVERRIDE_RATES), version).tail(history_days)
            override_rates = tuple(
                DayValue(d, float(r), None if v is None else int(v))
                for d, r, v in rates.select("day", "override_rate", "verdicts").iter_rows()
            )
        except AnalyticsTableError as exc:
            notes.append(str(exc))
    if warehouse.table_exists(TIME_TO_DECISION):
        try:
            hours = review_hours_by_day(warehouse.read_table(TIME_TO_DECISION)).tail(history_days)
            review_times = tuple(
                DayValue(d, float(h), None if c is None else int(c))
                for d, h, c in hours.select("day", "median_hours", "cases").iter_rows()
            )
        except AnalyticsTableError as exc:
            notes.append(str(exc))

    return MonitoringSnapshot(
        as_of=now,
        champion_version=champion.version,
        champion_created_at=champion.created_at,
        champion_data_hash=champion.data_snapshot_hash,
        drift_shares=drift_shares,
        pd_psi=pd_psi,
        production_vintages=vintages,
        override_rates=override_rates,
        review_times=review_times,
        feature_days=features,
        notes=tuple(notes),
    )


def champion_facts(registry) -> ChampionFacts | None:
    """The champion as the snapshot needs it, from a ``modeling.registry.ModelRegistry``."""
    from aios_pipelines.modeling.registry import TAG_DATA_SNAPSHOT_HASH

    champion = registry.champion()
    if champion is None:
        return None
    return ChampionFacts(
        version=champion.version,
        created_at=champion.created_at,
        data_snapshot_hash=champion.tags.get(TAG_DATA_SNAPSHOT_HASH),
    )


__all__ = [
    "AnalyticsTableError",
    "ChampionFacts",
    "champion_facts",
    "day_ranges",
    "drift_by_day",
    "drift_status",
    "feature_days",
    "load_snapshot",
    "override_rate_by_day",
    "review_hours_by_day",
    "stability_by_day",
]
