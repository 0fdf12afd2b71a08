"""Monitoring: feature drift (Evidently), population stability, performance by vintage and
the risk report, each with its check; the ``monitor_applications`` job runs them.

Every comparison is against the champion: its ``reference_sample.parquet`` (the rows it was
trained on, with its PDs) is read from the registry. The logic lives in
``aios_pipelines.monitoring``; these assets read, call it, write and report.
"""


import tempfile
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path

import dagster as dg
import polars as pl

from aios_pipelines.defs.metadata import markdown_table, partition_days
from aios_pipelines.defs.partitions import daily_partitions
from aios_pipelines.defs.resources import LandingResource, ModelRegistryResource, ReportsResource, WarehouseResource
from aios_pipelines.features.build import APPLICATION_DATE, APPLICATION_ID, MISSING_SUFFIX, feature_definition
from aios_pipelines.monitoring import thresholds
from aios_pipelines.monitoring.drift import (
    FEATURE_DRIFT_SCHEMA,
    MAX_REFERENCE_ROWS,
    MIN_BATCH_ROWS,
    batch_too_small,
    detect_drift,
    reference_for_drift,
)
from aios_pipelines.monitoring.performance import (
    MIN_VINTAGE_DEFAULTS,
    MIN_VINTAGE_ROWS,
    PERFORMANCE_SCHEMA,
    ValidationFigures,
    decay_evidence,
    vintage_performance,
)
from aios_pipelines.monitoring.snapshot import (
    FEATURE_DRIFT,
    MODEL_PERFORMANCE,
    OVERRIDE_RATES,
    PD_VARIABLE,
    SCORE_STABILITY,
    TIME_TO_DECISION,
    AnalyticsTableError,
    day_ranges,
    drift_by_day,
    drift_status,
    override_rate_by_day,
    review_hours_by_day,
    stability_by_day,
)
from aios_pipelines.monitoring.stability import FEATURE, SCORE, STABILITY_SCHEMA, psi, stability_table

MONITORING_GROUP = "monitoring"
REFERENCE_ARTIFACT = "reference_sample.parquet"
RISK_REPORT_FILE = "risk_report.html"


# ---------------------------------------------------------------------- helpers


class _References:
    """Reference samples of registered versions, downloaded once per run."""

    def __init__(self, model_registry: ModelRegistryResource, folder: Path):
        self.model_registry = model_registry
        self.folder = folder
        self._frames: dict[str, pl.DataFrame | None] = {}
        self._registry = None

    @property
    def registry(self):
        if self._registry is None:
            self._registry = self.model_registry.get()
        return self._registry

    def champion(self):
        return self.registry.champion()

    def of(self, version: str) -> pl.DataFrame | None:
        from aios_pipelines.modeling.registry import RegistryError

        if version not in self._frames:
            try:
                path = self.registry.run_artifact(int(version), REFERENCE_ARTIFACT, self.folder / f"v{version}")
                self._frames[version] = pl.read_parquet(path)
            except (RegistryError, ValueError, OSError):
                self._frames[version] = None
        return self._frames[version]


def _champion_reference(refs: _References) -> tuple[object | None, pl.DataFrame | None, str]:
    from aios_pipelines.modeling.registry import RegistryError

    try:
        champion = refs.champion()
    except RegistryError as exc:
        return None, None, f"the model registry cannot be read: {exc}"
    if champion is None:
        return None, None, "no model holds the champion alias yet: nothing to compare against"
    reference = refs.of(str(champion.version))
    if reference is None:
        return champion, None, (
            f"champion v{champion.version} has no {REFERENCE_ARTIFACT} artifact (trained before monitoring "
            "existed?): retrain to give it one"
        )
    return champion, reference, ""


def _rows_of_days(store, table: str, days: list[date], columns: str = "*") -> pl.DataFrame | None:
    if not store.table_exists(table):
        return None
    return store.query(f"select {columns} from {table} where {APPLICATION_DATE} in (select unnest(?::date[]))", [days])


def _report_link(path: Path) -> dict[str, dg.MetadataValue]:
    return {"report": dg.MetadataValue.path(str(path)), "report_url": dg.MetadataValue.url(path.resolve().as_uri())}


def _skip_result(check_name: str, why: str, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"not evaluated: {why}",
        metadata={"skipped": why, **metadata},
    )


