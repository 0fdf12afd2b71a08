"""The dbt-build benchmark's warehouse scaler (benchmarks/dbt_build.py): copies of the seed
warehouse keep every id unique, every reference between the source tables inside its copy,
and spread the days; and the run_results summary flags a failing test."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the benchmarks package beside tests/

from benchmarks.dbt_build import (  # noqa: E402
    SEED_DECISIONS,
    SOURCE_TABLES,
    copies_for,
    scale_warehouse,
    summarise_run_results,
    write_seed,
)

COPIES = 25


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    work = tmp_path_factory.mktemp("dbt_build")
    seed_counts = write_seed(str(work / "seed.duckdb"))
    result = scale_warehouse(str(work / "seed.duckdb"), str(work / "warehouse.duckdb"), COPIES)
    con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
    yield seed_counts, result, con
    con.close()


def test_every_source_table_is_copied_with_unique_ids(scaled):
    seed_counts, result, con = scaled
    assert set(result["rows_by_table"]) == set(SOURCE_TABLES)
    for table in SOURCE_TABLES:
        assert result["rows_by_table"][table] == seed_counts[table] * COPIES, table
    unique_keys = {"raw_applications": "application_id", "scored_applications": "application_id",
                   "raw_loan_outcomes": "application_id", "review_cases": "case_id",
                   "human_decisions": "decision_id", "review_events": "event_id",
                   "online_decisions": "decision_id", "online_applications": "source_row"}
    for table, key in unique_keys.items():
        total, distinct = con.execute(f"select count(*), count(distinct {key}) from {table}").fetchone()
        assert total == distinct == seed_counts[table] * COPIES, (table, key)
    cursors = con.execute("select count(distinct copied_cursor), count(*) from human_decisions").fetchone()
    assert cursors[0] == cursors[1]
    # N decisions: the batch and online applications, the one decided in both counted once
    decided = con.execute(
        "select count(*) from (select application_id from scored_applications union "
        "select application_id from online_decisions)").fetchone()[0]
    assert decided == SEED_DECISIONS * COPIES


def test_references_stay_inside_each_copy(scaled):
    _seed, _result, con = scaled
    orphans = {
        "case -> scored or online application": "select count(*) from review_cases c where c.application_id not in "
        "(select application_id from scored_applications union select application_id from online_decisions)",
        "decision -> case": "select count(*) from human_decisions d left join review_cases c using (case_id) "
        "where c.case_id is null",
        "decision -> its case's application": "select count(*) from human_decisions d join review_cases c "
        "using (case_id) where d.application_id <> c.application_id",
        "event -> case": "select count(*) from review_events e left join review_cases c using (case_id) "
        "where c.case_id is null",
        "outcome -> application": "select count(*) from raw_loan_outcomes o left join raw_applications a "
        "using (application_id) where a.application_id is null",
        "online referral -> case": "select count(*) from online_decisions o where o.action = 'review' and "
        "o.case_id not in (select case_id from review_cases)",
        "online decision -> its application row": "select count(*) from online_decisions o left join "
        "online_applications a on a.source_row = o.copied_cursor and a.application_id = o.application_id "
        "where a.application_id is null",
    }
    for name, sql in orphans.items():
        assert con.execute(sql).fetchone()[0] == 0, name


def test_dates_are_shifted_per_copy_and_stay_consistent(scaled):
    _seed, _result, con = scaled
    days = con.execute("select count(distinct application_date) from scored_applications").fetchone()[0]
    assert days == 2 + COPIES - 1  # the seed's two consecutive days, moved by 0..24 days
    # a copy's timestamps move together: a case is decided after it is created, a decision
    # is made after its claim, and an application's case is dated on the application's day
    bad = con.execute(
        "select count(*) from review_cases c join scored_applications s using (application_id) "
        "where c.decided_at < c.created_at or c.application_date <> s.application_date").fetchone()[0]
    assert bad == 0
    assert con.execute("select count(*) from human_decisions where decided_at < claimed_at").fetchone()[0] == 0


def test_copies_round_up_to_whole_seeds():
    assert copies_for(SEED_DECISIONS) == 1
    assert copies_for(1_000_000) == 71_429
    assert copies_for(1) == 1


def test_run_results_summary_flags_a_failing_test():
    results = {"results": [
        {"unique_id": "model.aios_analytics.fct_application_decisions", "status": "success", "execution_time": 3.0},
        {"unique_id": "test.aios_analytics.unique_fct_x.abc", "status": "pass", "execution_time": 1.0},
        {"unique_id": "test.aios_analytics.relationships_fct_y.def", "status": "fail", "execution_time": 2.0},
    ]}
    summary = summarise_run_results(results)
    assert summary["all_tests_passed"] is False
    assert summary["failing"] == ["test.aios_analytics.relationships_fct_y.def: fail"]
    assert summary["slowest_nodes"][0] == {"node": "fct_application_decisions", "seconds": 3.0}
    assert summary["execution_seconds_by_type"] == {"model": 3.0, "test": 3.0}
    results["results"][2]["status"] = "pass"
    assert summarise_run_results(results)["all_tests_passed"] is True
