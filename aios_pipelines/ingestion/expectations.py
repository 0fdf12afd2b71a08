"""Great Expectations suites derived from the data contract, and a JSON-friendly result.

Nothing here names a column: every expectation comes from a rule declared in the contract
(see ``assets/contract/credit_applications.yaml``), so a lender with its own contract gets a
suite over its own columns. The data validated is the *loaded* (typed) table.

Derived expectations, per contract column (in contract order):

* ``expect_column_to_exist``                 - the column is declared
* ``expect_column_values_to_not_be_null``    - ``nullable: false``
* ``expect_column_values_to_be_between``     - ``min``/``max`` on an integer or float column
* ``expect_column_values_to_be_in_set``      - ``allowed_values``
* ``expect_column_values_to_be_unique``      - ``role: id``

Each expectation's ``meta`` names the contract rule it enforces. Null values are not counted
against the range, set and uniqueness expectations; only the not-null expectation counts them.
Accordingly (GX semantics) ``unexpected_percent`` is a share of all rows for not-null and a
share of the non-null values for the others; it is None on an empty frame.

Great Expectations runs in a single in-memory (ephemeral) context per process, with usage
analytics switched off before the library is imported. Every validation registers a fresh,
uniquely named pandas datasource and removes it afterwards, so repeated calls never collide.
"""

from __future__ import annotations

import os

# Set before great_expectations is imported (below): GX must never send usage analytics.
# Nothing in this module touches the network at run time.
os.environ["GX_ANALYTICS_ENABLED"] = "false"

import datetime as _dt  # noqa: E402
import decimal  # noqa: E402
import itertools  # noqa: E402
import math  # noqa: E402
import threading  # noqa: E402
import uuid  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.execution_engine import pandas_execution_engine as _gx_pandas_engine  # noqa: E402

from aios_pipelines.ingestion.contract import ColumnSpec, DatasetSpec  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    import polars

__all__ = [
    "ExpectationOutcome",
    "SuiteResult",
    "build_expectation_suite",
    "validate_with_contract",
]

SAMPLE_SIZE = 5
# GX is asked for more unexpected values than we keep so that the sample can hold up to
# SAMPLE_SIZE *distinct* values (a duplicated id otherwise shows up as [x, x]).
_GX_PARTIAL_COUNT = 20
_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": _GX_PARTIAL_COUNT}

# Order of expectations within one column, used to report outcomes in a stable order
# (GX returns results in an order of its own, e.g. errored expectations first).
_TYPE_ORDER = {
    "expect_column_to_exist": 0,
    "expect_column_values_to_not_be_null": 1,
    "expect_column_values_to_be_between": 2,
    "expect_column_values_to_be_in_set": 3,
    "expect_column_values_to_be_unique": 4,
}

_lock = threading.RLock()
_context: Any = None
_counter = itertools.count()


def _get_context() -> Any:
    """The process-wide ephemeral GX context (created once; progress bars off)."""
    global _context
    with _lock:
        if _context is None:
            ctx = gx.get_context(mode="ephemeral")
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            _context = ctx
        return _context


# --------------------------------------------------------------------------- suite building


