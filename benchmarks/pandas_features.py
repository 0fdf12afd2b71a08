"""The baseline for the features benchmark: ``build_features`` written in plain pandas.

It reads the same contract through ``feature_definition`` and produces the same columns in
the same order as ``aios_pipelines.features.build.build_features``: id, timestamp,
application date, then per feature the float value, the ``__missing`` indicator (int8), the
category code (position in ``allowed_values``, nullable Int32, null for a missing or unknown
value) and the derived ratios (null where the denominator is not positive). This is the
vectorised pandas a data scientist would write (no ``apply``, no Python loops over rows).

One representational difference: pandas has no date dtype short of Python objects, so
``application_date`` is the timestamp floored to midnight (``datetime64``), the same
information as polars' ``Date``; :func:`assert_same_features` compares it as such.
"""

from __future__ import annotations

import pandas as pd
import polars as pl
from polars.testing import assert_frame_equal

from aios_pipelines.features.build import (
    APPLICATION_DATE,
    DERIVED_FEATURES,
    MISSING_SUFFIX,
    feature_definition,
)
from aios_pipelines.ingestion.contract import DatasetSpec


def _safe_ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return (numerator / denominator).where(denominator > 0)


def _as_float(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].astype("float64")


def _derived(name: str, frame: pd.DataFrame, dataset: DatasetSpec, inputs: tuple[str, ...]) -> pd.Series:
    col = {meaning: _as_float(frame, dataset.by_meaning(meaning).name) for meaning in inputs}  # type: ignore[union-attr]
    if name == "loan_to_income":
        return _safe_ratio(col["loan_amount"], col["annual_income"])
    if name == "existing_debt_to_income":
        return _safe_ratio(col["existing_debt"], col["annual_income"])
    if name == "payment_burden":
        monthly_payment = _safe_ratio(col["loan_amount"], col["term_months"])
        return _safe_ratio(monthly_payment, col["annual_income"] / 12.0)
    raise ValueError(f"no pandas expression for derived feature {name}")


def _category_codes(values: pd.Series, allowed: list[str]) -> pd.Series:
    if values.dtype != object:
        values = values.astype("string")
    codes = pd.Categorical(values, categories=allowed).codes.astype("int32")
    return pd.Series(pd.arrays.IntegerArray(codes, codes < 0), index=values.index)


def build_features_pandas(applications: pd.DataFrame, dataset: DatasetSpec) -> pd.DataFrame:
    """The pandas twin of ``build_features``: same columns, same order, same values."""
    definition = feature_definition(dataset)
    ts = dataset.timestamp_column
    timestamps = applications[ts.name]
    if ts.type != "timestamp":
        timestamps = pd.to_datetime(timestamps)
    columns: dict[str, pd.Series] = {
        definition.id_column: applications[definition.id_column],
        ts.name: applications[ts.name],
        APPLICATION_DATE: timestamps.dt.normalize(),
    }
    derived = {d.name: d for d in DERIVED_FEATURES}
    for name in definition.features:
        if name in derived:
            columns[name] = _derived(name, applications, dataset, derived[name].inputs)
        elif name.endswith(MISSING_SUFFIX):
            columns[name] = applications[definition.source_columns[name]].isna().astype("int8")
        elif name in definition.categorical:
            allowed = [str(v) for v in dataset.column(name).allowed_values or ()]
            columns[name] = _category_codes(applications[name], allowed)
        else:
            columns[name] = _as_float(applications, name)
    return pd.DataFrame(columns, index=applications.index)


def assert_same_features(ours: pl.DataFrame, baseline: pd.DataFrame) -> None:
    """Raise AssertionError unless the pandas output carries the same columns and values
    as polars' (floats to 1e-12 relative; NaN in pandas counts as null)."""
    if list(ours.columns) != list(baseline.columns):
        raise AssertionError(f"columns differ: {list(ours.columns)} != {list(baseline.columns)}")
    converted = pl.from_pandas(baseline.reset_index(drop=True), nan_to_null=True)
    expected = ours.with_columns(pl.col(APPLICATION_DATE).cast(pl.Datetime("us")))
    converted = converted.with_columns(pl.col(APPLICATION_DATE).cast(pl.Datetime("us")))
    for name, dtype in expected.schema.items():
        if dtype.is_numeric():
            expected = expected.with_columns(pl.col(name).cast(pl.Float64))
            converted = converted.with_columns(pl.col(name).cast(pl.Float64))
    assert_frame_equal(expected, converted, check_dtypes=False, rel_tol=1e-12, abs_tol=0.0)
    # integer features stay integer in pandas (int8 indicators, nullable Int32 codes)
    for name, dtype in ours.schema.items():
        if dtype.is_integer() and not pd.api.types.is_integer_dtype(baseline[name].dtype):
            raise AssertionError(f"{name}: polars gives {dtype}, pandas {baseline[name].dtype}")
