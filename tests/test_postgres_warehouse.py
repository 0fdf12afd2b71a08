"""The warehouse behaves the same on DuckDB and on PostgreSQL: each test runs on both engines."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from aios_pipelines.defs.resources import WarehouseResource
from aios_pipelines.storage.postgres_warehouse import PostgresWarehouse, numbered_placeholders
from aios_pipelines.storage.warehouse import Warehouse, open_warehouse

D1, D2 = date(2026, 3, 2), date(2026, 3, 3)


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request, tmp_path):
    if request.param == "duckdb":
        return Warehouse(tmp_path / "warehouse.duckdb")
    return PostgresWarehouse(request.getfixturevalue("postgres_url"))


def day_rows(day: date, ids: list[int], score: float = 0.5) -> pl.DataFrame:
    return pl.DataFrame({
        "application_id": [f"A{i}" for i in ids],
        "application_date": [day] * len(ids),
        "score": [score] * len(ids),
        "reasons": [["income", "tenure"] if i % 2 else [] for i in ids],
        "scored_at": [datetime(2026, 3, 4, 1, 30)] * len(ids),
        "flag": pl.Series([1] * len(ids), dtype=pl.UInt8),
    })


def sorted_rows(frame: pl.DataFrame) -> list[dict]:
    return frame.sort("application_id").to_dicts()


def test_replacing_a_partition_twice_keeps_one_copy_and_the_other_partitions(warehouse):
    warehouse.replace_partitions("scores", day_rows(D1, [1, 2]), "application_date", [D1])
    warehouse.replace_partitions("scores", day_rows(D2, [3]), "application_date", [D2])
    warehouse.replace_partitions("scores", day_rows(D1, [1, 2, 4], score=0.9), "application_date", [D1])

    stored = warehouse.read_table("scores")
    assert stored.height == 4
    assert stored.schema == day_rows(D1, [1]).schema  # read back as written, the 8-bit flag too
    assert stored.filter(pl.col("application_date") == D1)["score"].to_list() == [0.9, 0.9, 0.9]
    assert sorted_rows(stored.filter(pl.col("application_id") == "A3")) == sorted_rows(day_rows(D2, [3]))
    assert stored.filter(pl.col("application_id") == "A1")["reasons"].to_list() == [["income", "tenure"]]


def test_a_failed_write_of_two_tables_leaves_both_as_they_were(warehouse):
    warehouse.replace_partitions_together({"scores": day_rows(D1, [1]), "quarantine": day_rows(D1, [2])},
                                          "application_date", [D1])
    not_a_score = day_rows(D1, [7]).with_columns(pl.lit("high").alias("score"))
    with pytest.raises(Exception):
        warehouse.replace_partitions_together({"quarantine": day_rows(D1, [5, 6]), "scores": not_a_score},
                                              "application_date", [D1])
    assert warehouse.read_table("scores")["application_id"].to_list() == ["A1"]
    assert warehouse.read_table("quarantine")["application_id"].to_list() == ["A2"]


def test_rows_outside_the_replaced_partitions_are_refused_before_anything_is_written(warehouse):
    with pytest.raises(ValueError, match="scores: 1 rows fall outside"):
        warehouse.replace_partitions("scores", day_rows(D2, [1]), "application_date", [D1])
    assert not warehouse.table_exists("scores")


def test_upserting_the_same_rows_twice_never_duplicates_and_replace_keeps_dependent_views(warehouse):
    decisions = pl.DataFrame({"decision_id": [1, 2], "decision": ["approve", "decline"]})
    warehouse.sync_tables(replace={"cases": day_rows(D1, [1, 2])}, upsert={"decisions": (decisions, "decision_id")})
    with warehouse.connect() as con:  # dbt's staging models are views over the copied tables
        con.execute("create view stg_cases as select application_id from cases")
    changed = pl.DataFrame({"decision_id": [2, 3], "decision": ["approve", "refer"]})
    warehouse.sync_tables(replace={"cases": day_rows(D1, [9])}, upsert={"decisions": (changed, "decision_id")})

    assert warehouse.query("select * from decisions order by decision_id").to_dicts() == [
        {"decision_id": 1, "decision": "approve"}, {"decision_id": 2, "decision": "approve"},
        {"decision_id": 3, "decision": "refer"}]
    assert warehouse.query("select application_id from stg_cases")["application_id"].to_list() == ["A9"]
    assert warehouse.replace_table("cases", day_rows(D2, [4, 5])) == 2
    assert warehouse.scalar("select count(*) from stg_cases") == 2


def test_queries_take_question_mark_parameters_and_give_numbers_as_numbers(warehouse):
    warehouse.replace_table("scores", day_rows(D1, [1, 2, 3]))
    frame = warehouse.query(
        "select count(*) as n, avg(score) as mean, sum(flag) as flags, '?' as mark, "
        "avg(case when application_id = 'A1' then 1.0 else 0.0 end) as share, sum(count_big) as total from "
        "(select *, cast(flag as bigint) * 3000000000 as count_big from scores) as s "
        "where application_date = ? and application_id <> ?", [D1, "A2"])
    assert frame.to_dicts() == [{"n": 2, "mean": 0.5, "flags": 2, "mark": "?", "share": 0.5, "total": 6_000_000_000}]
    assert frame.schema["mean"] == frame.schema["share"] == pl.Float64
    assert warehouse.scalar("select max(application_id) from scores where score > ?", [0.1]) == "A3"
    assert warehouse.table_exists("scores") and not warehouse.table_exists("nothing")


def test_reading_a_missing_table_names_it_and_the_warehouse(warehouse):
    with pytest.raises(LookupError, match="table training_set is not in the warehouse"):
        warehouse.read_table("training_set")


def test_the_resource_and_open_warehouse_pick_the_engine(postgres_url, tmp_path):
    assert isinstance(WarehouseResource(path=str(tmp_path / "w.duckdb")).get(), Warehouse)
    assert isinstance(WarehouseResource(path=str(tmp_path / "w.duckdb"), url=postgres_url).get(), PostgresWarehouse)
    assert isinstance(open_warehouse(postgres_url), PostgresWarehouse)
    assert isinstance(open_warehouse(tmp_path / "w.duckdb"), Warehouse)


def test_an_unreachable_server_is_named_without_its_password():
    warehouse = PostgresWarehouse("postgresql://aios:secret@127.0.0.1:1/warehouse")
    with pytest.raises(ConnectionError, match=r"postgresql://aios@127\.0\.0\.1:1/warehouse") as raised:
        warehouse.query("select 1")
    assert "secret" not in str(raised.value)


def test_placeholders_inside_quotes_are_left_alone():
    assert numbered_placeholders("""select '?', "a?" from t where x = ? and y in (?, ?)""") == (
        """select '?', "a?" from t where x = $1 and y in ($2, $3)""")