def _fmt_number(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _meta(dataset: DatasetSpec, col: ColumnSpec, rule: str) -> dict[str, str]:
    return {
        "contract_dataset": dataset.name,
        "contract_column": col.name,
        "contract_rule": rule,
    }


def build_expectation_suite(dataset: DatasetSpec, suite_name: str | None = None) -> gx.ExpectationSuite:
    """An expectation suite over ``dataset``'s columns, derived only from the contract.

    The suite is not saved to any store; it is an in-memory object ready for validation.
    """
    _get_context()  # GX 1.x: an ExpectationSuite can only be built with an active context
    suite = gx.ExpectationSuite(name=suite_name or f"{dataset.name}_contract")
    for col in dataset.columns:
        suite.add_expectation(
            gxe.ExpectColumnToExist(
                column=col.name,
                meta=_meta(dataset, col, f"{col.name}: declared in contract ({col.type}, role {col.role})"),
            )
        )
        if not col.nullable:
            suite.add_expectation(
                gxe.ExpectColumnValuesToNotBeNull(
                    column=col.name, meta=_meta(dataset, col, f"{col.name}: nullable: false")
                )
            )
        if col.is_number and (col.min is not None or col.max is not None):
            bounds = []
            if col.min is not None:
                bounds.append(f"min: {_fmt_number(col.min)}")
            if col.max is not None:
                bounds.append(f"max: {_fmt_number(col.max)}")
            suite.add_expectation(
                gxe.ExpectColumnValuesToBeBetween(
                    column=col.name,
                    min_value=col.min,
                    max_value=col.max,
                    meta=_meta(dataset, col, f"{col.name}: {', '.join(bounds)}"),
                )
            )
        if col.allowed_values is not None:
            suite.add_expectation(
                gxe.ExpectColumnValuesToBeInSet(
                    column=col.name,
                    value_set=list(col.allowed_values),
                    meta=_meta(
                        dataset,
                        col,
                        f"{col.name}: allowed_values: [{', '.join(str(v) for v in col.allowed_values)}]",
                    ),
                )
            )
        if col.role == "id":
            suite.add_expectation(
                gxe.ExpectColumnValuesToBeUnique(
                    column=col.name, meta=_meta(dataset, col, f"{col.name}: role: id (unique)")
                )
            )
    return suite


# --------------------------------------------------------------------------- results


def _json_safe(value: Any) -> Any:
    """Turn GX/numpy/pandas values into plain JSON values (NaN/NaT become None)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, decimal.Decimal):
        return _json_safe(float(value))
    if value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, _dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (pd.Timedelta, _dt.timedelta, np.timedelta64)):
        return str(pd.Timedelta(value))
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).isoformat()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "to_json_dict"):
        return _json_safe(value.to_json_dict())
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _sample(values: list[Any] | None) -> list[Any]:
    """Up to SAMPLE_SIZE distinct, JSON-safe unexpected values, in order of appearance."""
    out: list[Any] = []
    seen: set[str] = set()
    for raw in values or []:
        value = _json_safe(raw)
        key = repr(value)
        if key in seen:
            continue
        seen.add(key)
        out.append(value)
        if len(out) >= SAMPLE_SIZE:
            break
    return out


def _error_message(exception_info: Any) -> str | None:
    """GX 1.x reports a flat dict, or (when a metric fails) a dict of such dicts per metric."""
    if not isinstance(exception_info, dict):
        return None
    if "raised_exception" in exception_info:
        infos = [exception_info]
    else:
        infos = [v for v in exception_info.values() if isinstance(v, dict)]
    messages = []
    for info in infos:
        if info.get("raised_exception"):
            message = str(info.get("exception_message") or "exception raised")
            if message not in messages:
                messages.append(message)
    return "; ".join(messages) or None


@dataclass
class ExpectationOutcome:
    """One expectation's result, JSON-friendly (``dataclasses.asdict`` + ``json.dumps``).

    ``rule`` is the contract rule the expectation enforces (from the expectation's meta);
    ``error`` holds GX's exception message when the expectation could not be evaluated
    (e.g. the column is missing), in which case ``success`` is False and counts are None.
    """

    expectation: str
    column: str | None
    success: bool
    unexpected_count: int | None
    unexpected_percent: float | None
    sample_unexpected: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    rule: str = ""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SuiteResult:
    suite_name: str
    success: bool
    evaluated: int
    successful: int
    outcomes: list[ExpectationOutcome]

    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self, failures_only: bool = False) -> str:
        """A compact markdown table for Dagster metadata: a summary line, then one row per
        expectation (only the failed ones with ``failures_only=True``)."""
        lines = [
            f"**{_md_cell(self.suite_name)}**: {self.successful}/{self.evaluated} expectations passed",
            "",
            "| expectation | column | ok | unexpected | sample |",
            "|---|---|---|---|---|",
        ]
        for o in self.failures() if failures_only else self.outcomes:
            if o.error is not None:
                unexpected = "error"
                sample = _md_cell(o.error, limit=80)
            else:
                if o.unexpected_count is None:
                    unexpected = ""
                elif o.unexpected_percent is None:
                    unexpected = str(o.unexpected_count)
                else:
                    unexpected = f"{o.unexpected_count} ({o.unexpected_percent:.2f}%)"
                sample = _md_cell(", ".join("null" if v is None else str(v) for v in o.sample_unexpected))
            name = o.expectation.removeprefix("expect_")
            lines.append(
                f"| {name} | {_md_cell(o.column or '')} | {'✅' if o.success else '❌'} | {unexpected} | {sample} |"
            )
        return "\n".join(lines)


def _md_cell(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _outcome(result: Any, integer_columns: frozenset[str]) -> ExpectationOutcome:
    config = result.expectation_config
    kwargs = {k: v for k, v in dict(config.kwargs).items() if k not in ("batch_id", "result_format")}
    details = result.result or {}
    error = _error_message(result.exception_info)
    count = details.get("unexpected_count")
    percent = details.get("unexpected_percent")
    meta = config.meta or {}
    sample = _sample(details.get("partial_unexpected_list"))
    if kwargs.get("column") in integer_columns:
        # an integer column with nulls reaches pandas as float64: report 900, not 900.0
        sample = [int(v) if isinstance(v, float) and v.is_integer() else v for v in sample]
    return ExpectationOutcome(
        expectation=str(config.type),
        column=kwargs.get("column"),
        success=bool(result.success),
        unexpected_count=None if count is None else int(count),
        unexpected_percent=_json_safe(percent),
        sample_unexpected=sample,
        kwargs=_json_safe(kwargs),
        rule=str(meta.get("contract_rule", "")),
        error=error,
    )


# --------------------------------------------------------------------------- validation


def _to_pandas(df: Any) -> pd.DataFrame:
    if isinstance(df, pd.DataFrame):
        return df
    if hasattr(df, "to_pandas"):  # polars.DataFrame (and pyarrow.Table)
        converted = df.to_pandas()
        if isinstance(converted, pd.DataFrame):
            return converted
    raise TypeError(f"expected a polars or pandas DataFrame, got {type(df).__name__}")


def validate_with_contract(
    df: "polars.DataFrame | pd.DataFrame",
    dataset: DatasetSpec,
    suite_name: str | None = None,
    *,
    copy_on_write: bool = True,
) -> SuiteResult:
    """Validate the loaded (typed) table against the suite derived from ``dataset``.

    Accepts a polars or pandas DataFrame; a frame with 0 rows is fine. Outcomes are listed
    in contract column order (then existence, not-null, range, set, unique).
    ``copy_on_write=False`` validates with pandas' default copy semantics (same outcomes,
    slower: kept for the test that compares the two).
    """
    frame = _to_pandas(df)
    suite = build_expectation_suite(dataset, suite_name)
    with _lock:
        ctx = _get_context()
        # GX fingerprints every pandas batch under 1 GB (md5 of hash_pandas_object: ~40 % of
        # the validation of a million rows) for a batch marker nothing here reads. There is
        # no setting for it; the module's threshold is the switch (docs/FIELD-NOTES.md).
        fingerprint_threshold = _gx_pandas_engine.HASH_THRESHOLD
        _gx_pandas_engine.HASH_THRESHOLD = 0
        source_name = f"aios_{dataset.name}_{next(_counter)}_{uuid.uuid4().hex[:8]}"
        source = ctx.data_sources.add_pandas(name=source_name)
        try:
            asset = source.add_dataframe_asset(name=dataset.name)
            batch_definition = asset.add_batch_definition_whole_dataframe(name="whole_dataframe")
            batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
            # Every column expectation drops the column's nulls with df[df[col].notnull()]; on a
            # column without nulls pandas answers an all-True mask with a deep copy of the whole
            # frame unless Copy-on-Write is on (then the copy is lazy and never made): 40 % of
            # the validation of a million rows. GX only reads the frame (docs/FIELD-NOTES.md).
            with pd.option_context("mode.copy_on_write", copy_on_write):
                validation = batch.validate(suite, result_format=_RESULT_FORMAT)
        finally:
            ctx.data_sources.delete(name=source_name)
            _gx_pandas_engine.HASH_THRESHOLD = fingerprint_threshold

    positions = {name: i for i, name in enumerate(dataset.column_names)}
    integer_columns = frozenset(c.name for c in dataset.columns if c.type == "integer")
    outcomes = sorted(
        (_outcome(r, integer_columns) for r in validation.results),
        key=lambda o: (
            positions.get(o.column or "", len(positions)),
            _TYPE_ORDER.get(o.expectation, len(_TYPE_ORDER)),
        ),
    )
    successful = sum(1 for o in outcomes if o.success)
    return SuiteResult(
        suite_name=suite.name,
        success=bool(validation.success) and successful == len(outcomes),
        evaluated=len(outcomes),
        successful=successful,
        outcomes=outcomes,
    )
