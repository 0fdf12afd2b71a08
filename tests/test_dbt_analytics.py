"""The dbt project and the predictive analytics, materialized against a small hand-made
warehouse: twelve applications over two days, every route through the policy, and human
decisions that override the model both ways, review blind, ask for information and sign off
in pairs. Every expected number below is worked out by hand from these rows.

The dbt manifest is prepared once per session (as ``dagster-dbt project prepare-and-package``
does), the dbt assets are materialized once per module, and the other tests read the result.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import dagster as dg
import polars as pl
import pytest
from pathlib import Path

from aios_pipelines.analytics.review_tables import (
    HUMAN_DECISIONS_SCHEMA,
    REVIEW_CASES_SCHEMA,
    REVIEW_EVENTS_SCHEMA,
)
from aios_pipelines.ingestion.validation import loaded_schema
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH, AiosPaths
from aios_pipelines.storage.warehouse import Warehouse

DAY1, DAY2 = date(2026, 3, 2), date(2026, 3, 3)  # a Monday and a Tuesday
MODEL = "3"
MARTS = (
    "fct_application_decisions",
    "fct_review_decisions",
    "override_rates",
    "time_to_decision",
    "approval_funnel",
    "override_outcomes",
    "portfolio_performance",
)
PYTHON_TABLES = ("review_workload_forecast", "expected_loss", "override_propensity")


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute)


# ---------------------------------------------------------------------------- fixture rows
# id, day, amount, channel, pd, band, action, policy rule, four eyes
APPLICATIONS = [
    ("A01", DAY1, 10_000.0, "web", 0.01, "A", "auto_approve", "auto_approve", False),
    ("A02", DAY1, 20_000.0, "mobile", 0.03, "B", "auto_approve", "auto_approve", False),
    ("A03", DAY1, 15_000.0, "broker", 0.50, "E", "auto_decline", "auto_decline", False),
    ("A04", DAY1, 5_000.0, "branch", 0.08, "C", "auto_decline", "hard_rule:min_income", False),
    ("A05", DAY1, 30_000.0, "web", 0.06, "C", "review", "review:grey_zone", False),
    ("A06", DAY1, 12_000.0, "broker", 0.18, "D", "review", "review:grey_zone", False),
    ("A07", DAY2, 8_000.0, "web", 0.05, "C", "review", "review:grey_zone", False),
    ("A08", DAY2, 60_000.0, "branch", 0.03, "B", "review", "review:amount_over_limit", True),
    ("A09", DAY2, 80_000.0, "broker", 0.15, "D", "review", "review:grey_zone", True),
    ("A10", DAY2, 9_000.0, "mobile", 0.19, "D", "review", "review:grey_zone", False),
    ("A11", DAY2, 55_000.0, "web", 0.04, "B", "review", "review:amount_over_limit", True),
    ("A12", DAY2, 7_000.0, "mobile", 0.12, "D", "review", "fallback:review", False),  # not published yet
]
# application, defaulted: the loans whose 60-day window has passed
OUTCOMES = {"A01": 0, "A02": 0, "A03": 1, "A04": 0, "A05": 0, "A06": 1, "A07": 0, "A08": 0}
# case, application, lane, blind, recommendation, created, due hours, status, final, decided, expert queue
CASES = [
    ("C05", "A05", "standard", False, "approve", at(DAY1, 9), 48, "decided", "approve", at(DAY1, 11), "general"),
    ("C06", "A06", "standard", False, "decline", at(DAY1, 9), 48, "decided", "approve", at(DAY1, 15), "business_lending"),
    ("C07", "A07", "standard", True, "approve", at(DAY2, 8), 48, "decided", "decline", at(DAY2, 9), "general"),
    ("C08", "A08", "four_eyes", False, "approve", at(DAY2, 8), 24, "decided", "approve", at(DAY2, 20), "large_loans"),
    ("C09", "A09", "four_eyes", False, "decline", at(DAY2, 8), 24, "decided", "decline", at(DAY2 + timedelta(2), 8), "large_loans"),
    ("C10", "A10", "standard", True, "decline", at(DAY2, 8), 48, "decided", "decline", at(DAY2, 18), "general"),
    ("C11", "A11", "four_eyes", False, "approve", at(DAY2, 8), 24, "awaiting_second_review", None, None, "large_loans"),
]
# decision, case, reviewer, role, decision, stage, override direction, claimed, decided
DECISIONS = [
    ("D01", "C05", "alice", "underwriter", "approve", "final", None, at(DAY1, 10), at(DAY1, 11)),
    ("D02", "C06", "bob", "underwriter", "approve", "final", "low_side", at(DAY1, 14), at(DAY1, 15)),
    ("D03", "C07", "alice", "underwriter", "decline", "final", "high_side", at(DAY2, 8, 30), at(DAY2, 9)),
    ("D04", "C11", "alice", "underwriter", "approve", "first", None, at(DAY2, 9), at(DAY2, 9, 30)),
    ("D05", "C10", "bob", "underwriter", "request_info", "final", None, at(DAY2, 9, 30), at(DAY2, 10)),
    ("D06", "C08", "alice", "underwriter", "approve", "first", None, at(DAY2, 11), at(DAY2, 12)),
    ("D07", "C10", "bob", "underwriter", "decline", "final", None, at(DAY2, 17), at(DAY2, 18)),
    ("D08", "C08", "carol", "senior_underwriter", "approve", "second", None, at(DAY2, 19), at(DAY2, 20)),
    ("D09", "C09", "bob", "underwriter", "approve", "first", "low_side", at(DAY2 + timedelta(1), 9), at(DAY2 + timedelta(1), 10)),
    ("D10", "C09", "carol", "senior_underwriter", "decline", "second", None, at(DAY2 + timedelta(2), 7), at(DAY2 + timedelta(2), 8)),
]


def raw_applications_frame(contract) -> pl.DataFrame:
    rows = []
    for i, (app, day, amount, channel, *_rest) in enumerate(APPLICATIONS):
        rows.append({
            "application_id": app, "application_ts": at(day, 8, i), "annual_income": 52_000.0,
            "employment_length_years": 4.0, "existing_debt": 3_000.0, "debt_to_income": 0.2,
            "credit_history_months": 96, "delinquencies_2y": 0, "bureau_score": 690, "credit_utilisation": 0.3,
            "loan_amount": amount, "purpose": "car", "term_months": 36, "region": "north", "channel": channel,
            "landing_date": day, "source_file": f"applications/{day}/applications.csv", "source_row": i + 2,
        })
    return pl.DataFrame(rows, schema=loaded_schema(contract.applications))


def scored_applications_frame() -> pl.DataFrame:
    rows = []
    for app, day, _amount, _channel, pd_value, band, action, rule, four_eyes in APPLICATIONS:
        fallback = rule.startswith("fallback")
        rows.append({
            "application_id": app, "application_date": day, "pd": pd_value, "score_band": band,
            "model_version": None if fallback else MODEL, "decision_source": "fallback_rules" if fallback else "model",
            "confidence": 0.8, "reason_features": [], "reason_codes": ["R01"] if action != "auto_approve" else [],
            "reason_texts": [], "quality_flags": [], "action": action, "policy_rule": rule,
            "policy_hard_rule": rule.split(":")[1] if rule.startswith("hard_rule") else None,
            "requires_four_eyes": four_eyes, "review_priority": "normal" if action == "review" else None,
            "review_due_hours": (24 if four_eyes else 48) if action == "review" else None,
            "policy_version": "2026.11.1", "policy_fingerprint": "f" * 64, "automation_paused": False,
            "fallback_reason": "no champion" if fallback else None,
        })
    return pl.DataFrame(rows, schema_overrides={
        "reason_features": pl.List(pl.String), "reason_codes": pl.List(pl.String), "reason_texts": pl.List(pl.String),
        "quality_flags": pl.List(pl.String), "review_due_hours": pl.Int64, "model_version": pl.String,
        "review_priority": pl.String, "policy_hard_rule": pl.String, "fallback_reason": pl.String,
    })


def outcomes_frame(contract) -> pl.DataFrame:
    days = {app: day for app, day, *_ in APPLICATIONS}
    rows = [
        {"application_id": app, "outcome_date": days[app] + timedelta(60), "defaulted": value,
         "landing_date": days[app] + timedelta(60), "source_file": "outcomes.csv", "source_row": i + 2}
        for i, (app, value) in enumerate(OUTCOMES.items())
    ]
    return pl.DataFrame(rows, schema=loaded_schema(contract.outcomes))


def review_frames() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    scored = {a[0]: a for a in APPLICATIONS}
    cases = pl.DataFrame([
        {"case_id": c, "application_id": app, "application_date": scored[app][1], "source": "batch", "queue": queue,
         "expert_queue": expert_queue, "priority": "normal", "created_at": created, "due_at": created + timedelta(hours=due), "requires_four_eyes": scored[app][8],
         "blind_review": blind, "model_recommendation": rec, "pd": scored[app][4], "score_band": scored[app][5],
         "model_version": MODEL, "policy_version": "2026.11.1", "policy_rule": scored[app][7], "status": status,
         "final_decision": final, "decided_at": decided}
        for c, app, queue, blind, rec, created, due, status, final, decided, expert_queue in CASES
    ], schema=REVIEW_CASES_SCHEMA)
    by_case = {c[0]: c for c in CASES}
    decisions = pl.DataFrame([
        {"decision_id": d, "case_id": c, "application_id": by_case[c][1], "reviewer": who, "reviewer_role": role,
         "decision": verdict, "reason_codes": [], "note": "", "stage": stage, "model_recommendation": by_case[c][4],
         "is_override": verdict != "request_info" and verdict != by_case[c][4], "override_direction": direction,
         "blind_review": by_case[c][3], "claimed_at": claimed, "decided_at": decided, "case_created_at": by_case[c][5],
         "copied_cursor": i + 1}
        for i, (d, c, who, role, verdict, stage, direction, claimed, decided) in enumerate(DECISIONS)
    ], schema=HUMAN_DECISIONS_SCHEMA)
    events = [("created", "pipeline", c[5], c[0]) for c in CASES]
    events += [("claimed", d[2], d[7], d[1]) for d in DECISIONS]
    events += [("decided", d[2], d[8], d[1]) for d in DECISIONS]
    events.sort(key=lambda e: (e[2], e[3]))
    review_events = pl.DataFrame(
        [{"event_id": i + 1, "case_id": case, "event_type": kind, "actor": actor, "at": when, "details": "{}"}
         for i, (kind, actor, when, case) in enumerate(events)],
        schema=REVIEW_EVENTS_SCHEMA,
    )
    return cases, decisions, review_events


def write_fixture_warehouse(warehouse: Warehouse, contract, with_review_tables: bool = True) -> None:
    warehouse.replace_table("raw_applications", raw_applications_frame(contract))
    warehouse.replace_table("raw_loan_outcomes", outcomes_frame(contract))
    warehouse.replace_table("scored_applications", scored_applications_frame())
    if with_review_tables:
        cases, decisions, events = review_frames()
        warehouse.replace_table("review_cases", cases)
        warehouse.replace_table("human_decisions", decisions)
        warehouse.replace_table("review_events", events)


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def dbt_manifest():
    """The dbt manifest, prepared at most once per session with dagster-dbt's preparer (what
    `dagster-dbt project prepare-and-package` runs): skipped when `make test` has just
    prepared it, redone when a model or test changed since."""
    from aios_pipelines.defs.analytics.dbt_project import dbt_project, ensure_manifest, manifest_is_stale

    path = ensure_manifest(dbt_project)
    assert not manifest_is_stale(dbt_project)
    return path


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def analytics_resources(paths: AiosPaths) -> dict:
    from aios_pipelines.defs.analytics.resources import warehouse_dbt_resource
    from aios_pipelines.defs.resources import LandingResource, WarehouseResource

    warehouse = WarehouseResource(path=str(paths.warehouse), lock_timeout_seconds=10)
    return {
        "warehouse": warehouse,
        "landing": LandingResource(landing_dir=str(paths.landing), contract_path=str(DEFAULT_CONTRACT_PATH)),
        "dbt": warehouse_dbt_resource(warehouse),
    }


def analytics_assets() -> list:
    from aios_pipelines.defs.analytics.assets import expected_loss, override_propensity, review_workload_forecast
    from aios_pipelines.defs.analytics.dbt_assets import analytics_dbt_models

    return [analytics_dbt_models, review_workload_forecast, expected_loss, override_propensity]


@pytest.fixture(scope="module")
def built(dbt_manifest, instance, tmp_path_factory, contract):
    """The fixture warehouse after one materialization of the dbt assets and the forecasts."""
    paths = AiosPaths(tmp_path_factory.mktemp("analytics") / "home").ensure()
    warehouse = Warehouse(paths.warehouse)
    write_fixture_warehouse(warehouse, contract)
    result = dg.materialize(analytics_assets(), resources=analytics_resources(paths), instance=instance)
    return paths, warehouse, result


def table(warehouse: Warehouse, name: str, order: str = "1") -> pl.DataFrame:
    return warehouse.query(f"select * from {name} order by {order}")


# ---------------------------------------------------------------------------- dbt assets
def test_marts_are_built_and_every_dbt_test_passes_as_an_asset_check(built):
    _paths, warehouse, result = built
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert set(MARTS) | set(PYTHON_TABLES) <= materialized
    evaluations = result.get_asset_check_evaluations()
    failing = [(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed]
    assert failing == []
    checked = {e.asset_key.to_user_string() for e in evaluations}
    # model tests, and source tests as checks on the Python assets that write the sources
    assert {"fct_application_decisions", "override_rates", "approval_funnel", "stg_human_decisions"} <= checked
    assert {"scored_applications", "review_cases", "human_decisions", "review_events", "raw_applications"} <= checked
    assert len(evaluations) > 80
    # the singular test that spans two models is a check on the model its meta names
    assert any(e.check_name == "assert_funnel_reconciles_with_scored_applications" for e in evaluations)
    # dbt's unit tests ran in the same build (a failing one would have failed it)
    from aios_pipelines.defs.analytics.dbt_project import dbt_target_dir

    (run_results,) = dbt_target_dir().glob(
        f"analytics_dbt_models-{result.run_id[:7]}-*/run_results.json")
    unit_tests = {r["unique_id"].split(".")[-1]: r["status"] for r in json.loads(run_results.read_text())["results"]
                  if r["unique_id"].startswith("unit_test.")}
    assert unit_tests == {"approval_funnel_counts_each_route_once": "pass",
                          "override_rates_splits_low_and_high_side_and_blind_agreement": "pass"}
    # row counts are attached once dbt has released the warehouse
    funnel = next(m for m in result.get_asset_materialization_events()
                  if m.asset_key == dg.AssetKey("approval_funnel")).materialization
    assert funnel.metadata["dagster/row_count"].value == 2
    for mart in MARTS:
        assert warehouse.scalar(f"select count(*) from {mart}") > 0, mart


def test_one_decision_record_per_application(built):
    _paths, warehouse, _result = built
    fct = table(warehouse, "fct_application_decisions", "application_id")
    assert fct["application_id"].to_list() == [a[0] for a in APPLICATIONS]
    rows = {r["application_id"]: r for r in fct.iter_rows(named=True)}

    assert rows["A01"]["decided_by"] == "automation" and rows["A01"]["final_decision"] == "approve"
    assert rows["A04"]["decided_by"] == "automation" and rows["A04"]["policy_rule"] == "hard_rule:min_income"
    assert rows["A04"]["is_override"] is False and rows["A04"]["sla_status"] is None
    # a low-side override (approved what the model would decline) and a high-side one
    assert (rows["A06"]["is_override"], rows["A06"]["override_direction"], rows["A06"]["decided_by"]) == (True, "low_side", "bob")
    assert (rows["A07"]["is_override"], rows["A07"]["override_direction"], rows["A07"]["blind_review"]) == (True, "high_side", True)
    assert rows["A05"]["is_override"] is False and rows["A05"]["hours_to_decision"] == 2.0
    # four eyes: agreed, disagreed (the senior's decline closes it), awaiting the second reviewer
    assert (rows["A08"]["four_eyes_outcome"], rows["A08"]["decided_by"]) == ("agreed", "carol")
    assert (rows["A09"]["four_eyes_outcome"], rows["A09"]["final_decision"], rows["A09"]["is_override"]) == ("disagreed", "decline", False)
    assert rows["A09"]["sla_status"] == "breached" and rows["A09"]["hours_to_decision"] == 48.0
    assert (rows["A11"]["four_eyes_outcome"], rows["A11"]["decision_status"], rows["A11"]["sla_status"]) == (
        "awaiting_second", "pending", "overdue")
    assert rows["A11"]["decided_by"] is None and rows["A11"]["decided_at"] is None
    # a request for information keeps the case open; the later decline closes it
    assert (rows["A10"]["info_requests"], rows["A10"]["final_decision"], rows["A10"]["hours_to_decision"]) == (1, "decline", 10.0)
    # referred by the fallback scorecard, not published yet
    assert rows["A12"]["case_id"] is None and rows["A12"]["decision_status"] == "pending"
    assert rows["A12"]["model_version_label"] == "fallback_rules" and rows["A12"]["model_version"] is None
    assert rows["A06"]["defaulted"] == 1 and rows["A10"]["has_matured_outcome"] is False
    assert rows["A08"]["loan_amount"] == 60_000.0 and rows["A08"]["channel"] == "branch"


def test_override_rates_split_low_and_high_side_and_blind_agreement(built):
    _paths, warehouse, _result = built
    by_reviewer = warehouse.query(
        "select reviewer, sum(verdicts) as verdicts, sum(overrides) as overrides, "
        "sum(low_side_overrides) as low_side, sum(high_side_overrides) as high_side, "
        "sum(blind_verdicts) as blind, sum(blind_agreements) as blind_agree, "
        "sum(shown_verdicts) as shown, sum(shown_agreements) as shown_agree "
        "from override_rates group by reviewer order by reviewer"
    )
    assert by_reviewer.rows() == [
        # alice: agree, blind high-side override, agree (first of four eyes), agree (first of four eyes)
        ("alice", 4, 1, 0, 1, 1, 0, 3, 3),
        # bob: low-side override, blind agreement after a request for information, low-side override
        ("bob", 3, 2, 2, 0, 1, 1, 2, 0),
        # carol: two second-stage agreements
        ("carol", 2, 0, 0, 0, 0, 0, 2, 2),
    ]
    totals = warehouse.query(
        "select sum(verdicts), sum(low_side_overrides), sum(high_side_overrides), "
        "sum(blind_agreements) / sum(blind_verdicts), sum(shown_agreements) / sum(shown_verdicts) from override_rates"
    ).row(0)
    assert totals[:3] == (9, 2, 1)
    assert totals[3] == pytest.approx(1 / 2) and totals[4] == pytest.approx(5 / 7)
    cell = warehouse.query(
        "select verdicts, override_rate, low_side_override_rate, high_side_override_rate from override_rates "
        "where decision_date = ? and reviewer = 'bob'", [DAY1]
    ).row(0)
    assert cell == (1, 1.0, 1.0, 0.0)


def test_override_counts_reconcile_with_the_decisions_that_differ_from_the_recommendation(built):
    """Counted from the copied source tables, independently of the staging logic."""
    _paths, warehouse, _result = built
    differ = warehouse.query(
        "select count(*) filter (where d.decision <> c.model_recommendation), "
        "count(*) filter (where d.decision = 'approve' and c.model_recommendation = 'decline'), "
        "count(*) filter (where d.decision = 'decline' and c.model_recommendation = 'approve'), count(*) "
        "from human_decisions d join review_cases c using (case_id) where d.decision in ('approve', 'decline')"
    ).row(0)
    marts = warehouse.query(
        "select sum(overrides), sum(low_side_overrides), sum(high_side_overrides), sum(verdicts) from override_rates"
    ).row(0)
    assert differ == marts and differ[0] > 0
    fct = warehouse.query(
        "select count(*), count(distinct application_id) from fct_application_decisions"
    ).row(0)
    sources = warehouse.query("select count(distinct application_id) from scored_applications").row(0)[0]
    assert fct == (sources, sources)


def test_time_to_decision_percentiles_by_day_and_expert_queue(built):
    _paths, warehouse, _result = built
    ttd = table(warehouse, "time_to_decision", "decision_date, expert_queue")
    got = {(r["decision_date"], r["expert_queue"]): r for r in ttd.iter_rows(named=True)}
    # by the policy's expert queue, not the stage lane: C05 and C06 share the standard lane
    assert sorted(got) == [(DAY1, "business_lending"), (DAY1, "general"), (DAY2, "general"), (DAY2, "large_loans"),
                           (DAY2 + timedelta(2), "large_loans")]
    assert "queue" not in ttd.columns
    assert (got[(DAY1, "general")]["decided_cases"], got[(DAY1, "general")]["p50_hours"]) == (1, 2.0)
    business = got[(DAY1, "business_lending")]  # the low-side override, 6 h
    assert (business["decided_cases"], business["p50_hours"], business["p99_hours"]) == (1, 6.0, 6.0)
    tuesday = got[(DAY2, "general")]  # 1 h (blind high-side override) and 10 h (after a request for info)
    assert (tuesday["p50_hours"], tuesday["p90_hours"], tuesday["p99_hours"]) == pytest.approx((5.5, 9.1, 9.91))
    assert tuesday["cases_with_info_requests"] == 1 and tuesday["four_eyes_cases"] == 0
    agreed = got[(DAY2, "large_loans")]  # the agreed four-eyes case, 12 h
    assert (agreed["p50_hours"], agreed["four_eyes_cases"], agreed["sla_breaches"]) == (12.0, 1, 0)
    late = got[(DAY2 + timedelta(2), "large_loans")]  # the disagreed four-eyes case: 48 h against 24 h due
    assert (late["p50_hours"], late["sla_breaches"], late["sla_breach_rate"]) == (48.0, 1, 1.0)
    assert ttd["sla_breaches"].sum() == 1
    # the queue reaches the decision records too
    fct = dict(warehouse.query("select application_id, expert_queue from fct_application_decisions").rows())
    assert (fct["A06"], fct["A08"], fct["A01"], fct["A12"]) == ("business_lending", "large_loans", None, None)
    assert set(warehouse.query("select distinct expert_queue from fct_review_decisions")["expert_queue"]) == {
        "general", "business_lending", "large_loans"}


def test_approval_funnel_reconciles_with_applications(built):
    _paths, warehouse, _result = built
    funnel = table(warehouse, "approval_funnel", "application_date")
    columns = ["application_date", "applications", "auto_approved", "auto_declined", "referred_to_review",
               "reviewed", "review_approved", "review_declined", "pending", "approved", "declined"]
    assert funnel.select(columns).rows() == [
        (DAY1, 6, 2, 2, 2, 2, 2, 0, 0, 4, 2),
        (DAY2, 6, 0, 0, 6, 4, 1, 3, 2, 1, 3),
    ]
    assert funnel["approval_rate"].to_list() == pytest.approx([4 / 6, 1 / 4])
    scored = warehouse.query("select application_date, count(*) as n from scored_applications group by 1 order by 1")
    assert funnel["applications"].to_list() == scored["n"].to_list()
    for row in funnel.iter_rows(named=True):
        assert row["applications"] == row["auto_approved"] + row["auto_declined"] + row["referred_to_review"]
        assert row["referred_to_review"] == row["review_approved"] + row["review_declined"] + row["pending"]


def test_relationships_hold_between_marts_and_sources(built):
    _paths, warehouse, _result = built
    orphans = {
        "decision without application": "select count(*) from fct_review_decisions anti join fct_application_decisions using (application_id)",
        "application without score": "select count(*) from fct_application_decisions anti join scored_applications using (application_id)",
        "case without case row": "select count(*) from fct_application_decisions f where case_id is not null "
                                 "and case_id not in (select case_id from review_cases)",
        "scored application missing": "select count(*) from scored_applications anti join fct_application_decisions using (application_id)",
    }
    for what, sql in orphans.items():
        assert warehouse.scalar(sql) == 0, what
    assert warehouse.scalar("select count(*) from fct_review_decisions") == len(DECISIONS)


def test_override_outcomes_and_portfolio_performance(built):
    _paths, warehouse, _result = built
    outcomes = table(warehouse, "override_outcomes", "score_band, review_outcome")
    cells = {(r["score_band"], r["review_outcome"]): r for r in outcomes.iter_rows(named=True)}
    assert set(cells) == {("B", "agreed_approve"), ("C", "agreed_approve"), ("C", "high_side_override"),
                          ("D", "agreed_decline"), ("D", "low_side_override")}
    low = cells[("D", "low_side_override")]  # A06, approved against the model, defaulted
    assert (low["cases"], low["matured_outcomes"], low["defaults"], low["default_rate"]) == (1, 1, 1, 1.0)
    assert low["default_rate_minus_pd"] == pytest.approx(1.0 - 0.18)
    pending_outcomes = cells[("D", "agreed_decline")]  # A09 and A10: not matured yet
    assert (pending_outcomes["cases"], pending_outcomes["matured_outcomes"], pending_outcomes["default_rate"]) == (2, 0, None)

    book = table(warehouse, "portfolio_performance", "score_band")
    assert book.select("vintage", "score_band", "approved_loans", "approved_by_automation", "approved_by_people",
                       "approved_amount", "matured_loans", "defaults").rows() == [
        (date(2026, 3, 1), "A", 1, 1, 0, 10_000.0, 1, 0),
        (date(2026, 3, 1), "B", 2, 1, 1, 80_000.0, 2, 0),
        (date(2026, 3, 1), "C", 1, 0, 1, 30_000.0, 1, 0),
        (date(2026, 3, 1), "D", 1, 0, 1, 12_000.0, 1, 1),
    ]


def test_predictive_assets_write_their_tables(built):
    _paths, warehouse, result = built
    forecast = table(warehouse, "review_workload_forecast", "forecast_date")
    assert forecast.height == 14 and forecast["forecast_date"][0] == DAY2 + timedelta(1)
    # two days of history: Monday 2 referrals, Tuesday 6, other weekdays their mean
    expected = {"Mon": 2.0, "Tue": 6.0}
    assert [expected.get(d, 4.0) for d in forecast["day_of_week"]] == forecast["expected_reviews"].to_list()

    loss = table(warehouse, "expected_loss").row(0, named=True)
    # approved: A01 .01x10k, A02 .03x20k, A05 .06x30k, A06 .18x12k, A08 .03x60k; all matured; A06 defaulted
    assert loss["expected_loss"] == pytest.approx(0.45 * (100 + 600 + 1800 + 2160 + 1800))
    assert loss["realised_loss"] == pytest.approx(0.45 * 12_000)
    assert (loss["approved_loans"], loss["matured_loans"], loss["exposure"]) == (5, 5, 132_000.0)

    propensity = table(warehouse, "override_propensity", "dimension, segment")
    bob = propensity.filter((pl.col("dimension") == "reviewer") & (pl.col("segment") == "bob")).row(0, named=True)
    assert (bob["verdicts"], bob["overrides"], bob["low_side_overrides"]) == (3, 2, 2)
    assert bob["odds_ratio"] > 1.0  # bob overrides more than the others, the model says so too
    meta = next(m for m in result.get_asset_materialization_events()
                if m.asset_key == dg.AssetKey("override_propensity")).materialization.metadata
    assert meta["verdicts"].value == 9 and meta["overrides"].value == 3


def test_build_analytics_job_rerun_changes_nothing(built, instance, monkeypatch):
    """The job of the code location, run again on the same warehouse: every table is the same."""
    paths, warehouse, _result = built
    before = {t: table(warehouse, t, "all") for t in MARTS + PYTHON_TABLES}
    monkeypatch.setenv("AIOS_HOME", str(paths.home))
    from aios_pipelines.definitions import defs

    job = defs().resolve_job_def("build_analytics")
    result = job.execute_in_process(instance=instance)
    assert result.success
    source_checks = {e.asset_key.to_user_string() for e in result.get_asset_check_evaluations()}
    assert {"human_decisions", "scored_applications"} <= source_checks
    assert all(e.passed for e in result.get_asset_check_evaluations())
    after = {t: table(warehouse, t, "all") for t in before}
    for name in before:
        assert after[name].equals(before[name]), name
    # the first build on this warehouse left its parse for the next: dbt did not parse the
    # whole project again (the prepared parse was made for another warehouse path)
    logs = [e.user_message for e in instance.all_logs(result.run_id) if "dbt build:" in (e.user_message or "")]
    dbt_log = Path(logs[-1].rsplit("; log ", 1)[1])
    text = dbt_log.read_text(encoding="utf-8")
    assert "Unable to do partial parsing" not in text and "14 models" in text


def test_a_builds_parse_is_left_for_the_next_and_a_read_only_project_is_no_error(tmp_path):
    from aios_pipelines.defs.analytics.dbt_assets import _hand_on_partial_parse

    run_target = tmp_path / "target" / "analytics_dbt_models-abc-123"
    run_target.mkdir(parents=True)
    assert _hand_on_partial_parse(run_target) is False  # dbt failed before parsing: nothing to hand on
    (run_target / "partial_parse.msgpack").write_bytes(b"new parse")
    (tmp_path / "target" / "partial_parse.msgpack").write_bytes(b"prepared parse")
    assert _hand_on_partial_parse(run_target) is True
    assert (tmp_path / "target" / "partial_parse.msgpack").read_bytes() == b"new parse"
    assert sorted(p.name for p in (tmp_path / "target").iterdir()) == ["analytics_dbt_models-abc-123", "partial_parse.msgpack"]

    blocked = tmp_path / "blocked" / "analytics_dbt_models-def-456"
    blocked.mkdir(parents=True)
    (blocked / "partial_parse.msgpack").write_bytes(b"new parse")
    (tmp_path / "blocked" / "partial_parse.msgpack").mkdir()  # cannot be replaced by a file
    assert _hand_on_partial_parse(blocked) is False
    assert sorted(p.name for p in (tmp_path / "blocked").iterdir()) == ["analytics_dbt_models-def-456", "partial_parse.msgpack"]


def test_a_fresh_install_without_review_tables_still_builds(dbt_manifest, instance, tmp_path, contract):
    """Before the review plane has copied anything the review tables are created empty (with
    the review plane's schemas) and every referred application is pending."""
    paths = AiosPaths(tmp_path / "fresh").ensure()
    warehouse = Warehouse(paths.warehouse)
    write_fixture_warehouse(warehouse, contract, with_review_tables=False)
    from aios_pipelines.defs.analytics.dbt_assets import analytics_dbt_models

    result = dg.materialize(
        [analytics_dbt_models], resources=analytics_resources(paths), instance=instance,
        selection=["stg_scored_applications", "stg_applications", "stg_loan_outcomes", "stg_review_cases",
                   "stg_human_decisions", "stg_review_events", "int_review_cases", "fct_application_decisions",
                   "approval_funnel"],
    )
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    assert warehouse.scalar("select count(*) from human_decisions") == 0
    # and so are the online copies: the marts hold the batch decisions only
    assert warehouse.scalar("select count(*) from online_decisions") == 0
    assert warehouse.scalar("select count(*) from fct_application_decisions where origin = 'online'") == 0
    funnel = table(warehouse, "approval_funnel", "application_date")
    assert funnel.select("referred_to_review", "pending", "reviewed").rows() == [(2, 2, 0), (6, 6, 0)]


def test_a_broken_review_copy_fails_its_checks(dbt_manifest, instance, tmp_path, contract):
    """A decision that contradicts its own override flag fails the staging test as an asset check."""
    paths = AiosPaths(tmp_path / "broken").ensure()
    warehouse = Warehouse(paths.warehouse)
    write_fixture_warehouse(warehouse, contract)
    _cases, decisions, _events = review_frames()
    warehouse.replace_table(
        "human_decisions",
        decisions.with_columns(
            pl.when(pl.col("decision_id") == "D02").then(False).otherwise(pl.col("is_override")).alias("is_override")
        ),
    )
    from aios_pipelines.defs.analytics.dbt_assets import analytics_dbt_models

    result = dg.materialize(
        [analytics_dbt_models], resources=analytics_resources(paths), instance=instance,
        selection=["stg_human_decisions"], raise_on_error=False,
    )
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    # the flag disagrees with the verdict, and with the direction the copy still records
    assert {e.asset_key.to_user_string() for e in failed} == {"stg_human_decisions"}
    assert len(failed) == 2 and all(e.severity == dg.AssetCheckSeverity.ERROR for e in failed)
    assert {e.check_name for e in failed} == {
        "stg_human_decisions_override_flag_matches_verdict", "stg_human_decisions_override_direction_matches_is_override"}
    assert not result.success  # an ERROR test fails the dbt run, and with it the step


# ---------------------------------------------------------------------------- online decisions
# Decisions the review service made online (POST /api/decisions), copied into the warehouse by
# the online_decisions asset. id, day, amount, channel, pd, band, action, rule, case
ONLINE = [
    ("O01", DAY2, 25_000.0, "web", 0.02, "A", "auto_approve", "auto_approve", None),
    ("O02", DAY2, 18_000.0, "mobile", 0.09, "C", "review", "review:grey_zone", "C20"),
    # also in the batch (scored there as an auto-decline at PD 0.50): the batch row is kept
    ("A03", DAY1, 99_999.0, "web", 0.02, "A", "auto_approve", "auto_approve", None),
]
ONLINE_MODEL = "4"


def online_frames(contract) -> tuple[pl.DataFrame, pl.DataFrame]:
    from aios_pipelines.analytics.review_tables import ONLINE_DECISIONS_SCHEMA

    decisions, applications = [], []
    for seq, (app, day, amount, channel, pd_value, band, action, rule, case) in enumerate(ONLINE, start=1):
        decisions.append({
            "application_id": app, "application_date": day, "pd": pd_value, "score_band": band,
            "model_version": ONLINE_MODEL, "decision_source": "model", "confidence": 0.7, "reason_features": [],
            "reason_codes": ["R02"] if action == "review" else [], "reason_texts": [], "quality_flags": [],
            "action": action, "policy_rule": rule, "policy_hard_rule": None, "requires_four_eyes": False,
            "review_priority": "normal" if action == "review" else None,
            "review_due_hours": 48 if action == "review" else None, "policy_version": "2026.11.1",
            "policy_fingerprint": "f" * 64, "automation_paused": False, "fallback_reason": None, "origin": "online",
            "decision_id": f"online-{seq}", "decided_at": at(day, 12), "requested_by": "lender-portal",
            "case_id": case, "expert_queue": "general" if case else None, "copied_cursor": seq,
        })
        applications.append({
            "application_id": app, "application_ts": at(day, 11, seq), "annual_income": 48_000.0,
            "employment_length_years": 2.0, "existing_debt": 1_000.0, "debt_to_income": 0.1,
            "credit_history_months": 60, "delinquencies_2y": 0, "bureau_score": 710, "credit_utilisation": 0.2,
            "loan_amount": amount, "purpose": "car", "term_months": 36, "region": "south", "channel": channel,
            "landing_date": day, "source_file": "api:online", "source_row": seq,
        })
    return (pl.DataFrame(decisions, schema=ONLINE_DECISIONS_SCHEMA),
            pl.DataFrame(applications, schema=loaded_schema(contract.applications)))


def write_online_rows(warehouse: Warehouse, contract) -> None:
    """The online copies, and the review case an online referral opened (source api) with the
    underwriter's low-side override on it."""
    decisions, applications = online_frames(contract)
    warehouse.replace_table("online_decisions", decisions)
    warehouse.replace_table("online_applications", applications)
    cases, human, events = review_frames()
    created, decided = at(DAY2, 12), at(DAY2, 14)
    case = {"case_id": "C20", "application_id": "O02", "application_date": DAY2, "source": "api", "queue": "standard",
            "expert_queue": "general", "priority": "normal", "created_at": created, "due_at": created + timedelta(hours=48),
            "requires_four_eyes": False, "blind_review": False, "model_recommendation": "decline", "pd": 0.09,
            "score_band": "C", "model_version": ONLINE_MODEL, "policy_version": "2026.11.1",
            "policy_rule": "review:grey_zone", "status": "decided", "final_decision": "approve", "decided_at": decided}
    decision = {"decision_id": "D20", "case_id": "C20", "application_id": "O02", "reviewer": "dave",
                "reviewer_role": "underwriter", "decision": "approve", "reason_codes": ["H03"], "note": "",
                "stage": "final", "model_recommendation": "decline", "is_override": True,
                "override_direction": "low_side", "blind_review": False, "claimed_at": at(DAY2, 13),
                "decided_at": decided, "case_created_at": created, "copied_cursor": human.height + 1}
    next_event = events.height + 1
    extra_events = [("created", "api:lender-portal", created), ("claimed", "dave", at(DAY2, 13)), ("decided", "dave", decided)]
    warehouse.replace_table("review_cases", pl.concat([cases, pl.DataFrame([case], schema=REVIEW_CASES_SCHEMA)]))
    warehouse.replace_table("human_decisions", pl.concat([human, pl.DataFrame([decision], schema=HUMAN_DECISIONS_SCHEMA)]))
    warehouse.replace_table("review_events", pl.concat([events, pl.DataFrame(
        [{"event_id": next_event + i, "case_id": "C20", "event_type": kind, "actor": actor, "at": when, "details": "{}"}
         for i, (kind, actor, when) in enumerate(extra_events)], schema=REVIEW_EVENTS_SCHEMA)]))


def test_online_copies_feed_the_staging_models_in_the_asset_graph(dbt_manifest, tmp_path, monkeypatch):
    """The dbt sources map to the Python assets that copy the online decisions, so the lineage
    shows them upstream of staging; their source tests run in build_analytics, not in the copy job."""
    monkeypatch.setenv("AIOS_HOME", str(tmp_path / "home"))
    from aios_pipelines.definitions import defs

    definitions = defs()
    graph = definitions.resolve_asset_graph()
    assert graph.get(dg.AssetKey("stg_scored_applications")).parent_keys == {
        dg.AssetKey("scored_applications"), dg.AssetKey("online_decisions")}
    assert graph.get(dg.AssetKey("stg_applications")).parent_keys == {
        dg.AssetKey("raw_applications"), dg.AssetKey("online_applications")}
    for key in ("online_decisions", "online_applications"):
        node = graph.get(dg.AssetKey(key))
        assert node.is_materializable and node.group_name == "review", key  # the copy asset, not a stub
    copy_checks = definitions.resolve_job_def("copy_online_decisions").asset_layer.asset_graph.asset_check_keys
    assert {k.name for k in copy_checks} == {"check_consistency_online_decisions_copied"}
    analytics_checks = definitions.resolve_job_def("build_analytics").asset_layer.asset_graph.asset_check_keys
    assert {k.name for k in analytics_checks if k.asset_key == dg.AssetKey("online_decisions")} >= {
        "source_unique_warehouse_online_decisions_application_id", "source_online_decisions_referral_has_a_case"}


def test_online_decisions_flow_into_the_marts_once(dbt_manifest, instance, tmp_path, contract):
    paths = AiosPaths(tmp_path / "online").ensure()
    warehouse = Warehouse(paths.warehouse)
    write_fixture_warehouse(warehouse, contract)
    write_online_rows(warehouse, contract)
    from aios_pipelines.defs.analytics.dbt_assets import analytics_dbt_models

    result = dg.materialize([analytics_dbt_models], resources=analytics_resources(paths), instance=instance)
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert [(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed] == []
    assert {"online_decisions", "online_applications"} <= {e.asset_key.to_user_string() for e in evaluations}

    fct = table(warehouse, "fct_application_decisions", "application_id")
    ids = fct["application_id"].to_list()
    assert len(ids) == len(APPLICATIONS) + 2 == len(set(ids))
    assert ids.count("O01") == ids.count("O02") == ids.count("A03") == 1
    rows = {r["application_id"]: r for r in fct.iter_rows(named=True)}
    # an online auto-approval, with the online decision's own values
    auto = rows["O01"]
    assert (auto["origin"], auto["pd"], auto["score_band"], auto["model_version"], auto["routed_action"]) == (
        "online", 0.02, "A", ONLINE_MODEL, "auto_approve")
    assert (auto["final_decision"], auto["decided_by"], auto["application_date"]) == ("approve", "automation", DAY2)
    assert (auto["loan_amount"], auto["channel"]) == (25_000.0, "web")  # from online_applications
    # an online referral, decided by a person on the review case the service opened
    referral = rows["O02"]
    assert (referral["origin"], referral["routed_action"], referral["case_id"], referral["expert_queue"]) == (
        "online", "review", "C20", "general")
    assert (referral["final_decision"], referral["decided_by"], referral["override_direction"]) == (
        "approve", "dave", "low_side")
    assert referral["hours_to_decision"] == 2.0 and referral["loan_amount"] == 18_000.0
    # in both: once, as the batch scored it, with the landing file's application
    both = rows["A03"]
    assert (both["origin"], both["pd"], both["model_version"], both["routed_action"], both["final_decision"]) == (
        "batch", 0.50, MODEL, "auto_decline", "decline")
    assert both["loan_amount"] == 15_000.0
    assert warehouse.scalar("select count(*) from stg_applications where application_id = 'A03'") == 1
    assert warehouse.scalar("select origin from stg_applications where application_id = 'A03'") == "batch"

    # every mart counts them
    funnel = table(warehouse, "approval_funnel", "application_date")
    assert funnel.select("application_date", "applications", "online_applications", "auto_approved",
                         "referred_to_review", "review_approved", "pending").rows() == [
        (DAY1, 6, 0, 2, 2, 2, 0),
        (DAY2, 8, 2, 1, 7, 2, 2),
    ]
    dave = warehouse.query("select sum(verdicts), sum(low_side_overrides) from override_rates where reviewer = 'dave'")
    assert dave.row(0) == (1, 1)
    general = warehouse.query("select decided_cases from time_to_decision where decision_date = ? "
                              "and expert_queue = 'general'", [DAY2])
    assert general.item() == 3  # C07, C10 and the online referral's C20
    book = warehouse.query("select approved_loans, approved_amount from portfolio_performance where score_band = 'A'")
    assert book.row(0) == (2, 35_000.0)  # A01 (batch) and O01 (online)


def test_only_dbt_warnings_and_errors_reach_the_run_log():
    """Every line sent to the run's log is an event-log write; dbt.log keeps the rest."""
    from aios_pipelines.defs.analytics.dbt_assets import _is_dbt_problem, _LogLines

    emitted: list[str] = []
    stream = _LogLines(emitted.append, keep=_is_dbt_problem)
    stream.write("10:00:01  1 of 3 OK created sql table model main.fct_application_decisions [OK in 0.2s]\n"
                 "10:00:02  2 of 3 FAIL 1 accepted_values_fct_application_decisions_action [FAIL 1 in 0.1s]\n10:0")
    stream.write("0:03  [WARNING]: Deprecated functionality\n10:00:04  Done. PASS=1 WARN=0 ERROR=1 SKIP=0 TOTAL=3\n")
    assert emitted == ["10:00:02  2 of 3 FAIL 1 accepted_values_fct_application_decisions_action [FAIL 1 in 0.1s]",
                       "10:00:03  [WARNING]: Deprecated functionality"]
