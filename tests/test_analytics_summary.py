"""The decision-flow lines `aios demo` ends with, read from a tiny hand-made warehouse whose
mart rows are those the dbt project builds from tests/test_dbt_analytics.py's fixture (nine
reviewer verdicts: two low-side and one high-side override, two blind; six decided cases)."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from aios_pipelines.analytics.summary import decision_flow_summary
from aios_pipelines.storage.warehouse import Warehouse

D1, D2, D4 = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 5)


def funnel() -> pl.DataFrame:
    return pl.DataFrame({
        "application_date": [D1, D2], "applications": [6, 6], "auto_approved": [2, 0], "auto_declined": [2, 0],
        "referred_to_review": [2, 6], "reviewed": [2, 3], "pending": [0, 3], "approved": [3, 2], "declined": [3, 1],
    })


def overrides(blind: bool = True) -> pl.DataFrame:
    columns = ["reviewer", "verdicts", "overrides", "low_side_overrides", "high_side_overrides",
               "blind_verdicts", "blind_agreements", "shown_verdicts", "shown_agreements"]
    rows = [("alice", 4, 1, 0, 1, 1, 0, 3, 3), ("bob", 3, 2, 2, 0, 1, 1, 2, 0), ("carol", 2, 0, 0, 0, 0, 0, 2, 2)]
    if not blind:
        rows = [(r[0], *r[1:5], 0, 0, r[1], r[1] - r[2]) for r in rows]
    return pl.DataFrame(rows, schema=columns, orient="row")


def time_to_decision() -> pl.DataFrame:
    return pl.DataFrame({
        "decision_date": [D1, D2, D2, D4], "queue": ["standard", "standard", "four_eyes", "four_eyes"],
        "decided_cases": [2, 2, 1, 1], "sla_breaches": [0, 0, 0, 1],
    })


def decisions() -> pl.DataFrame:
    # six cases decided by people (1, 2, 6, 10, 12, 48 hours), one still pending, two automatic
    return pl.DataFrame({
        "application_id": [f"A{i}" for i in range(9)],
        "decided_by_type": ["human"] * 6 + [None, "automation", "automation"],
        "hours_to_decision": [2.0, 6.0, 1.0, 12.0, 48.0, 10.0, None, None, None],
    }, schema_overrides={"decided_by_type": pl.String})


@pytest.fixture()
def warehouse(tmp_path) -> Warehouse:
    return Warehouse(tmp_path / "aios.duckdb")


def build(warehouse: Warehouse, **tables: pl.DataFrame) -> None:
    for name, frame in tables.items():
        warehouse.replace_table(name, frame)


def test_funnel_overrides_and_time_to_decision_from_the_marts(warehouse):
    build(warehouse, approval_funnel=funnel(), override_rates=overrides(), time_to_decision=time_to_decision(),
          fct_application_decisions=decisions())
    lines = decision_flow_summary(warehouse).splitlines()
    assert lines == [
        "  approval funnel: 12 applications -> 2 auto-approved, 2 auto-declined, 8 referred (5 reviewed, "
        "3 pending) -> 5 approved, 4 declined (approval rate 55.6%)",
        "  overrides: 3 of 9 reviewer verdicts went against the model (33.3%): low-side 22.2% (2 approved a "
        "recommended decline), high-side 11.1% (1 declined a recommended approval); agreement with the model "
        "50.0% blind (2 verdicts) vs 71.4% shown",
        # p50 of 1, 2, 6, 10, 12, 48 is 8; p90 interpolates 12 .. 48 half-way: 30
        "  time to decision: 6 referred cases decided, p50 8.0 h, p90 30.0 h; SLA breached on 1 (16.7%)",
    ]


def test_no_blind_reviews_means_no_blind_comparison(warehouse):
    build(warehouse, override_rates=overrides(blind=False))
    (line,) = decision_flow_summary(warehouse).splitlines()
    assert line.startswith("  overrides: 3 of 9 reviewer verdicts") and "blind" not in line


def test_nothing_decided_yet_gives_only_the_funnel(warehouse):
    build(warehouse, approval_funnel=funnel(), override_rates=overrides().clear(),
          time_to_decision=time_to_decision().clear(), fct_application_decisions=decisions().clear())
    (line,) = decision_flow_summary(warehouse).splitlines()
    assert line.startswith("  approval funnel: 12 applications")


def test_without_the_marts_there_is_nothing_to_say(warehouse):
    assert decision_flow_summary(warehouse) == ""  # no warehouse file yet
    build(warehouse, raw_applications=pl.DataFrame({"application_id": ["A1"]}))
    assert decision_flow_summary(warehouse) == ""  # ingested, analytics not built