def _graded_check(check_name: str, grades: dict[date, str], skipped: dict[date, str], values: dict[date, float],
                  what: str, warn: float, error: float, min_rows: int) -> dg.AssetCheckResult:
    """One check over the run's days: ERROR if any day is red, WARN if any is amber or was
    not judged (``skipped``: day -> why, e.g. too few rows)."""
    overall = thresholds.worst(list(grades.values()))
    if skipped and overall == thresholds.OK:
        overall = thresholds.WARN
    red = [d for d, g in grades.items() if g == thresholds.ERROR]
    amber = [d for d, g in grades.items() if g == thresholds.WARN]
    worst_day = max(values, key=lambda d: values[d]) if values else None
    parts = []
    if red:
        parts.append(f"{what} >= {error:g} on {day_ranges(red)}")
    if amber:
        parts.append(f"{what} >= {warn:g} on {day_ranges(amber)}")
    if skipped:
        parts.append(f"not judged on {day_ranges(list(skipped))} ({'; '.join(sorted(set(skipped.values())))})")
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=overall == thresholds.OK,
        severity=dg.AssetCheckSeverity.ERROR if overall == thresholds.ERROR else dg.AssetCheckSeverity.WARN,
        description="; ".join(parts) or f"{what} below {warn:g} on every day",
        metadata={
            "warn_threshold": warn,
            "error_threshold": error,
            "worst_day": str(worst_day) if worst_day else "",
            "worst_value": float(values[worst_day]) if worst_day else 0.0,
            "red_days": day_ranges(red),
            "amber_days": day_ranges(amber),
            "days_judged": len(grades),
            "days_not_judged": dg.MetadataValue.json({str(d): why for d, why in sorted(skipped.items())}),
            "min_batch_rows": min_rows,
        },
    )


# ---------------------------------------------------------------------- feature drift


class FeatureDriftConfig(dg.Config):
    min_batch_rows: int = MIN_BATCH_ROWS
    max_reference_rows: int = MAX_REFERENCE_ROWS
    warn_share: float = thresholds.DRIFT_WARN_SHARE
    error_share: float = thresholds.DRIFT_ERROR_SHARE


