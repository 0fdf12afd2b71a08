"""The pipeline's doors into the review store: publish routed cases, copy decisions out (the
human ones, and the online decisions the service made), and sweep SLAs and idle claims."""

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import dagster as dg
import polars as pl

from aios_pipelines.defs.metadata import markdown_table, partition_days
from aios_pipelines.defs.partitions import daily_partitions
from aios_pipelines.defs.selection import own_checks_only
from aios_pipelines.defs.resources import LandingResource, PolicyResource, ReviewStoreResource, WarehouseResource
from aios_pipelines.features.build import APPLICATION_DATE, APPLICATION_ID

REVIEW_GROUP = "review"


@dg.asset(
    group_name=REVIEW_GROUP,
    kinds={"sqlite"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["scored_applications"],
    check_specs=[
        dg.AssetCheckSpec(
            "check_completeness_every_referral_has_a_case",
            asset="review_queue",
            blocking=True,
            description="Every application the policy routed to review has exactly one case in the review store.",
        )
    ],
)
def review_queue(
    context: dg.AssetExecutionContext,
    landing: LandingResource,
    warehouse: WarehouseResource,
    policy: PolicyResource,
    review_store: ReviewStoreResource,
):
    """Cases in the review store for the applications routed to human review (published once:
    re-running a day publishes nothing twice)."""
    from aios_pipelines.review.publish import publish_scored_in_batches

    store = review_store.get()
    days = partition_days(context)
    wh = warehouse.get()
    # one order on either engine: the audit log lists a day's cases the same way every time
    scored = wh.query(
        f"select * from scored_applications where action = 'review' and {APPLICATION_DATE} in (select unnest(?::date[])) "
        f"order by {APPLICATION_DATE}, {APPLICATION_ID}",
        [days],
    )
    id_column = landing.contract().applications.id_column.name
    applications = wh.query(
        f'select * from raw_applications where "{id_column}" in (select unnest(?::varchar[]))',
        [scored[APPLICATION_ID].to_list()],
    )
    summary = publish_scored_in_batches(
        store, scored, applications, id_column=id_column, policy=policy.policy(),
        actor=f"dagster:{context.run_id[:8]}",
    )
    del scored, applications
    present = len(store.applications_with_cases(summary.application_ids))
    counts = store.status_counts()
    yield dg.MaterializeResult(
        metadata={
            "routed_to_review": summary.routed_to_review,
            "newly_published": summary.newly_published,
            "already_in_store": summary.already_in_store,
            "four_eyes_cases": summary.four_eyes_cases,
            "blind_review_cases": summary.blind_review_cases,
            "publish_transactions": summary.batches,
            "store_status_counts": dg.MetadataValue.json(counts),
            "review_store": dg.MetadataValue.text(repr(store)),
        }
    )
    yield dg.AssetCheckResult(
        check_name="check_completeness_every_referral_has_a_case",
        passed=present == summary.routed_to_review,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"referrals": summary.routed_to_review, "cases_found": present},
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "review_cases",
            group_name=REVIEW_GROUP,
            kinds={"duckdb"},
            deps=["review_queue"],
            description="Every review case as it stands in the review store (one row per case).",
        ),
        dg.AssetSpec(
            "human_decisions",
            group_name=REVIEW_GROUP,
            kinds={"duckdb"},
            deps=["review_queue"],
            description="Every human decision, copied incrementally from the review store (one row per decision).",
        ),
        dg.AssetSpec(
            "review_events",
            group_name=REVIEW_GROUP,
            kinds={"duckdb"},
            deps=["review_queue"],
            description="Every event in a case's life: created, claimed, released, decided, escalated...",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "check_consistency_decisions_copied",
            asset="human_decisions",
            blocking=True,
            description="The warehouse holds every decision the review store held when the copy began, each once.",
        ),
        dg.AssetCheckSpec(
            "check_integrity_audit_chain",
            asset="human_decisions",
            description=("The review store's hash-chained audit log verifies from the entry the last copy "
                         "verified (still with the same hash) to the head; audit_checkpoint verifies all of it."),
        ),
    ],
    pool="warehouse",
)
def review_copies(context: dg.AssetExecutionContext, warehouse: WarehouseResource, review_store: ReviewStoreResource,
                  policy: PolicyResource):
    """Copy what humans did into the warehouse, each part incrementally: decisions and events
    by the store's own sequence numbers (a re-run or a crash mid-copy never duplicates), cases
    changed since the last copy by the audit entries that changed them (each with its expert
    queue as the policy in force resolves it; all cases again when the policy changed), and the
    audit chain verified from where the last copy verified it. The copy runs whenever reviewers
    decide, so nothing in it may grow with the store's history; the daily ``audit_checkpoint``
    verifies the whole chain."""
    from aios_pipelines.review.audit import GENESIS_HASH
    from aios_pipelines.review.queues import QueueRules
    from aios_pipelines.review.warehouse_copy import (
        CASE_COPY_COLUMNS,
        COPY_STATE_TABLE,
        EVENT_COPY_COLUMNS,
        cases_table_from_columns,
        copy_state_row,
        decisions_table,
        events_table,
        incremental_cases_from,
    )

    policy_in_force = policy.policy()
    store = review_store.get().use_queues(QueueRules(policy_in_force))
    wh = warehouse.get()
    state = (wh.read_table(COPY_STATE_TABLE).to_dicts() or [None])[0] if wh.table_exists(COPY_STATE_TABLE) else None
    last_good = (int(state["verified_seq"]), str(state["verified_hash"])) if state and state.get("verified_hash") else None
    # from the start on the first copy, or when that entry no longer has the hash verified
    # before (a replaced or restored store; a rewritten chain is audit_checkpoint's to catch)
    verified_from = last_good if last_good and store.audit_entry_hash(last_good[0]) == last_good[1] else (0, GENESIS_HASH)
    # a long stretch is verified in other processes (one per core): start it first and read
    # the cases, decisions and events meanwhile
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-verify") as background:
        verification = None if store.single_connection else background.submit(store.verify_audit_chain_from,
                                                                                 verified_from)
        decision_cursor = wh.scalar("select max(copied_cursor) from human_decisions") if wh.table_exists("human_decisions") else None
        event_cursor = wh.scalar("select max(event_id) from review_events") if wh.table_exists("review_events") else None
        # read before anything else: every case change up to this entry is committed, and the
        # review service keeps working while the copy runs (later changes wait for the next copy)
        head_seq, head_hash = store.audit_head() or (0, GENESIS_HASH)
        in_store = store.last_decision_seq()
        new_decisions = store.decisions_since(int(decision_cursor or 0), limit=1_000_000)
        new_events = store.event_columns(EVENT_COPY_COLUMNS, int(event_cursor or 0), limit=1_000_000)
        claim_events = store.claim_events({d["case_id"] for d in new_decisions}) if new_decisions else []
        cases_from = incremental_cases_from(state, policy_fingerprint=policy_in_force.fingerprint, head_seq=head_seq,
                                            entry_hash_at=store.audit_entry_hash,
                                            cases_table_exists=wh.table_exists("review_cases"))
        if cases_from is None:
            cases = cases_table_from_columns(store.case_columns(CASE_COPY_COLUMNS), queue_of=store.queue_of)
        else:
            changed = store.cases_changed(cases_from, head_seq)
            cases = cases_table_from_columns(store.case_columns(CASE_COPY_COLUMNS, case_ids=changed) if changed else [],
                                             queue_of=store.queue_of)
        decisions = decisions_table(new_decisions, claim_events)
        events = events_table(new_events)
        chain_ok, first_bad, verified_to = (verification.result() if verification is not None
                                            else store.verify_audit_chain_from(verified_from))
    # a broken chain keeps the last good point, so every later copy fails the check again
    verified = verified_to if chain_ok else verified_from
    new_state = copy_state_row({
        "copied_at": datetime.now(timezone.utc).replace(tzinfo=None),
        "cases_audit_seq": head_seq, "cases_audit_hash": head_hash,
        "verified_seq": verified[0], "verified_hash": verified[1],
        "policy_fingerprint": policy_in_force.fingerprint,
    })
    replace = {COPY_STATE_TABLE: new_state}
    upsert = {"human_decisions": (decisions, "decision_id"), "review_events": (events, "event_id")}
    if cases_from is None:
        replace["review_cases"] = cases
    else:
        upsert["review_cases"] = (cases, "case_id")
    wh.sync_tables(replace=replace, upsert=upsert)

    stored = wh.query("select count(*) as n, count(distinct decision_id) as d from human_decisions").row(0)
    copied_up_to = wh.scalar("select coalesce(max(copied_cursor), 0) from human_decisions")
    by_status = wh.query("select status, count(*) as cases from review_cases group by status order by status")
    by_queue = wh.query("select expert_queue, count(*) as cases from review_cases group by expert_queue order by expert_queue")
    overrides = decisions.filter(pl.col("is_override")).height if decisions.height else 0
    yield dg.MaterializeResult(
        asset_key="review_cases",
        metadata={"dagster/row_count": int(by_status["cases"].sum()) if by_status.height else 0,
                  "cases_copied": cases.height,
                  "copied": "every case" if cases_from is None else f"the cases changed after audit entry {cases_from}",
                  "by_status": markdown_table(by_status),
                  "by_expert_queue": markdown_table(by_queue)},
    )
    yield dg.MaterializeResult(
        asset_key="human_decisions",
        metadata={
            "dagster/row_count": stored[0],
            "new_decisions": decisions.height,
            "new_overrides": overrides,
            "copied_up_to_seq": int(copied_up_to),
            "preview": markdown_table(decisions.select("case_id", "reviewer", "decision", "is_override", "decided_at").head(8)),
        },
    )
    yield dg.MaterializeResult(asset_key="review_events", metadata={"new_events": events.height})
    yield dg.AssetCheckResult(
        asset_key="human_decisions",
        check_name="check_consistency_decisions_copied",
        passed=stored[0] == stored[1] and int(copied_up_to) >= in_store,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"rows": stored[0], "distinct_decisions": stored[1], "store_last_seq": in_store,
                  "copied_up_to_seq": int(copied_up_to)},
    )
    yield dg.AssetCheckResult(
        asset_key="human_decisions",
        check_name="check_integrity_audit_chain",
        passed=chain_ok,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"first_bad_seq": first_bad if first_bad is not None else -1,
                  "verified_from_seq": verified_from[0], "verified_to_seq": verified_to[0],
                  "entries_verified": max(0, verified_to[0] - verified_from[0])},
    )


