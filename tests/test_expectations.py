"""Expectation suites derived from the data contract, validated with Great Expectations."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import asdict
from datetime import date, datetime, timedelta, timezone
from itertools import cycle, islice
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from aios_pipelines.ingestion import expectations as exp
from aios_pipelines.ingestion.contract import DatasetSpec, load_contract
from aios_pipelines.ingestion.expectations import (
    ExpectationOutcome,
    SuiteResult,
    build_expectation_suite,
    validate_with_contract,
)

REPO = Path(__file__).resolve().parents[1]
CONTRACT_PATH = REPO / "assets" / "contract" / "credit_applications.yaml"
N_ROWS = 20
NULL_ROW = 3


@pytest.fixture(scope="module")
def contract():
    return load_contract(CONTRACT_PATH)


@pytest.fixture(scope="module")
def apps(contract) -> DatasetSpec:
    return contract.applications


def clean_columns(dataset: DatasetSpec, n: int = N_ROWS) -> dict[str, list]:
    """Column -> values satisfying every rule of ``dataset`` (ranges hit both closed ends,
    nullable columns hold one null)."""
    start = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)
    data: dict[str, list] = {}
    for col in dataset.columns:
        if col.role == "id":
            values: list = [f"{col.name}-{i:04d}" for i in range(n)]
        elif col.allowed_values is not None:
            values = list(islice(cycle(col.allowed_values), n))
        elif col.type == "timestamp":
            values = [start + timedelta(hours=i) for i in range(n)]
        elif col.type == "date":
            values = [date(2024, 3, 1) + timedelta(days=i) for i in range(n)]
        elif col.is_number:
            lo = col.min if col.min is not None else 0
            hi = col.max if col.max is not None else lo + n
            step = (hi - lo) / (n - 1)
            values = [lo + i * step for i in range(n)]
            values[-1] = hi  # exactly the closed upper bound
            if col.type == "integer":
                values = [int(round(v)) for v in values]
            else:
                values = [float(v) for v in values]
        else:
            values = [f"v{i}" for i in range(n)]
        if col.nullable:
            values[NULL_ROW] = None
        data[col.name] = values
    return data


def as_polars(data: dict[str, list]) -> pl.DataFrame:
    return pl.DataFrame(data, strict=False)


def by_key(result: SuiteResult) -> dict[tuple[str, str | None], ExpectationOutcome]:
    return {(o.expectation, o.column): o for o in result.outcomes}


# --------------------------------------------------------------------------- suite


def test_suite_is_derived_from_the_contract(apps):
    suite = build_expectation_suite(apps)
    assert suite.name == "applications_contract"
    found = {(e.expectation_type, e.column): e for e in suite.expectations}

    expected = set()
    for col in apps.columns:
        expected.add(("expect_column_to_exist", col.name))
        if not col.nullable:
            expected.add(("expect_column_values_to_not_be_null", col.name))
        if col.is_number and (col.min is not None or col.max is not None):
            expected.add(("expect_column_values_to_be_between", col.name))
        if col.allowed_values is not None:
            expected.add(("expect_column_values_to_be_in_set", col.name))
        if col.role == "id":
            expected.add(("expect_column_values_to_be_unique", col.name))
    assert set(found) == expected
    assert len(suite.expectations) == len(expected)

    # spot checks against the shipped contract
    assert ("expect_column_values_to_not_be_null", "bureau_score") not in found  # nullable
    between = found[("expect_column_values_to_be_between", "debt_to_income")]
    assert (between.min_value, between.max_value) == (0, 5)
    in_set = found[("expect_column_values_to_be_in_set", "term_months")]
    assert list(in_set.value_set) == [12, 24, 36, 48, 60]
    assert ("expect_column_values_to_be_unique", "application_id") in found
    assert not any(t == "expect_column_values_to_be_unique" and c != "application_id" for t, c in found)

    for e in suite.expectations:
        assert e.meta["contract_dataset"] == "applications"
        assert e.meta["contract_column"] == e.column
        assert e.column in e.meta["contract_rule"]
    assert found[("expect_column_values_to_be_between", "debt_to_income")].meta["contract_rule"] == (
        "debt_to_income: min: 0, max: 5"
    )
    assert found[("expect_column_values_to_not_be_null", "purpose")].meta["contract_rule"] == (
        "purpose: nullable: false"
    )


def test_custom_suite_name(apps):
    assert build_expectation_suite(apps, "nightly").name == "nightly"
    assert validate_with_contract(as_polars(clean_columns(apps)), apps, suite_name="nightly").suite_name == "nightly"


# --------------------------------------------------------------------------- clean data


def test_clean_frame_passes_every_expectation(apps):
    df = as_polars(clean_columns(apps))
    assert df.schema["application_ts"] == pl.Datetime("us", "UTC")
    assert df["bureau_score"].null_count() == 1  # nullable columns may hold nulls

    result = validate_with_contract(df, apps)

    assert result.failures() == []
    assert result.success is True
    assert result.evaluated == result.successful == len(build_expectation_suite(apps).expectations)
    assert all(o.success and o.error is None for o in result.outcomes)
    assert [o.column for o in result.outcomes if o.expectation == "expect_column_to_exist"] == apps.column_names


def test_pandas_and_polars_inputs_agree(apps):
    data = clean_columns(apps)
    data["region"][0] = "atlantis"
    from_polars = validate_with_contract(as_polars(data), apps)
    from_pandas = validate_with_contract(as_polars(data).to_pandas(), apps)
    assert asdict(from_polars) == asdict(from_pandas)
    assert [(o.expectation, o.column) for o in from_pandas.failures()] == [
        ("expect_column_values_to_be_in_set", "region")
    ]


# --------------------------------------------------------------------------- broken data


def _out_of_range(data):
    data["debt_to_income"][2] = 7.5
    return "expect_column_values_to_be_between", "debt_to_income", 1, [7.5]


def _below_min_integer(data):
    data["credit_history_months"][6] = -1
    return "expect_column_values_to_be_between", "credit_history_months", 1, [-1]


def _null_in_non_nullable(data):
    data["annual_income"][4] = None
    return "expect_column_values_to_not_be_null", "annual_income", 1, [None]


def _null_timestamp(data):
    data["application_ts"][0] = None
    return "expect_column_values_to_not_be_null", "application_ts", 1, [None]


def _category_not_allowed(data):
    data["purpose"][1] = "holiday"
    data["purpose"][7] = "holiday"
    return "expect_column_values_to_be_in_set", "purpose", 2, ["holiday"]


def _above_max_nullable_integer(data):
    data["bureau_score"][0] = 900  # column also holds a null: float64 once in pandas
    return "expect_column_values_to_be_between", "bureau_score", 1, [900]


def _term_not_allowed(data):
    data["term_months"][5] = 18
    return "expect_column_values_to_be_in_set", "term_months", 1, [18]


def _duplicated_id(data):
    data["application_id"][9] = data["application_id"][8]
    return "expect_column_values_to_be_unique", "application_id", 2, [data["application_id"][8]]


@pytest.mark.parametrize(
    "breaker",
    [
        _out_of_range,
        _below_min_integer,
        _null_in_non_nullable,
        _null_timestamp,
        _category_not_allowed,
        _above_max_nullable_integer,
        _term_not_allowed,
        _duplicated_id,
    ],
)
def test_a_broken_value_fails_exactly_the_matching_expectation(apps, breaker):
    data = clean_columns(apps)
    expectation, column, count, sample = breaker(data)

    result = validate_with_contract(as_polars(data), apps)

    assert result.success is False
    failures = result.failures()
    assert [(f.expectation, f.column) for f in failures] == [(expectation, column)]
    failure = failures[0]
    assert failure.unexpected_count == count
    # GX: share of all rows for not-null, of the non-null values for the other expectations
    if expectation == "expect_column_values_to_not_be_null":
        base = N_ROWS
    else:
        base = sum(v is not None for v in data[column])
    assert failure.unexpected_percent == pytest.approx(100 * count / base)
    assert failure.sample_unexpected == sample
    assert failure.error is None
    assert failure.rule.startswith(f"{column}: ")
    assert result.evaluated - result.successful == 1


def test_copy_on_write_changes_no_outcome_and_leaves_the_frame_alone(apps):
    """GX validates under pandas' Copy-on-Write (no whole-frame copy per expectation): every
    broken value above, all at once and one by one, gives the same outcomes as pandas'
    default copies, and a pandas frame handed in is not modified."""
    breakers = [_out_of_range, _below_min_integer, _null_in_non_nullable, _null_timestamp, _category_not_allowed,
                _above_max_nullable_integer, _term_not_allowed, _duplicated_id]
    frames = []
    for breaker in breakers:
        data = clean_columns(apps)
        breaker(data)
        frames.append(as_polars(data))
    everything = clean_columns(apps)
    for breaker in breakers:
        breaker(everything)
    frames.append(as_polars(everything))
    for frame in frames:
        as_pandas = frame.to_pandas()
        before = as_pandas.copy(deep=True)
        with_cow = validate_with_contract(as_pandas, apps)
        assert asdict(with_cow) == asdict(validate_with_contract(as_pandas, apps, copy_on_write=False))
        pd.testing.assert_frame_equal(as_pandas, before)
    assert len(with_cow.failures()) == len(breakers)  # each breaker fails its own expectation
    assert pd.get_option("mode.copy_on_write") is False  # switched on only while GX validates


def test_missing_column_fails_expect_column_to_exist(apps):
    df = as_polars(clean_columns(apps)).drop("channel")

    result = validate_with_contract(df, apps)

    assert result.success is False
    assert result.evaluated == len(build_expectation_suite(apps).expectations)
    failures = result.failures()
    assert {f.column for f in failures} == {"channel"}
    exist = by_key(result)[("expect_column_to_exist", "channel")]
    assert exist.success is False
    # the channel's value expectations cannot be evaluated: failed, with GX's reason
    others = [f for f in failures if f.expectation != "expect_column_to_exist"]
    assert {f.expectation for f in others} == {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_in_set",
    }
    for f in others:
        assert f.unexpected_count is None
        assert "channel" in f.error
    assert "error" in result.to_markdown()


# --------------------------------------------------------------------------- other contracts

OTHER_CONTRACT = """\
name: other_lender
version: "0.3"
applications:
  landing_folder: apps
  columns:
    - name: loan_ref
      type: string
      role: id
      nullable: false
    - name: submitted_at
      type: timestamp
      role: timestamp
      nullable: false
    - name: salary
      type: float
      role: amount
      meaning: annual_income
      nullable: true
      min: 0
    - name: months_on_book
      type: integer
      role: numeric
      nullable: false
      max: 120
    - name: segment
      type: string
      role: categorical
      nullable: false
      allowed_values: [retail, sme]