@dg.asset(
    group_name=MONITORING_GROUP,
    kinds={"evidently", "duckdb"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="warehouse",
    deps=["application_features", dg.AssetDep("credit_risk_model")],
    check_specs=[
        dg.AssetCheckSpec(
            "check_drift_share_of_drifted_features",
            asset="feature_drift_report",
            description=(
                f"Share of features whose distribution drifted from the champion's training sample: WARN at "
                f"{thresholds.DRIFT_WARN_SHARE:g}, ERROR at {thresholds.DRIFT_ERROR_SHARE:g}; WARN when a day has "
                f"fewer than {MIN_BATCH_ROWS} applications (not judged)."
            ),
        )
    ],
)
def feature_drift_report(
    context: dg.AssetExecutionContext,
    config: FeatureDriftConfig,
    landing: LandingResource,
    warehouse: WarehouseResource,
    model_registry: ModelRegistryResource,
    reports: ReportsResource,
):
    """Evidently data-drift report per application day against the champion's training
    sample: the method, score and verdict of every feature in the ``feature_drift`` table,
    the share of drifted features, and the HTML report under reports/drift/<day>.html."""
    check = "check_drift_share_of_drifted_features"
    days = partition_days(context)
    store = warehouse.get()
    definition = feature_definition(landing.contract().applications)
    empty = pl.DataFrame(schema=FEATURE_DRIFT_SCHEMA)
    with tempfile.TemporaryDirectory(prefix="aios-reference-") as tmp:
        refs = _References(model_registry, Path(tmp))
        champion, reference, why = _champion_reference(refs)
    if reference is None:
        store.replace_partitions(FEATURE_DRIFT, empty, APPLICATION_DATE, days)
        context.log.warning(f"feature drift not measured: {why}")
        yield dg.MaterializeResult(metadata={"skipped": why, "days": len(days)},
                                   check_results=[_skip_result(check, why)])
        return

    features = [f for f in definition.features if f in reference.columns]
    reference = reference_for_drift(reference, config.max_reference_rows)
    current_all = _rows_of_days(store, "application_features", days)
    folder = reports.folder("drift")
    frames, per_day, grades, shares, skipped = [], [], {}, {}, {}
    newest = None
    for day in days:
        current = current_all.filter(pl.col(APPLICATION_DATE) == day) if current_all is not None else pl.DataFrame()
        if batch_too_small(current.height, config.min_batch_rows):
            skipped[day] = f"{current.height} applications, fewer than {config.min_batch_rows}"
            per_day.append({"day": day, "rows": current.height, "drifted": None, "share": None, "status": "too small"})
            continue
        result = detect_drift(reference, current, features, definition.categorical, config.error_share)
        path = result.save_html(folder / f"{day.isoformat()}.html")
        frames.append(
            result.frame().with_columns(
                pl.lit(day, dtype=pl.Date).alias(APPLICATION_DATE),
                pl.lit(result.current_rows, dtype=pl.Int64).alias("current_rows"),
                pl.lit(result.reference_rows, dtype=pl.Int64).alias("reference_rows"),
                pl.lit(str(champion.version)).alias("champion_version"),
                pl.lit(str(path)).alias("report_path"),
            ).select(list(FEATURE_DRIFT_SCHEMA))
        )
        grades[day] = thresholds.grade(result.share, config.warn_share, config.error_share)
        shares[day] = result.share
        per_day.append({"day": day, "rows": current.height, "drifted": result.drifted_count,
                        "share": round(result.share, 4), "status": grades[day]})
        newest = (day, result, path)
    table = pl.concat(frames) if frames else empty
    store.replace_partitions(FEATURE_DRIFT, table, APPLICATION_DATE, days)

    metadata: dict = {
        "dagster/row_count": table.height,
        "champion_version": str(champion.version),
        "reference_rows": reference.height,
        "features": len(features),
        "days_monitored": len(grades),
        "days_too_small": len(skipped),
        "by_day": markdown_table(pl.DataFrame(per_day, infer_schema_length=None), max_rows=40),
    }
    if newest is not None:
        day, result, path = newest
        metadata.update(
            {
                "day": day.isoformat(),
                "share_of_drifted_features": float(result.share),
                "drifted_features": dg.MetadataValue.md(
                    ", ".join(f"`{f}`" for f in result.drifted_features) or "_none_"
                ),
                "methods": dg.MetadataValue.json(result.methods),
                "by_feature": markdown_table(
                    result.frame().select("feature", "method", "score_kind", "score", "threshold", "drifted")
                    .with_columns(pl.col("score").round(4), pl.col("threshold").round(4)),
                    max_rows=40,
                ),
                **_report_link(path),
            }
        )
    yield dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            _graded_check(check, grades, skipped, shares, "share of drifted features", config.warn_share,
                          config.error_share, config.min_batch_rows)
        ],
    )


# ---------------------------------------------------------------------- stability


class StabilityConfig(dg.Config):
    bins: int = 10
    min_batch_rows: int = MIN_BATCH_ROWS
    warn_psi: float = thresholds.PSI_WARN
    error_psi: float = thresholds.PSI_ERROR


