"""What the dbt project reads: the review tables it needs, and the contract's column names."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import yaml

from aios_pipelines.analytics.review_tables import HUMAN_DECISIONS_SCHEMA, REVIEW_CASES_SCHEMA
from aios_pipelines.analytics.sources import contract_dbt_vars, create_missing_review_tables
from aios_pipelines.ingestion.contract import load_contract
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH, PROJECT_ROOT
from aios_pipelines.storage.warehouse import Warehouse


def test_missing_review_tables_are_created_empty_with_the_review_planes_schema(tmp_path: Path):
    warehouse = Warehouse(tmp_path / "aios.duckdb")
    existing = pl.DataFrame(
        {"case_id": ["C1"], "application_id": ["A1"]}
    )  # the review plane already wrote this one: never touched
    warehouse.replace_table("review_cases", existing)
    assert create_missing_review_tables(warehouse) == ["human_decisions", "review_events"]
    assert create_missing_review_tables(warehouse) == []
    assert warehouse.read_table("review_cases").equals(existing)

    decisions = warehouse.read_table("human_decisions")
    assert decisions.is_empty() and decisions.schema == pl.Schema(HUMAN_DECISIONS_SCHEMA)
    # the review plane's first write (polars, by column name) lands in the created table as is
    row = pl.DataFrame([{name: None for name in HUMAN_DECISIONS_SCHEMA} | {"decision_id": "D1", "reason_codes": ["R1"]}],
                       schema=HUMAN_DECISIONS_SCHEMA)
    with warehouse.connect() as con:
        con.register("incoming", row.to_arrow())
        con.execute("insert into human_decisions by name select * from incoming")
    assert warehouse.read_table("human_decisions")["reason_codes"].to_list() == [["R1"]]


def test_review_cases_created_from_scratch_match_the_schema(tmp_path: Path):
    warehouse = Warehouse(tmp_path / "aios.duckdb")
    create_missing_review_tables(warehouse)
    assert warehouse.read_table("review_cases").schema == pl.Schema(REVIEW_CASES_SCHEMA)


def test_dbt_vars_follow_the_contract_and_default_to_the_shipped_one(tmp_path: Path):
    contract = load_contract(DEFAULT_CONTRACT_PATH)
    project_vars = yaml.safe_load((PROJECT_ROOT / "dbt_project" / "dbt_project.yml").read_text())["vars"]
    assert contract_dbt_vars(contract) == project_vars  # the shipped contract needs no --vars

    raw = yaml.safe_load(DEFAULT_CONTRACT_PATH.read_text())
    renames = {"application_id": "app_ref", "loan_amount": "requested_eur", "application_ts": "submitted_at"}
    for section in ("applications", "outcomes"):
        for column in raw[section]["columns"]:
            column["name"] = renames.get(column["name"], column["name"])
            if column.get("references"):
                column["references"] = renames[column["references"]]
    raw["applications"]["columns"] = [c for c in raw["applications"]["columns"] if c["name"] != "channel"]
    other = tmp_path / "contract.yaml"
    other.write_text(yaml.safe_dump(raw))
    got = contract_dbt_vars(load_contract(other))
    assert got["application_id_column"] == "app_ref" and got["outcome_application_id_column"] == "app_ref"
    assert got["loan_amount_column"] == "requested_eur" and got["application_ts_column"] == "submitted_at"
    assert got["channel_column"] is None and got["outcome_target_column"] == "defaulted"


def test_missing_online_tables_are_created_empty_with_the_copys_schemas(tmp_path: Path):
    from aios_pipelines.analytics.review_tables import ONLINE_DECISIONS_SCHEMA
    from aios_pipelines.analytics.sources import create_missing_online_tables
    from aios_pipelines.ingestion.validation import loaded_schema
    from aios_pipelines.review.warehouse_copy import online_applications_table, online_decisions_table

    contract = load_contract(DEFAULT_CONTRACT_PATH)
    warehouse = Warehouse(tmp_path / "aios.duckdb")
    assert create_missing_online_tables(warehouse, contract.applications) == ["online_decisions", "online_applications"]
    assert create_missing_online_tables(warehouse, contract.applications) == []
    assert warehouse.read_table("online_decisions").schema == pl.Schema(ONLINE_DECISIONS_SCHEMA)
    # online_applications is shaped like raw_applications, so staging can union the two
    assert warehouse.read_table("online_applications").schema == pl.Schema(loaded_schema(contract.applications))
    # the copy's first write lands in them as is
    row = {"seq": 1, "application_id": "A1", "application_date": date(2026, 3, 2), "pd": 0.1, "action": "auto_approve",
           "reasons": [{"code": "R1", "text": "t", "feature": "f"}], "application": {"application_id": "A1"}}
    warehouse.sync_tables(upsert={"online_decisions": (online_decisions_table([row]), "decision_id"),
                                  "online_applications": (online_applications_table([row], contract.applications), "source_row")})
    assert warehouse.read_table("online_decisions")["reason_codes"].to_list() == [["R1"]]
    assert warehouse.read_table("online_applications")["source_file"].to_list() == ["api:online"]
