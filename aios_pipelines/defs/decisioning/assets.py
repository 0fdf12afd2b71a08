"""``scored_applications``: every application of a day scored by the champion, explained
where the policy needs it, and routed by the decision policy."""

from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import polars as pl

from aios_pipelines.defs.metadata import markdown_table, partition_days
from aios_pipelines.defs.partitions import daily_partitions
from aios_pipelines.defs.selection import own_checks_only
from aios_pipelines.defs.resources import LandingResource, ModelRegistryResource, PolicyResource, WarehouseResource
from aios_pipelines.features.build import APPLICATION_DATE, APPLICATION_ID

DECISIONING_GROUP = "decisioning"


def _load_champion(model_registry: ModelRegistryResource, log):
    """The champion, or None and why: scoring never blocks on a broken registry."""
    from aios_pipelines.modeling.registry import RegistryError
    from aios_pipelines.modeling.scoring import ScoringModel
    from aios_pipelines.modeling.training import FeatureSpec

    try:
        registry = model_registry.get()
        champion = registry.champion()
        if champion is None:
            return None, "no model holds the champion alias yet"
        booster, card = registry.load_booster("champion")
        ranges = {k: (float(v[0]), float(v[1])) for k, v in (card.get("feature_ranges") or {}).items()}
        return ScoringModel(booster, FeatureSpec.from_dict(card["feature_spec"]), str(champion.version), ranges), None
    except (RegistryError, KeyError, ValueError, OSError) as exc:
        log.warning(f"champion model unavailable, scoring with the fallback rules: {exc}")
        return None, str(exc)


@dg.asset(
    group_name=DECISIONING_GROUP,
    kinds={"lightgbm", "polars", "duckdb"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="warehouse",
    deps=["application_features", dg.AssetDep("credit_risk_model")],
    check_specs=[
        dg.AssetCheckSpec(
            "check_availability_champion_model",
            asset="scored_applications",
            description="WARN when the champion could not be used and the fallback scorecard decided.",
        ),
        dg.AssetCheckSpec(
            "check_validity_reason_codes",
            asset="scored_applications",
            blocking=True,
            description="Every decline carries 1 to max_reasons principal reasons; no row carries more.",
        ),
        dg.AssetCheckSpec(
            "check_consistency_one_score_per_application",
            asset="scored_applications",
            blocking=True,
            description="One scored row for every application with features.",
        ),
    ],
)
def scored_applications(
    context: dg.AssetExecutionContext,
    landing: LandingResource,
    warehouse: WarehouseResource,
    model_registry: ModelRegistryResource,
    policy: PolicyResource,
):
    """PD, score band, model version, top reasons (LightGBM contributions), confidence,
    data-quality flags, policy version, rule and routed action for each application."""
    from aios_pipelines.modeling.scoring import FALLBACK_SOURCE, score_applications

    contract = landing.contract()
    decision_policy = policy.policy()
    automation = policy.automation_status()
    store = warehouse.get()
    days = partition_days(context)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-champion") as loader:
        # loading the champion is mostly importing LightGBM and MLflow (seconds of Python);
        # reading the day is DuckDB's work outside the GIL: do both at once
        champion = loader.submit(_load_champion, model_registry, context.log)
        features = store.query(
            f"select * from application_features where {APPLICATION_DATE} in (select unnest(?::date[]))", [days]
        )
        id_column = contract.applications.id_column.name
        applications = store.query(
            "select * from raw_applications where landing_date in (select unnest(?::date[]))", [days]
        ).rename({id_column: APPLICATION_ID} if id_column != APPLICATION_ID else {})
        model, why_not = champion.result()
    outcome = score_applications(
        features,
        applications,
        decision_policy,
        landing.reason_catalog(),
        model,
        automation_paused=automation.paused,
        fallback_reason=why_not,
    )
    scored = outcome.scored
    store.replace_partitions("scored_applications", scored, APPLICATION_DATE, days)

    mix = scored.group_by("action").agg(pl.len().alias("applications")).sort("action")
    counts = dict(mix.iter_rows())
    max_reasons = decision_policy.reasons.max_reasons
    reasons_per_row = scored["reason_codes"].list.len()
    declines_without_reason = scored.filter((pl.col("action") == "auto_decline") & (reasons_per_row == 0)).height
    too_many = int((reasons_per_row > max_reasons).sum())
    fallback = outcome.decision_source == FALLBACK_SOURCE
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": scored.height,
            "model_version": outcome.model_version or "none (fallback rules)",
            "decision_source": outcome.decision_source,
            "policy_version": decision_policy.version,
            "automation_paused": automation.paused,
            "automation_switch": dg.MetadataValue.md(
                f"paused by {automation.changed_by}: {automation.reason}" if automation.paused else "automation on"
            ),
            "auto_approve": counts.get("auto_approve", 0),
            "review": counts.get("review", 0),
            "auto_decline": counts.get("auto_decline", 0),
            "fallback_rows": scored.height if fallback else 0,
            "mean_pd": float(scored["pd"].mean() or 0.0),
            "decision_mix": markdown_table(mix),
            "by_rule": markdown_table(scored.group_by("policy_rule").len("applications").sort("applications", descending=True)),
            "preview": markdown_table(
                scored.select(APPLICATION_ID, "pd", "score_band", "action", "policy_rule", "reason_codes", "confidence").head(8)
            ),
        }
    )
    yield dg.AssetCheckResult(
        check_name="check_availability_champion_model",
        passed=not fallback,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"decision_source": outcome.decision_source, "why": outcome.fallback_reason or ""},
    )
    yield dg.AssetCheckResult(
        check_name="check_validity_reason_codes",
        passed=declines_without_reason == 0 and too_many == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"declines_without_reason": declines_without_reason, "rows_over_max": too_many, "max_reasons": max_reasons},
    )
    ids = scored[APPLICATION_ID]
    yield dg.AssetCheckResult(
        check_name="check_consistency_one_score_per_application",
        passed=scored.height == features.height and ids.n_unique() == ids.len(),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"feature_rows": features.height, "scored_rows": scored.height},
    )


score_applications_job = dg.define_asset_job(
    "score_applications",
    selection=own_checks_only("scored_applications"),
    partitions_def=daily_partitions,
    executor_def=dg.in_process_executor,
    description="Score a day's applications with the champion and route them through the policy.",
)