@dg.asset(
    group_name=MONITORING_GROUP,
    kinds={"polars", "duckdb"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="warehouse",
    deps=["scored_applications", "application_features", dg.AssetDep("credit_risk_model")],
    check_specs=[
        dg.AssetCheckSpec(
            "check_stability_pd_psi",
            asset="score_stability",
            description=(
                f"PSI of the day's PD distribution against the scoring model's training PDs: WARN at "
                f"{thresholds.PSI_WARN:g}, ERROR at {thresholds.PSI_ERROR:g}; WARN when a day has fewer than "
                f"{MIN_BATCH_ROWS} model-scored applications (not judged)."
            ),
        )
    ],
)
def score_stability(
    context: dg.AssetExecutionContext,
    config: StabilityConfig,
    landing: LandingResource,
    warehouse: WarehouseResource,
    model_registry: ModelRegistryResource,
):
    """Population stability index per application day, 10 bins cut at the reference's
    deciles: of the PD (against the PDs the scoring model gave its own training rows) and of
    each numeric feature (characteristic stability, against the champion's training sample)."""
    check = "check_stability_pd_psi"
    days = partition_days(context)
    store = warehouse.get()
    definition = feature_definition(landing.contract().applications)
    numeric = [f for f in definition.features if f not in definition.categorical and not f.endswith(MISSING_SUFFIX)]
    empty = pl.DataFrame(schema=STABILITY_SCHEMA)
    with tempfile.TemporaryDirectory(prefix="aios-reference-") as tmp:
        refs = _References(model_registry, Path(tmp))
        champion, reference, why = _champion_reference(refs)
        if reference is None:
            store.replace_partitions(SCORE_STABILITY, empty, APPLICATION_DATE, days)
            context.log.warning(f"stability not measured: {why}")
            yield dg.MaterializeResult(metadata={"skipped": why, "days": len(days)},
                                       check_results=[_skip_result(check, why)])
            return
        numeric = [f for f in numeric if f in reference.columns]
        features_all = _rows_of_days(store, "application_features", days)
        scored_all = _rows_of_days(
            store, "scored_applications", days, f"{APPLICATION_ID}, {APPLICATION_DATE}, pd, model_version, decision_source"
        )
        frames, per_day, grades, values, skipped = [], [], {}, {}, {}
        for day in days:
            day_features = features_all.filter(pl.col(APPLICATION_DATE) == day) if features_all is not None else None
            if day_features is not None and not batch_too_small(day_features.height, config.min_batch_rows):
                frames.append(
                    stability_table(reference, day_features, numeric, config.bins).with_columns(
                        pl.lit(day, dtype=pl.Date).alias(APPLICATION_DATE),
                        pl.lit(FEATURE).alias("kind"),
                        pl.lit(str(champion.version)).alias("model_version"),
                    ).select(list(STABILITY_SCHEMA))
                )
            scored = (
                scored_all.filter((pl.col(APPLICATION_DATE) == day) & pl.col("model_version").is_not_null())
                if scored_all is not None else pl.DataFrame(schema={"model_version": pl.String, "pd": pl.Float64})
            )
            entry = {"day": day, "scored_rows": scored.height, "model_version": None, "pd_psi": None, "band": "not judged"}
            if batch_too_small(scored.height, config.min_batch_rows):
                skipped[day] = f"{scored.height} model-scored applications, fewer than {config.min_batch_rows}"
            else:
                version = Counter(scored["model_version"].to_list()).most_common(1)[0][0]
                own = scored.filter(pl.col("model_version") == version)
                model_reference = refs.of(version)
                if model_reference is None or "pd" not in model_reference.columns:
                    skipped[day] = f"model v{version} has no reference PDs"
                    entry["band"] = skipped[day]
                else:
                    value = psi(model_reference["pd"], own["pd"], config.bins)
                    grades[day] = thresholds.grade(value, config.warn_psi, config.error_psi)
                    values[day] = value
                    frames.append(
                        pl.DataFrame(
                            [{APPLICATION_DATE: day, "variable": PD_VARIABLE, "kind": SCORE, "psi": value,
                              "band": thresholds.psi_band(value), "current_rows": own.height,
                              "reference_rows": model_reference.height, "model_version": version}],
                            schema=STABILITY_SCHEMA,
                        )
                    )
                    entry.update(model_version=version, pd_psi=round(value, 4), band=thresholds.psi_band(value))
            per_day.append(entry)
    table = pl.concat(frames) if frames else empty
    store.replace_partitions(SCORE_STABILITY, table, APPLICATION_DATE, days)

    metadata: dict = {
        "dagster/row_count": table.height,
        "champion_version": str(champion.version),
        "bins": config.bins,
        "by_day": markdown_table(pl.DataFrame(per_day, infer_schema_length=None), max_rows=40),
    }
    if values:
        newest_day = max(values)
        metadata.update({"day": newest_day.isoformat(), "pd_psi": float(values[newest_day]),
                         "pd_band": thresholds.psi_band(values[newest_day])})
    features_only = table.filter(pl.col("kind") == FEATURE)
    if not features_only.is_empty():
        newest_features = features_only.filter(pl.col(APPLICATION_DATE) == features_only[APPLICATION_DATE].max())
        metadata["characteristic_stability"] = markdown_table(
            newest_features.sort("psi", descending=True, nulls_last=True)
            .select("variable", pl.col("psi").round(4), "band", "current_rows"), max_rows=30
        )
    yield dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            _graded_check(check, grades, skipped, values, "PSI of the PD", config.warn_psi, config.error_psi,
                          config.min_batch_rows)
        ],
    )


# ---------------------------------------------------------------------- performance


class PerformanceConfig(dg.Config):
    vintage: str = "week"  # or "day"
    min_vintage_rows: int = MIN_VINTAGE_ROWS
    min_vintage_defaults: int = MIN_VINTAGE_DEFAULTS
    warn_auc_decay: float = thresholds.AUC_DECAY_WARN
    error_auc_decay: float = thresholds.AUC_DECAY_ERROR


