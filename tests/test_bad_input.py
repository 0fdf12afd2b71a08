"""Bad input against the ingestion path, hand-made and generated (Hypothesis).

Every case must end either in a ``LandingFileError`` that names the file (and the line or the
column where known) or in quarantine with a reason naming the column; never in another
exception, never in a row loaded that breaks the contract, and never in a change to data
already stored. The cases already covered in test_ingestion_validation.py (latin-1, ';',
a missing column, an empty file, a corrupt Parquet file, a header-only file, each rule's
reason) are not repeated here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import tempfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aios_pipelines.defs.ingestion.assets import raw_applications
from aios_pipelines.defs.resources import LandingResource, WarehouseResource
from aios_pipelines.defs.runner import user_error_message
from aios_pipelines.ingestion.landing import LandingFileError, read_landing_file
from aios_pipelines.ingestion.validation import MAX_TEXT_CHARS, validate_rows
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH, AiosPaths
from aios_pipelines.storage.warehouse import Warehouse
from aios_pipelines.synthetic.generator import write_landing

# one valid row of the contract, shared with the hand-made validation cases
from test_ingestion_validation import DAY, GOOD  # noqa: E402

INJECTIONS = [
    "'; DROP TABLE applications; --",
    "=cmd|' /C calc'!A0",
    "<script>alert('x')</script>",
    "Robert'); DELETE FROM raw_applications; --",
    '<img src=x onerror="alert(1)">',
]


def _row(i: int, **changes) -> dict:
    return {**GOOD, "application_id": f"APP-{i}", **changes}


def _csv_text(rows: list[dict], header: list[str] | None = None, delimiter: str = ",") -> str:
    header = header or list(GOOD)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        writer.writerow([r.get(c, "") for c in header])
    return out.getvalue()


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _parquet(path: Path, frame: pl.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return path


def _good_frame(n: int = 2) -> pl.DataFrame:
    return pl.DataFrame([_row(i) for i in range(1, n + 1)])


# ---------------------------------------------------------------------------------------
# files that cannot be read at all: a clear error naming the file and what to do

UNREADABLE = [
    ("utf-16 with BOM", "a.csv", lambda: _csv_text([_row(1)]).encode("utf-16"), ["line 1", "UTF-16", "save it as UTF-8"]),
    ("utf-16 without BOM", "a.csv", lambda: _csv_text([_row(1)]).encode("utf-16-le"), ["line 1", "NUL bytes", "UTF-8"]),
    ("tab delimited", "a.csv", lambda: _csv_text([_row(1)], delimiter="\t"), ["line 1", "delimited by something other than ','"]),
    ("pipe delimited", "a.csv", lambda: _csv_text([_row(1)], delimiter="|"), ["line 1", "delimited by something other than ','"]),
    ("repeated column", "a.csv",
     lambda: _csv_text([{**_row(1)}], header=[*GOOD, "annual_income"]), ["line 1", "repeats column(s) ['annual_income']"]),
    ("repeated after trimming spaces", "a.csv",
     lambda: _csv_text([{**_row(1)}], header=[*GOOD, " loan_amount "]), ["line 1", "repeats column(s) ['loan_amount']"]),
    ("only blank lines", "a.csv", lambda: "\n\n\n", ["line 1", "empty file: no header row"]),
    ("parquet list column", "a.parquet",
     lambda: _good_frame().with_columns(pl.Series("annual_income", [[1.0], [2.0]])), ["annual_income", "List(Float64)"]),
    ("parquet struct column", "a.parquet",
     lambda: _good_frame().with_columns(pl.struct(pl.lit("car").alias("x")).alias("purpose")), ["purpose", "Struct"]),
    ("parquet duration column", "a.parquet",
     lambda: _good_frame().with_columns(pl.lit(timedelta(days=1)).alias("loan_amount")), ["loan_amount", "Duration"]),
    ("parquet missing column", "a.parquet", lambda: _good_frame().drop("region"), ["lacks contract column(s) ['region']"]),
]


@pytest.mark.parametrize("name, filename, make, words", UNREADABLE, ids=[u[0] for u in UNREADABLE])
def test_unreadable_files_fail_with_the_file_and_the_cause(tmp_path, contract, name, filename, make, words):
    content = make()
    path = tmp_path / filename
    _parquet(path, content) if isinstance(content, pl.DataFrame) else _write(path, content)
    with pytest.raises(LandingFileError) as err:
        read_landing_file(path, contract.applications)
    message = str(err.value)
    assert message.startswith(f"cannot ingest {path}")
    for word in words:
        assert word in message, message
    assert "\\x00" not in message  # the cause is named, not shown as mojibake


def test_utf8_bom_is_read_as_utf8(tmp_path, contract):
    path = _write(tmp_path / "bom.csv", _csv_text([_row(1), _row(2)]).encode("utf-8-sig"))
    raw, extra = read_landing_file(path, contract.applications)
    assert extra == []  # the BOM does not stick to the first column name
    assert validate_rows(raw, contract.applications, DAY).loaded["application_id"].to_list() == ["APP-1", "APP-2"]


def test_crlf_and_quoted_cells_with_delimiters_and_newlines_load(tmp_path, contract):
    text = _csv_text([_row(1), _row(2)]).replace("\n", "\r\n")
    path = _write(tmp_path / "crlf.csv", text)
    raw, _ = read_landing_file(path, contract.applications)
    assert validate_rows(raw, contract.applications, DAY).loaded.height == 2
    # an id holding the delimiter and a newline is one cell, kept exactly
    path = _write(tmp_path / "quoted.csv", _csv_text([_row(1, application_id="APP,1\nb")]))
    raw, _ = read_landing_file(path, contract.applications)
    assert validate_rows(raw, contract.applications, DAY).loaded["application_id"].to_list() == ["APP,1\nb"]


# ---------------------------------------------------------------------------------------
# rows that are read but break the contract: quarantined with the column and a reason

QUARANTINED = [
    ("huge id", {"application_id": "X" * 2_000_000}, "application_id",
     f"value is 2000000 characters long, more than the {MAX_TEXT_CHARS} allowed"),
    ("huge category", {"region": "n" * 50_000}, "region", "characters long"),
    ("NUL in id", {"application_id": "APP\x00-2"}, "application_id", "contains control characters"),
    ("escape in category", {"channel": "web\x1b[31m"}, "channel", "contains control characters"),
    ("negative debt", {"existing_debt": "-5"}, "existing_debt", "-5.0 outside valid range [0, 10000000]"),
    ("negative loan amount", {"loan_amount": "-1000"}, "loan_amount", "outside valid range [500, 250000]"),
    ("infinite income", {"annual_income": "inf"}, "annual_income", "expected float, got 'inf'"),
    ("NaN amount", {"loan_amount": "NaN"}, "loan_amount", "expected float, got 'NaN'"),
    ("overflowing integer", {"credit_history_months": "9" * 30}, "credit_history_months", "expected integer"),
    ("date far in the future", {"application_ts": "2099-03-02T09:00:00"}, "application_ts", "is not on landing day"),
    ("timestamp with offset", {"application_ts": "2026-03-02T09:00:00+05:00"}, "application_ts", "expected timestamp"),
    ("number as category", {"purpose": "42"}, "purpose", "'42' not among allowed values"),
    *[
        (f"injection in category {i}", {"purpose": text}, "purpose", "not among allowed values")
        for i, text in enumerate(INJECTIONS)
    ],
]


@pytest.mark.parametrize("name, change, column, words", QUARANTINED, ids=[q[0] for q in QUARANTINED])
def test_bad_values_are_quarantined_with_the_column_and_a_short_reason(tmp_path, contract, name, change, column, words):
    path = _write(tmp_path / "a.csv", _csv_text([_row(1), _row(2, **change), _row(3)]))
    raw, _ = read_landing_file(path, contract.applications, "a.csv")
    result = validate_rows(raw, contract.applications, DAY, now=datetime(2026, 3, 3))
    assert result.loaded["application_id"].to_list() == ["APP-1", "APP-3"]
    bad = result.quarantined.row(0, named=True)
    assert (bad["source_file"], bad["source_row"], bad["column_name"]) == ("a.csv", 2, column)
    assert words in bad["reason"], bad["reason"]
    assert len(bad["reason"]) < 300 and all(len(r) < 300 for r in bad["all_reasons"])
    # nothing is lost: the raw values are kept whole, as they arrived
    assert json.loads(bad["raw_record"])[column] == change[column]


def test_future_date_on_the_landing_day_is_quarantined_as_future(tmp_path, contract):
    path = _write(tmp_path / "a.csv", _csv_text([_row(1, application_ts="2026-03-02T23:00:00"), _row(2)]))
    raw, _ = read_landing_file(path, contract.applications)
    result = validate_rows(raw, contract.applications, DAY, now=datetime(2026, 3, 2, 12, 0))
    assert result.loaded["application_id"].to_list() == ["APP-2"]
    assert result.quarantined["reason"].to_list() == ["application_ts: 2026-03-02 23:00:00.000000 is in the future"]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_strings_in_ids_are_stored_as_data(tmp_path, contract, text):
    """An id is free text in the contract: it is kept verbatim and never executed."""
    path = _write(tmp_path / "a.csv", _csv_text([_row(1, application_id=text), _row(2)]))
    raw, _ = read_landing_file(path, contract.applications)
    loaded = validate_rows(raw, contract.applications, DAY).loaded
    assert loaded["application_id"].to_list() == [text, "APP-2"]
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    warehouse.replace_partitions_together({"raw_applications": loaded}, "landing_date", [DAY])
    assert warehouse.table_exists("raw_applications")
    assert warehouse.query("select application_id from raw_applications order by source_row")[
        "application_id"
    ].to_list() == [text, "APP-2"]


def test_parquet_timestamps_with_a_zone_are_converted_to_utc(tmp_path, contract):
    local = datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=5)))
    frame = _good_frame(1).with_columns(
        pl.lit(local).dt.convert_time_zone("Asia/Karachi").alias("application_ts")  # UTC+5, no DST
    )
    path = _parquet(tmp_path / "a.parquet", frame)
    raw, _ = read_landing_file(path, contract.applications)
    loaded = validate_rows(raw, contract.applications, DAY).loaded
    assert loaded["application_ts"].to_list() == [datetime(2026, 3, 2, 4, 0)]


def test_wrong_parquet_types_are_quarantined_per_row(tmp_path, contract):
    frame = _good_frame(3).with_columns(
        pl.Series("annual_income", [True, False, True]),  # booleans where a number belongs
        pl.Series("term_months", [36.0, 36.5, 12.0]),  # a fraction where an integer belongs
        pl.Series("application_ts", [1772442900, 1772442901, 1772442902]),  # epoch seconds
    )
    path = _parquet(tmp_path / "a.parquet", frame)
    raw, _ = read_landing_file(path, contract.applications, "a.parquet")
    result = validate_rows(raw, contract.applications, DAY)
    assert result.loaded.is_empty() and result.quarantined.height == 3
    reasons = result.quarantined["all_reasons"].to_list()
    assert all("annual_income: expected float, got 'true'" in r or "annual_income: expected float, got 'false'" in r
               for r in reasons)
    assert any("term_months: expected integer, got '36.5'" in r for r in reasons)
    assert all(any(x.startswith("application_ts: expected timestamp") for x in r) for r in reasons)


# ---------------------------------------------------------------------------------------
# generated input: whatever the rows hold, read + validate ends in an error or a split that
# reconciles, and every loaded row satisfies the contract

COLUMNS = list(GOOD)
VALID = {
    "application_id": st.from_regex(r"APP-[0-9]{1,3}", fullmatch=True),
    "application_ts": st.sampled_from(["2026-03-02T00:00:00", "2026-03-02 12:30:00", "2026-03-02T23:59:59.5"]),
    "annual_income": st.integers(0, 300_000).map(str),
    "employment_length_years": st.sampled_from(["", "0", "12.5", "60"]),
    "existing_debt": st.floats(0, 1e6, allow_nan=False).map(repr),
    "debt_to_income": st.sampled_from(["0", "0.3", "5"]),
    "credit_history_months": st.integers(0, 900).map(str),
    "delinquencies_2y": st.integers(0, 50).map(str),
    "bureau_score": st.sampled_from(["", "300", "700", "850"]),
    "credit_utilisation": st.sampled_from(["0", "0.5", "1.5"]),
    "loan_amount": st.integers(500, 250_000).map(str),
    "purpose": st.sampled_from(["car", "medical", "other"]),
    "term_months": st.sampled_from(["12", "36", "60"]),
    "region": st.sampled_from(["north", "west"]),
    "channel": st.sampled_from(["web", "broker"]),
}
NASTY = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", " ", "-1", "1e309", "NaN", "-inf", "0x10", "1,5", "NULL", "None", "true", "2026-02-30",
                     "2026-03-02T25:00:00", "９９", "\u00a0", *INJECTIONS]),
    st.integers(-(10**20), 10**20).map(str),
    st.floats().map(str),
)
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def csv_rows(draw) -> list[dict]:
    n = draw(st.integers(0, 6))
    rows = []
    for _ in range(n):
        row = {c: draw(VALID[c]) for c in COLUMNS}
        for c in draw(st.lists(st.sampled_from(COLUMNS), max_size=3, unique=True)):
            row[c] = draw(NASTY)
        rows.append(row)
    return rows


def _assert_contract_holds(loaded: pl.DataFrame, dataset) -> None:
    """Every loaded row satisfies every column rule of the contract."""
    assert loaded[dataset.id_column.name].is_duplicated().sum() == 0
    for spec in dataset.columns:
        values = loaded[spec.name].to_list()
        for v in values:
            if v is None:
                assert spec.nullable, f"{spec.name} is required but a null was loaded"
                continue
            if spec.min is not None:
                assert v >= spec.min, (spec.name, v)
            if spec.max is not None:
                assert v <= spec.max, (spec.name, v)
            if spec.allowed_values is not None:
                assert v in spec.allowed_values, (spec.name, v)
            if spec.type == "float":
                assert math.isfinite(v)
            if spec.type == "string":
                assert 0 < len(v) <= MAX_TEXT_CHARS and v == v.strip()
    ts = dataset.timestamp_column.name
    assert all(v.date() == DAY for v in loaded[ts].to_list())


def _assert_split(path: Path, rows_written: int, dataset, **kw) -> None:
    """Read + validate one file: a LandingFileError naming it, or a split that reconciles."""
    try:
        raw, _ = read_landing_file(path, dataset, path.name)
    except LandingFileError as exc:
        assert str(exc).startswith(f"cannot ingest {path}")
        return
    result = validate_rows(raw, dataset, DAY, now=datetime(2026, 3, 3), **kw)
    assert result.rows_read == raw.height == rows_written
    rows = sorted(result.loaded["source_row"].to_list() + result.quarantined["source_row"].to_list())
    assert rows == list(range(1, rows_written + 1))
    _assert_contract_holds(result.loaded, dataset)
    for bad in result.quarantined.iter_rows(named=True):
        assert bad["source_file"] == path.name and bad["reason"]
        assert bad["column_name"] == "(row)" or bad["reason"].startswith(f"{bad['column_name']}:"), bad


@SETTINGS
@given(
    rows=csv_rows(),
    order=st.permutations(COLUMNS),
    extra=st.lists(st.sampled_from(["note", "x", "Region"]), max_size=2, unique=True),
    dropped=st.lists(st.sampled_from(COLUMNS), max_size=1),
)
def test_generated_csv_rows_are_loaded_or_quarantined(contract, rows, order, extra, dropped):
    header = [c for c in order if c not in dropped] + extra
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "gen.csv", _csv_text([{**r, **{e: "v" for e in extra}} for r in rows], header))
        if dropped:
            with pytest.raises(LandingFileError, match=rf"lacks contract column\(s\) \['{dropped[0]}'\]"):
                read_landing_file(path, contract.applications)
            return
        earlier = pl.DataFrame({"application_id": ["APP-1", "APP-2"], "landing_date": ["2026-03-01"] * 2})
        _assert_split(path, len(rows), contract.applications, already_loaded_ids=earlier)


@SETTINGS
@given(body=st.binary(max_size=300), prefix_rows=st.integers(0, 2))
def test_arbitrary_bytes_after_a_valid_header_never_crash(contract, body, prefix_rows):
    with tempfile.TemporaryDirectory() as tmp:
        head = _csv_text([_row(i) for i in range(prefix_rows)]).encode()
        path = _write(Path(tmp) / "bytes.csv", head + body)
        try:
            raw, _ = read_landing_file(path, contract.applications, path.name)
        except LandingFileError as exc:
            assert str(exc).startswith(f"cannot ingest {path}")
            return
        result = validate_rows(raw, contract.applications, DAY, now=datetime(2026, 3, 3))
        assert result.rows_read == raw.height
        _assert_contract_holds(result.loaded, contract.applications)


PARQUET_VALUES = {
    "text": st.one_of(st.none(), st.text(max_size=12)),
    "int": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    "float": st.one_of(st.none(), st.floats()),
    "bool": st.one_of(st.none(), st.booleans()),
    "date": st.one_of(st.none(), st.dates(date(1900, 1, 1), date(2100, 1, 1))),
    "datetime": st.one_of(st.none(), st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1))),
}
PARQUET_DTYPES = {"text": pl.String, "int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean,
                  "date": pl.Date, "datetime": pl.Datetime("us")}


@st.composite
def parquet_frames(draw) -> pl.DataFrame:
    n = draw(st.integers(0, 5))
    columns = {}
    for c in COLUMNS:
        kind = draw(st.sampled_from(["valid", "valid", *PARQUET_VALUES]))
        if kind == "valid":
            columns[c] = pl.Series(c, [draw(VALID[c]) for _ in range(n)], dtype=pl.String)
        else:
            columns[c] = pl.Series(c, [draw(PARQUET_VALUES[kind]) for _ in range(n)], dtype=PARQUET_DTYPES[kind])
    return pl.DataFrame(list(columns.values()))


@SETTINGS
@given(frame=parquet_frames())
def test_generated_parquet_of_any_column_types_is_loaded_or_quarantined(contract, frame):
    with tempfile.TemporaryDirectory() as tmp:
        path = _parquet(Path(tmp) / "gen.parquet", frame)
        _assert_split(path, frame.height, contract.applications)


# ---------------------------------------------------------------------------------------
# through the Dagster asset: a bad file never changes what is already stored

D1, D2 = DAY, DAY + timedelta(days=1)


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def _partition_hashes(paths: AiosPaths) -> dict[tuple[str, str], tuple[int, str]]:
    """(table, day) -> (rows, sha256 of the sorted rows) for every stored partition."""
    wh = Warehouse(paths.warehouse)
    out = {}
    for table in ("raw_applications", "quarantined_applications"):
        if not wh.table_exists(table):
            continue
        frame = wh.query(f"select * from {table}")
        for (day,), part in frame.group_by("landing_date"):
            text = part.sort(pl.all().exclude(pl.List(pl.String))).write_ndjson()
            out[(table, str(day))] = (part.height, hashlib.sha256(text.encode()).hexdigest())
    return out


def _materialize(paths: AiosPaths, instance, day: date, last_day: date | None = None):
    tags = {"dagster/asset_partition_range_start": day.isoformat(),
            "dagster/asset_partition_range_end": (last_day or day).isoformat()}
    return dg.materialize(
        [raw_applications],
        tags=tags,
        resources={
            "warehouse": WarehouseResource(path=str(paths.warehouse)),
            "landing": LandingResource(landing_dir=str(paths.landing), contract_path=str(DEFAULT_CONTRACT_PATH)),
        },
        instance=instance,
        raise_on_error=False,
    )


def test_bad_files_through_the_asset_never_change_stored_partitions(tmp_path, instance):
    paths = AiosPaths(tmp_path / "home").ensure()
    write_landing(paths.landing, start=D1, days=2, per_day=25, seed=11, file_format="csv", bad_row_rate=0.0)
    assert _materialize(paths, instance, D1, D2).success  # one run for both days
    stored = _partition_hashes(paths)
    assert stored[("raw_applications", D1.isoformat())][0] == stored[("raw_applications", D2.isoformat())][0] == 25
    day2 = paths.landing / "applications" / D2.isoformat()

    # unreadable files on day 2 (each one's message is tested above): the run fails naming
    # the first, and nothing stored moves, on day 2 either
    ts = "2026-03-03T10:00:00"
    unreadable = [
        _parquet(day2 / "a_nested.parquet", _good_frame().with_columns(pl.Series("loan_amount", [[1.0], [2.0]]))),
        _write(day2 / "tabs.csv", _csv_text([_row(1, application_ts=ts)], delimiter="\t")),
        _write(day2 / "twice.csv", _csv_text([_row(1, application_ts=ts)], header=[*GOOD, "loan_amount"])),
        _write(day2 / "utf16.csv", _csv_text([_row(1, application_ts=ts)]).encode("utf-16")),
    ]
    result = _materialize(paths, instance, D2)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = user_error_message(failure.step_failure_data.error)
    assert "LandingFileError: cannot ingest " in message and "a_nested.parquet" in message, message
    assert "loan_amount" in message and "List(Float64)" in message
    assert _partition_hashes(paths) == stored
    for bad in unreadable:
        bad.unlink()

    # a readable file full of bad rows: quarantined on day 2 with reasons; day 1 untouched
    stored_day1_id = Warehouse(paths.warehouse).scalar(
        "select min(application_id) from raw_applications where landing_date = ?", [D1]
    )
    _write(day2 / "bad_rows.csv", _csv_text([
        _row(900, application_ts=ts, application_id=stored_day1_id),  # already stored under day 1
        _row(901, application_ts=ts), _row(901, application_ts=ts),  # twice in this file
        _row(902, application_ts=ts, loan_amount="-500"),
        _row(903, application_ts=ts, purpose=INJECTIONS[0]),
        _row(904, application_ts=ts, application_id=INJECTIONS[0]),  # free-text id: stored verbatim
        _row(905, application_ts=ts, region="<b>" * 400),
    ]))
    assert _materialize(paths, instance, D2).success
    after = _partition_hashes(paths)
    assert {k: v for k, v in after.items() if k[1] == D1.isoformat()} == {
        k: v for k, v in stored.items() if k[1] == D1.isoformat()
    }
    wh = Warehouse(paths.warehouse)
    reasons = dict(
        wh.query(
            "select source_row, reason from quarantined_applications where source_file like '%bad_rows.csv'"
        ).iter_rows()
    )
    assert f"already loaded from landing day {D1.isoformat()}" in reasons[1]
    assert "duplicate 'APP-901'" in reasons[3]
    assert "loan_amount: -500.0 outside valid range" in reasons[4]
    assert "purpose: ''; DROP TABLE applications; --' not among allowed values" in reasons[5]
    assert "region: value is 1200 characters long" in reasons[7]
    assert wh.scalar("select count(*) from raw_applications where application_id = ?", [INJECTIONS[0]]) == 1
    assert wh.scalar("select count(*) from raw_applications where landing_date = ?", [D1]) == 25
    assert wh.scalar("select count(*) - count(distinct application_id) from raw_applications") == 0