publish_review_cases = dg.define_asset_job(
    "publish_review_cases",
    selection=dg.AssetSelection.assets("review_queue"),
    partitions_def=daily_partitions,
    executor_def=dg.in_process_executor,
    description="Publish the day's referrals into the review store.",
)

copy_review_decisions = dg.define_asset_job(
    "copy_review_decisions",
    selection=own_checks_only("review_cases", "human_decisions", "review_events"),
    executor_def=dg.in_process_executor,
    description="Copy new human decisions, case states and events from the review store into the warehouse.",
)


@dg.op(description="Release claims idle past their queue's limit; escalate undecided cases past their due time; "
                   "retry undelivered webhooks.")
def sweep_review_sla(context: dg.OpExecutionContext, review_store: ReviewStoreResource) -> None:
    from aios_pipelines.review.webhooks import WebhookDispatcher

    store = review_store.get()
    at = datetime.now(timezone.utc)
    released = store.release_idle_claims(at)
    escalated = store.escalate_overdue(at)
    delivered = WebhookDispatcher(store).deliver_pending()
    context.log.info(
        f"released {len(released)} idle claim(s); escalated {len(escalated)} overdue case(s); "
        f"webhooks delivered {sum(delivered.values())} of {len(delivered)} pending"
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "online_decisions",
            group_name=REVIEW_GROUP,
            kinds={"duckdb"},
            description="Every decision the review service made online (POST /api/decisions), one row per "
                        "application, with the columns of scored_applications plus origin = 'online', the decision "
                        "id and time, and the review case of a referral. Copied incrementally.",
        ),
        dg.AssetSpec(
            "online_applications",
            group_name=REVIEW_GROUP,
            kinds={"duckdb"},
            description="The applications decided online, shaped like raw_applications (landing_date = the "
                        "application's date, source_file = 'api:online').",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "check_consistency_online_decisions_copied",
            asset="online_decisions",
            blocking=True,
            description="The warehouse holds every online decision the review store held when the copy began, each once, "
                        "with its application.",
        ),
    ],
    pool="warehouse",
)
def online_decision_copies(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                           review_store: ReviewStoreResource, landing: LandingResource):
    """Copy the online decisions (and their applications) out of the review store, by the store's
    own sequence number: a re-run or a crash mid-copy never duplicates a row."""
    from aios_pipelines.review.warehouse_copy import online_applications_table, online_decisions_table

    store = review_store.get()
    wh = warehouse.get()
    cursor = wh.scalar("select max(copied_cursor) from online_decisions") if wh.table_exists("online_decisions") else None
    in_store = store.last_online_seq()  # before reading: newer decisions wait for the next copy
    new_rows = store.online_decisions_since(int(cursor or 0), limit=10_000_000)
    decisions = online_decisions_table(new_rows)
    applications = online_applications_table(new_rows, landing.contract().applications)
    wh.sync_tables(upsert={"online_decisions": (decisions, "decision_id"),
                           "online_applications": (applications, "source_row")})

    stored = wh.query("select count(*) as n, count(distinct decision_id) as d from online_decisions").row(0)
    with_application = wh.scalar(
        "select count(*) from online_decisions d join online_applications a on a.source_row = d.copied_cursor"
    )
    copied_up_to = int(wh.scalar("select coalesce(max(copied_cursor), 0) from online_decisions"))
    mix = decisions.group_by("action", "decision_source").len("decisions").sort("action", "decision_source")
    yield dg.MaterializeResult(
        asset_key="online_decisions",
        metadata={
            "dagster/row_count": stored[0],
            "new_decisions": decisions.height,
            "copied_up_to_seq": copied_up_to,
            "new_by_action": markdown_table(mix) if decisions.height else "none",
            "preview": markdown_table(decisions.select("application_id", "pd", "action", "policy_rule", "model_version",
                                                       "decision_source", "decided_at").head(8)),
        },
    )
    yield dg.MaterializeResult(asset_key="online_applications", metadata={"new_applications": applications.height})
    yield dg.AssetCheckResult(
        asset_key="online_decisions",
        check_name="check_consistency_online_decisions_copied",
        passed=stored[0] == stored[1] == with_application and copied_up_to >= in_store,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"rows": stored[0], "distinct_decisions": stored[1], "with_application": with_application,
                  "store_last_seq": in_store, "copied_up_to_seq": copied_up_to},
    )