@dg.asset(
    group_name=MONITORING_GROUP,
    kinds={"polars", "duckdb"},
    pool="warehouse",
    deps=["scored_applications", "raw_loan_outcomes", dg.AssetDep("credit_risk_model")],
    check_specs=[
        dg.AssetCheckSpec(
            "check_performance_auc_decay",
            asset="model_performance",
            description=(
                "The champion's out-of-time AUC minus the AUC of its newest matured production vintage: WARN at "
                f"{thresholds.AUC_DECAY_WARN:g}, ERROR at {thresholds.AUC_DECAY_ERROR:g}."
            ),
        )
    ],
)
def model_performance(
    context: dg.AssetExecutionContext,
    config: PerformanceConfig,
    landing: LandingResource,
    warehouse: WarehouseResource,
    model_registry: ModelRegistryResource,
):
    """AUC, KS, Brier and calibration per application vintage and scoring model, as the
    outcomes mature, set against each version's out-of-time figures from the registry."""
    from aios_pipelines.modeling.registry import RegistryError

    store = warehouse.get()
    outcome_spec = landing.contract().outcomes
    scored = (
        store.query(f"select {APPLICATION_ID}, {APPLICATION_DATE}, pd, model_version from scored_applications "
                    "where model_version is not null")
        if store.table_exists("scored_applications") else
        pl.DataFrame(schema={APPLICATION_ID: pl.String, APPLICATION_DATE: pl.Date, "pd": pl.Float64, "model_version": pl.String})
    )
    outcomes = (
        store.read_table("raw_loan_outcomes").select(
            pl.col(outcome_spec.id_column.name).cast(pl.String).alias(APPLICATION_ID),
            pl.col(outcome_spec.target_column.name).alias("defaulted"),
        )
        if store.table_exists("raw_loan_outcomes") else pl.DataFrame(schema={APPLICATION_ID: pl.String, "defaulted": pl.Int64})
    )
    registry = model_registry.get()
    validation: dict[str, ValidationFigures] = {}
    for version in scored["model_version"].unique().to_list():
        try:
            info = registry.get_version(int(version))
            validation[version] = ValidationFigures.from_registry(info.metrics, info.tags)
        except (RegistryError, ValueError):
            context.log.warning(f"model version {version} is not in the registry: no validation figures for it")
    performance = vintage_performance(
        scored, outcomes, validation, vintage=config.vintage,
        min_rows=config.min_vintage_rows, min_defaults=config.min_vintage_defaults,
    )
    store.replace_table(MODEL_PERFORMANCE, performance if performance.height else pl.DataFrame(schema=PERFORMANCE_SCHEMA))

    champion = registry.champion()
    evidence = decay_evidence(performance, str(champion.version)) if champion else performance.clear()
    metadata: dict = {
        "dagster/row_count": performance.height,
        "vintage": config.vintage,
        "matured_applications": int(performance["matured"].sum()) if performance.height else 0,
        "by_vintage": markdown_table(
            performance.sort("vintage_start", descending=True).select(
                "vintage", "model_version", "phase", "matured", "defaults",
                pl.col("auc").round(4), pl.col("validation_auc").round(4), pl.col("auc_decay").round(4),
                pl.col("ks").round(4), pl.col("calibration_gap").round(4), "enough_data",
            ),
            max_rows=30,
        ),
    }
    check = "check_performance_auc_decay"
    if champion is None or evidence.is_empty():
        why = ("no champion" if champion is None else
               f"no matured production vintage of champion v{champion.version} with at least "
               f"{config.min_vintage_rows} outcomes and {config.min_vintage_defaults} defaults yet")
        result = dg.AssetCheckResult(
            check_name=check, passed=True, severity=dg.AssetCheckSeverity.WARN,
            description=f"nothing to judge: {why}", metadata={"note": why},
        )
    else:
        newest = evidence.row(-1, named=True)
        decay = float(newest["auc_decay"])
        grade = thresholds.grade(decay, config.warn_auc_decay, config.error_auc_decay)
        metadata.update({"champion_vintage": newest["vintage"], "champion_vintage_auc": float(newest["auc"]),
                         "champion_auc_decay": decay})
        result = dg.AssetCheckResult(
            check_name=check,
            passed=grade == thresholds.OK,
            severity=dg.AssetCheckSeverity.ERROR if grade == thresholds.ERROR else dg.AssetCheckSeverity.WARN,
            description=(f"vintage {newest['vintage']}: AUC {newest['auc']:.4f} vs out-of-time "
                         f"{newest['validation_auc']:.4f} (decay {decay:.4f})"),
            metadata={
                "champion_version": str(champion.version),
                "vintage": newest["vintage"],
                "auc": float(newest["auc"]),
                "validation_auc": float(newest["validation_auc"]),
                "auc_decay": decay,
                "matured": int(newest["matured"]),
                "defaults": int(newest["defaults"]),
                "warn_threshold": config.warn_auc_decay,
                "error_threshold": config.error_auc_decay,
            },
        )
    yield dg.MaterializeResult(metadata=metadata, check_results=[result])


