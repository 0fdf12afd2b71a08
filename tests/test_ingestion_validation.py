"""Contract enforcement on rows and files, without Dagster."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from aios_pipelines.ingestion.landing import LandingFileError, read_landing_file
from aios_pipelines.ingestion.load import load_landing_day
from aios_pipelines.ingestion.validation import validate_rows

DAY = date(2026, 3, 2)
GOOD = {
    "application_id": "APP-1",
    "application_ts": "2026-03-02T09:15:00",
    "annual_income": "52000",
    "employment_length_years": "4.5",
    "existing_debt": "8000",
    "debt_to_income": "0.21",
    "credit_history_months": "96",
    "delinquencies_2y": "0",
    "bureau_score": "710",
    "credit_utilisation": "0.35",
    "loan_amount": "12000",
    "purpose": "car",
    "term_months": "36",
    "region": "north",
    "channel": "web",
}


def _csv(path: Path, rows: list[dict], header: list[str] | None = None) -> Path:
    header = header or list(GOOD)
    lines = [",".join(header)] + [",".join(str(r.get(c, "")) for c in header) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _row(i: int, **changes) -> dict:
    return {**GOOD, "application_id": f"APP-{i}", **changes}


# every kind of contract violation, with the column and the words its reason must carry
VIOLATIONS = [
    ("wrong type", {"annual_income": "abc"}, "annual_income", "expected float, got 'abc'"),
    ("not an integer", {"credit_history_months": "12.5"}, "credit_history_months", "expected integer"),
    ("missing required", {"loan_amount": ""}, "loan_amount", "missing required value"),
    ("below range", {"annual_income": "-10"}, "annual_income", "outside valid range [0, 10000000]"),
    ("above range", {"bureau_score": "900"}, "bureau_score", "outside valid range [300, 850]"),
    ("category not allowed", {"purpose": "crypto"}, "purpose", "'crypto' not among allowed values"),
    ("integer not allowed", {"term_months": "37"}, "term_months", "'37' not among allowed values"),
    ("bad timestamp", {"application_ts": "yesterday"}, "application_ts", "expected timestamp"),
    ("other day", {"application_ts": "2026-03-01T23:59:00"}, "application_ts", "is not on landing day 2026-03-02"),
]


@pytest.mark.parametrize("name, change, column, words", VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_each_violation_is_quarantined_with_its_reason(tmp_path, contract, name, change, column, words):
    path = _csv(tmp_path / "a.csv", [_row(1), _row(2, **change), _row(3)])
    raw, _ = read_landing_file(path, contract.applications, "a.csv")
    result = validate_rows(raw, contract.applications, DAY)
    assert result.loaded["application_id"].to_list() == ["APP-1", "APP-3"]
    assert result.quarantined.height == 1
    bad = result.quarantined.row(0, named=True)
    assert bad["source_file"] == "a.csv"
    assert bad["source_row"] == 2
    assert bad["column_name"] == column
    assert words in bad["reason"]
    # nothing is lost: the raw values are kept as they arrived
    assert json.loads(bad["raw_record"])["application_id"] == "APP-2"


def test_future_timestamp_is_quarantined(tmp_path, contract):
    path = _csv(tmp_path / "a.csv", [_row(1, application_ts="2026-03-02T10:00:00")])
    raw, _ = read_landing_file(path, contract.applications)
    result = validate_rows(raw, contract.applications, DAY, now=datetime(2026, 3, 2, 9, 0))
    assert result.quarantined["reason"].to_list() == ["application_ts: 2026-03-02 10:00:00.000000 is in the future"]


def test_nullable_columns_may_be_empty(tmp_path, contract):
    path = _csv(tmp_path / "a.csv", [_row(1, bureau_score="", employment_length_years="")])
    raw, _ = read_landing_file(path, contract.applications)
    result = validate_rows(raw, contract.applications, DAY)
    assert result.quarantined.is_empty()
    assert result.loaded["bureau_score"].to_list() == [None]


def test_duplicate_ids_keep_the_first_and_quarantine_the_rest(tmp_path, contract):
    path = _csv(tmp_path / "a.csv", [_row(1), _row(2), _row(1, annual_income="99000")])
    raw, _ = read_landing_file(path, contract.applications)
    result = validate_rows(raw, contract.applications, DAY)
    assert result.loaded["annual_income"].to_list() == [52000.0, 52000.0]
    assert result.quarantined["source_row"].to_list() == [3]
    assert "duplicate 'APP-1'" in result.quarantined["reason"][0]


def test_id_loaded_on_another_day_is_not_loaded_twice(tmp_path, contract):
    path = _csv(tmp_path / "a.csv", [_row(1), _row(2)])
    raw, _ = read_landing_file(path, contract.applications)
    earlier = pl.DataFrame({"application_id": ["APP-2"], "landing_date": ["2026-03-01"]})
    result = validate_rows(raw, contract.applications, DAY, already_loaded_ids=earlier)
    assert result.loaded["application_id"].to_list() == ["APP-1"]
    assert "already loaded from landing day 2026-03-01" in result.quarantined["reason"][0]


def test_several_reasons_are_all_kept(tmp_path, contract):
    path = _csv(tmp_path / "a.csv", [_row(1, annual_income="-1", purpose="crypto", channel="")])
    raw, _ = read_landing_file(path, contract.applications)
    bad = validate_rows(raw, contract.applications, DAY).quarantined.row(0, named=True)
    assert bad["column_name"] == "annual_income"  # the first failing column in contract order
    assert len(bad["all_reasons"]) == 3


def test_ragged_rows_are_quarantined_and_the_rest_loads(tmp_path, contract):
    header = ",".join(GOOD)
    good = ",".join(_row(1).values())
    too_long = ",".join(_row(2).values()) + ",surplus"
    path = tmp_path / "a.csv"
    path.write_text("\n".join([header, good, too_long, ",".join(_row(3).values())]) + "\n")
    raw, _ = read_landing_file(path, contract.applications)
    result = validate_rows(raw, contract.applications, DAY)
    assert result.loaded["application_id"].to_list() == ["APP-1", "APP-3"]
    assert result.quarantined["reason"].to_list() == ["malformed row: 16 fields where the header has 15"]
    assert "surplus" in result.quarantined["raw_record"][0]


def test_extra_columns_are_ignored_and_reported(tmp_path, contract):
    path = _csv(tmp_path / "a.csv", [{**_row(1), "favourite_colour": "red"}], header=[*GOOD, "favourite_colour"])
    raw, extra = read_landing_file(path, contract.applications)
    assert extra == ["favourite_colour"]
    assert validate_rows(raw, contract.applications, DAY).loaded.height == 1


def test_outcome_pointing_at_no_application_is_quarantined(tmp_path, contract):
    path = tmp_path / "o.csv"
    path.write_text("application_id,outcome_date,defaulted\nAPP-1,2026-03-02,0\nAPP-404,2026-03-02,1\nAPP-2,2026-03-02,2\n")
    raw, _ = read_landing_file(path, contract.outcomes)
    result = validate_rows(
        raw, contract.outcomes, DAY, known_references=pl.Series(["APP-1", "APP-2"])
    )
    assert result.loaded["application_id"].to_list() == ["APP-1"]
    reasons = dict(zip(result.quarantined["record_id"], result.quarantined["reason"]))
    assert "does not match any loaded application_id" in reasons["APP-404"]
    assert "not among allowed values [0, 1]" in reasons["APP-2"]


# files that cannot be read at all fail with the file and, where known, the line
def test_invalid_utf8_names_file_and_line(tmp_path, contract):
    path = tmp_path / "latin1.csv"
    body = ",".join(GOOD) + "\n" + ",".join(_row(1).values()) + "\n" + ",".join(_row(2, region="caf\xe9").values())
    path.write_bytes(body.encode("latin-1"))
    with pytest.raises(LandingFileError) as err:
        read_landing_file(path, contract.applications)
    assert str(path) in str(err.value) and "line 3" in str(err.value) and "UTF-8" in str(err.value)


def test_wrong_delimiter_is_explained(tmp_path, contract):
    path = tmp_path / "semi.csv"
    path.write_text(";".join(GOOD) + "\n" + ";".join(_row(1).values()) + "\n")
    with pytest.raises(LandingFileError, match="delimited by something other than ','") as err:
        read_landing_file(path, contract.applications)
    assert "line 1" in str(err.value)


def test_missing_column_fails_the_file(tmp_path, contract):
    header = [c for c in GOOD if c != "bureau_score"]
    path = _csv(tmp_path / "a.csv", [_row(1)], header=header)
    with pytest.raises(LandingFileError, match=r"lacks contract column\(s\) \['bureau_score'\]"):
        read_landing_file(path, contract.applications)


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage"], ids=["empty", "binary parquet"])
def test_empty_or_corrupt_files_fail_clearly(tmp_path, contract, content):
    path = tmp_path / ("a.csv" if not content else "a.parquet")
    path.write_bytes(content)
    with pytest.raises(LandingFileError) as err:
        read_landing_file(path, contract.applications)
    assert str(path) in str(err.value)


def test_header_only_file_loads_nothing(tmp_path, contract):
    path = _csv(tmp_path / "a.csv", [])
    raw, _ = read_landing_file(path, contract.applications)
    assert raw.height == 0


def test_a_day_of_csv_and_parquet_files_reconciles_per_file(tmp_path, contract):
    day_dir = tmp_path / "applications" / DAY.isoformat()
    _csv(day_dir / "part-1.csv", [_row(1), _row(2, annual_income="abc")])
    typed = pl.DataFrame([_row(3), _row(4, purpose="crypto"), _row(1)]).with_columns(
        pl.col("annual_income").cast(pl.Float64), pl.col("term_months").cast(pl.Int64)
    )
    typed.write_parquet(day_dir / "part-2.parquet")
    day = load_landing_day(tmp_path, contract.applications, DAY)
    assert sorted(day.loaded["application_id"]) == ["APP-1", "APP-3"]
    by_file = {f.file: f for f in day.files}
    assert by_file["applications/2026-03-02/part-1.csv"].rows_quarantined == 1
    assert by_file["applications/2026-03-02/part-2.parquet"].rows_quarantined == 2  # crypto + duplicate APP-1
    assert all(f.reconciles for f in day.files)
    assert day.rows_read == day.loaded.height + day.quarantined.height == 5