copy_online_decisions = dg.define_asset_job(
    "copy_online_decisions",
    selection=own_checks_only("online_decisions", "online_applications"),
    executor_def=dg.in_process_executor,
    description="Copy new online decisions and their applications from the review store into the warehouse.",
)


@dg.sensor(
    job=copy_online_decisions,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Copies online decisions into the warehouse when the review service has made new ones.",
)
def online_decisions_sensor(context: dg.SensorEvaluationContext, review_store: ReviewStoreResource):
    return _request_when_the_store_moved(context, review_store.get().last_online_seq(),
                                         what="online decisions", trigger="new_online_decisions")


def _request_when_the_store_moved(context: dg.SensorEvaluationContext, last: int, *, what: str, trigger: str):
    """A run request when the review store's sequence for ``what`` has passed the cursor."""
    seen = int(context.cursor or 0)
    if last <= seen:
        return dg.SkipReason(f"no new {what} since seq {seen}")
    context.update_cursor(str(last))
    return dg.RunRequest(run_key=f"{what.replace(' ', '-')}-up-to-{last}", tags={"aios/trigger": trigger})


@dg.job(executor_def=dg.in_process_executor, description="SLA sweep of the review store.")
def sweep_review_slas():
    sweep_review_sla()


review_sla_schedule = dg.ScheduleDefinition(
    name="review_sla_every_15_minutes",
    job=sweep_review_slas,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Releases idle claims, escalates overdue review cases and retries webhook deliveries.",
)