# ---------------------------------------------------------------------- risk report


@dg.asset(
    group_name=MONITORING_GROUP,
    kinds={"html", "matplotlib"},
    deps=[feature_drift_report, score_stability, model_performance],
)
def risk_report(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    model_registry: ModelRegistryResource,
    reports: ReportsResource,
):
    """One offline HTML page for the risk team: drift, stability, performance by vintage,
    and override rate and time to decision when the analytics tables exist."""
    from aios_pipelines.monitoring.risk_report import RiskReportInputs, relative_link, render_risk_report, write_report
    from aios_pipelines.monitoring.triggers import load_trigger_config

    store = warehouse.get()
    folder = reports.folder()
    trigger_config = load_trigger_config()
    drift = drift_status(drift_by_day(store))
    links = (
        store.query(f"select {APPLICATION_DATE} as day, min(report_path) as path from {FEATURE_DRIFT} group by 1")
        if store.table_exists(FEATURE_DRIFT) else pl.DataFrame(schema={"day": pl.Date, "path": pl.String})
    )
    link_of = {d: relative_link(Path(p), folder) for d, p in links.iter_rows() if p}
    drift = drift.with_columns(
        pl.col("day").map_elements(lambda d: link_of.get(d), return_dtype=pl.String).alias("report")
    )
    performance = store.read_table(MODEL_PERFORMANCE) if store.table_exists(MODEL_PERFORMANCE) else pl.DataFrame(schema=PERFORMANCE_SCHEMA)

    sections: dict[str, str] = {}
    override_rates = review_times = None
    override_note = review_note = ""
    if store.table_exists(OVERRIDE_RATES):
        try:
            override_rates = override_rate_by_day(store.read_table(OVERRIDE_RATES))
        except AnalyticsTableError as exc:
            override_note = str(exc)
    else:
        override_note = "the override_rates table does not exist yet (dbt builds it from human decisions)"
    if store.table_exists(TIME_TO_DECISION):
        try:
            review_times = review_hours_by_day(store.read_table(TIME_TO_DECISION))
        except AnalyticsTableError as exc:
            review_note = str(exc)
    else:
        review_note = "the time_to_decision table does not exist yet (dbt builds it from the review store)"
    sections["override_rate"] = "included" if override_rates is not None else f"skipped: {override_note}"
    sections["time_to_decision"] = "included" if review_times is not None else f"skipped: {review_note}"

    champion = model_registry.get().champion()
    champion_text = (f"credit_risk_model v{champion.version} (registered {champion.created_at:%Y-%m-%d})"
                     if champion else "none yet")
    html = render_risk_report(
        RiskReportInputs(
            generated_at=datetime.now(timezone.utc),
            champion=champion_text,
            drift=drift,
            stability=stability_by_day(store),
            performance=performance,
            override_rates=override_rates,
            override_note=override_note,
            review_times=review_times,
            review_note=review_note,
            override_high=trigger_config.override_rate_high,
            override_low=trigger_config.override_rate_low,
        )
    )
    path = write_report(html, folder / RISK_REPORT_FILE)
    red = drift.filter(pl.col("status") == thresholds.ERROR)["day"].to_list()
    return dg.MaterializeResult(
        metadata={
            **_report_link(path),
            "champion": champion_text,
            "days_monitored": drift.height,
            "red_drift_days": day_ranges(red),
            "vintages": performance.height,
            "sections": dg.MetadataValue.json(sections),
            "bytes": path.stat().st_size,
        }
    )


monitor_applications = dg.define_asset_job(
    "monitor_applications",
    selection=dg.AssetSelection.assets(feature_drift_report, score_stability, model_performance, risk_report),
    partitions_def=daily_partitions,
    executor_def=dg.in_process_executor,
    description="Drift and stability of the days in range against the champion, performance by vintage, risk report.",
)