outcomes:
  landing_folder: perf
  performance_window_days: 90
  columns:
    - name: loan_ref
      type: string
      role: id
      nullable: false
      references: loan_ref
    - name: closed_on
      type: date
      role: timestamp
      nullable: false
    - name: bad
      type: integer
      role: target
      nullable: false
      allowed_values: [0, 1]
"""


def test_other_contract_gets_a_suite_over_its_own_columns(tmp_path, apps):
    path = tmp_path / "other.yaml"
    path.write_text(OTHER_CONTRACT, encoding="utf-8")
    other = load_contract(path)

    suite = build_expectation_suite(other.applications)
    columns = {e.column for e in suite.expectations}
    assert columns == {"loan_ref", "submitted_at", "salary", "months_on_book", "segment"}
    assert not columns & set(apps.column_names)
    kinds = {(e.expectation_type, e.column) for e in suite.expectations}
    assert ("expect_column_values_to_be_unique", "loan_ref") in kinds
    assert ("expect_column_values_to_not_be_null", "salary") not in kinds
    salary = next(e for e in suite.expectations if e.expectation_type.endswith("between") and e.column == "salary")
    assert (salary.min_value, salary.max_value) == (0, None)
    months = next(e for e in suite.expectations if e.expectation_type.endswith("between") and e.column == "months_on_book")
    assert (months.min_value, months.max_value) == (None, 120)

    # pandas input, this lender's own columns
    data = clean_columns(other.applications)
    assert validate_with_contract(pd.DataFrame(data), other.applications).success is True
    data["months_on_book"][0] = 121
    data["segment"][1] = "corporate"
    failed = validate_with_contract(pd.DataFrame(data), other.applications).failures()
    assert [(f.expectation, f.column, f.unexpected_count) for f in failed] == [
        ("expect_column_values_to_be_between", "months_on_book", 1),
        ("expect_column_values_to_be_in_set", "segment", 1),
    ]

    # the outcomes section (date timestamp, 0/1 target) works too
    outcomes = other.outcomes
    result = validate_with_contract(as_polars(clean_columns(outcomes)), outcomes)
    assert result.success is True
    assert {o.column for o in result.outcomes} == {"loan_ref", "closed_on", "bad"}


# --------------------------------------------------------------------------- output shape


def _assert_json_clean(value):
    """Only plain JSON types, and no NaN/inf."""
    if isinstance(value, dict):
        assert all(isinstance(k, str) for k in value)
        for v in value.values():
            _assert_json_clean(v)
    elif isinstance(value, list):
        for v in value:
            _assert_json_clean(v)
    else:
        assert value is None or type(value) in (str, int, float, bool), (value, type(value))
        if isinstance(value, float):
            assert math.isfinite(value)


def test_result_is_json_serialisable(apps):
    data = clean_columns(apps)
    data["application_ts"][0] = None  # NaT
    data["employment_length_years"][1] = 99.5  # numpy float
    data["delinquencies_2y"][2] = 51  # numpy int
    data["term_months"][3] = 7
    df = as_polars(data).drop("region")

    result = validate_with_contract(df, apps)

    payload = asdict(result)
    _assert_json_clean(payload)
    text = json.dumps(payload, allow_nan=False)
    assert json.loads(text) == payload
    assert json.loads(json.dumps(result.to_dict(), allow_nan=False)) == payload
    in_set = by_key(result)[("expect_column_values_to_be_in_set", "term_months")]
    assert in_set.sample_unexpected == [7]
    assert in_set.kwargs == {"column": "term_months", "value_set": [12, 24, 36, 48, 60]}
    between = by_key(result)[("expect_column_values_to_be_between", "employment_length_years")]
    assert between.kwargs == {"column": "employment_length_years", "min_value": 0, "max_value": 60}
    assert {(f.expectation, f.column) for f in result.failures()} >= {
        ("expect_column_values_to_not_be_null", "application_ts"),
        ("expect_column_values_to_be_between", "employment_length_years"),
        ("expect_column_values_to_be_between", "delinquencies_2y"),
        ("expect_column_to_exist", "region"),
    }


def test_markdown_table(apps):
    data = clean_columns(apps)
    data["region"][0] = "atlan|tis"
    result = validate_with_contract(as_polars(data), apps)

    md = result.to_markdown()
    lines = md.splitlines()
    assert lines[0] == f"**applications_contract**: {result.successful}/{result.evaluated} expectations passed"
    assert lines[2] == "| expectation | column | ok | unexpected | sample |"
    rows = lines[4:]
    assert len(rows) == result.evaluated
    assert all(row.count(" | ") == 4 for row in rows)  # the pipe in the value is escaped
    (bad,) = [r for r in rows if "❌" in r]
    assert bad == "| column_values_to_be_in_set | region | ❌ | 1 (5.00%) | atlan\\|tis |"

    failures_md = result.to_markdown(failures_only=True).splitlines()
    assert failures_md[4:] == [bad]


# --------------------------------------------------------------------------- edge cases


def test_empty_frame(apps):
    empty_polars = as_polars(clean_columns(apps)).head(0)
    assert empty_polars.height == 0

    for frame in (empty_polars, empty_polars.to_pandas()):
        result = validate_with_contract(frame, apps)
        assert result.success is True
        assert result.evaluated == result.successful > 0
        for o in result.outcomes:
            assert o.sample_unexpected == []
            if o.expectation != "expect_column_to_exist":
                assert o.unexpected_count == 0
                assert o.unexpected_percent is None
        json.dumps(asdict(result), allow_nan=False)

    # no columns at all: every column is reported missing, nothing raises
    result = validate_with_contract(pd.DataFrame(), apps)
    assert result.success is False
    assert {o.column for o in result.failures() if o.expectation == "expect_column_to_exist"} == set(
        apps.column_names
    )


def test_repeated_validations_do_not_collide_or_leak(apps):
    df = as_polars(clean_columns(apps))
    ctx = exp._get_context()
    before = len(ctx.data_sources.all())
    results = [validate_with_contract(df, apps) for _ in range(3)]
    assert all(r.success for r in results)
    assert exp._get_context() is ctx  # one context per process
    assert len(ctx.data_sources.all()) == before


def test_rejects_non_frames(apps):
    with pytest.raises(TypeError, match="DataFrame"):
        validate_with_contract([{"application_id": "a"}], apps)


def test_analytics_disabled_and_no_network():
    """In a fresh interpreter whose environment turns analytics ON, importing the module
    forces GX_ANALYTICS_ENABLED=false, and a validation opens no socket."""
    script = textwrap.dedent(
        f"""
        import os, socket
        def _no_network(*args, **kwargs):
            raise AssertionError(f"network access attempted: {{args}}")
        socket.socket.connect = _no_network
        socket.socket.connect_ex = _no_network
        socket.create_connection = _no_network

        import aios_pipelines.ingestion.expectations as exp
        print("ENV=" + os.environ["GX_ANALYTICS_ENABLED"])
        from aios_pipelines.ingestion.contract import load_contract
        import pandas as pd
        ds = load_contract({str(CONTRACT_PATH)!r}).outcomes
        frame = pd.DataFrame({{"application_id": ["a", "b"],
                              "outcome_date": pd.to_datetime(["2024-01-01", "2024-01-02"]),
                              "defaulted": [0, 1]}})
        print("SUCCESS=" + str(exp.validate_with_contract(frame, ds).success))
        """
    )
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "true"}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "ENV=false" in proc.stdout.splitlines()
    assert "SUCCESS=True" in proc.stdout.splitlines()


def test_analytics_env_is_false_in_this_process():
    assert os.environ["GX_ANALYTICS_ENABLED"] == "false"