@dg.sensor(
    job=copy_review_decisions,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Copies decisions into the warehouse when reviewers have decided something new.",
)
def review_decisions_sensor(context: dg.SensorEvaluationContext, review_store: ReviewStoreResource):
    return _request_when_the_store_moved(context, review_store.get().last_decision_seq(),
                                         what="decisions", trigger="new_human_decisions")


@dg.asset(
    group_name=REVIEW_GROUP,
    kinds={"duckdb"},
    pool="warehouse",
    deps=["review_queue"],
    check_specs=[
        dg.AssetCheckSpec(
            "check_integrity_audit_chain_against_checkpoints",
            asset="audit_checkpoint",
            description="The audit chain verifies and still holds every earlier checkpoint's head (no truncation, no rewrite).",
        )
    ],
)
def audit_checkpoint(context: dg.AssetExecutionContext, warehouse: WarehouseResource, review_store: ReviewStoreResource):
    """The audit chain's length and head hash, recorded outside the review store (here and in
    the warehouse table ``audit_checkpoints``) so a truncated or rewritten chain is caught."""
    from aios_pipelines.review.checkpoints import Checkpoint, checkpoint_row, verify_audit

    store = review_store.get()
    wh = warehouse.get()
    earlier = (
        [
            Checkpoint(int(seq), str(head), str(at))
            for seq, head, at in wh.query("select head_seq, head_hash, recorded_at from audit_checkpoints").iter_rows()
        ]
        if wh.table_exists("audit_checkpoints")
        else []
    )
    report = verify_audit(store, earlier)
    # a broken chain is recorded (so the evidence is kept) but never as a trusted checkpoint
    row = checkpoint_row(store, datetime.now(timezone.utc).replace(tzinfo=None), report)
    wh.sync_tables(upsert={"audit_checkpoints": (pl.DataFrame([row]).with_columns(pl.col("first_bad_seq").cast(pl.Int64)), "recorded_at")})
    yield dg.MaterializeResult(
        metadata={
            "head_seq": row["head_seq"],
            "head_hash": row["head_hash"],
            "earlier_checkpoints": len(earlier),
            "chain_verified": report.ok,
        }
    )
    yield dg.AssetCheckResult(
        check_name="check_integrity_audit_chain_against_checkpoints",
        passed=report.ok,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in report.problems) or "none"),
                  "first_bad_seq": report.first_bad_seq if report.first_bad_seq is not None else -1},
    )


record_audit_checkpoint = dg.define_asset_job(
    "record_audit_checkpoint",
    selection=dg.AssetSelection.assets("audit_checkpoint"),
    executor_def=dg.in_process_executor,
    description="Record the audit chain's head outside the review store.",
)

daily_audit_checkpoint = dg.ScheduleDefinition(
    name="daily_audit_checkpoint",
    job=record_audit_checkpoint,
    cron_schedule="55 23 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily checkpoint of the review store's audit chain.",
)
