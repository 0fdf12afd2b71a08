"""Model features derived from the data contract, as polars expressions.

Feature names follow the contract's column names: a numeric or amount column becomes a
feature of the same name, a nullable one also gets ``<name>__missing``, a categorical one
becomes a stable integer code (its position in ``allowed_values``, so codes never depend on
which values a day happens to contain). Derived credit ratios appear only when the contract
tags their inputs with a ``meaning``.

Point-in-time: every feature of a row is computed from that row's own values as they were at
its application timestamp; nothing aggregates over other rows or later data, so a day's
features never change when later days arrive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from aios_pipelines.ingestion.contract import DatasetSpec

MISSING_SUFFIX = "__missing"
# The platform's own key names: whatever a contract calls its id and timestamp, every table
# from the features on uses these, so the model, policy and review planes need no contract.
APPLICATION_ID = "application_id"
APPLICATION_TS = "application_ts"
APPLICATION_DATE = "application_date"
RISK_SIGN = {"increasing": 1, "decreasing": -1}


@dataclass(frozen=True)
class DerivedFeature:
    name: str
    inputs: tuple[str, ...]  # meanings
    description: str
    risk_direction: str | None


DERIVED_FEATURES = (
    DerivedFeature(
        "loan_to_income", ("loan_amount", "annual_income"), "Amount requested divided by annual income.", "increasing"
    ),
    DerivedFeature(
        "existing_debt_to_income",
        ("existing_debt", "annual_income"),
        "Outstanding debt divided by annual income.",
        "increasing",
    ),
    DerivedFeature(
        "payment_burden",
        ("loan_amount", "term_months", "annual_income"),
        "Monthly instalment of the new loan (straight-line) divided by monthly income.",
        "increasing",
    ),
)


@dataclass(frozen=True)
class FeatureDefinition:
    """Which features exist for a contract, and what the model needs to know about them."""

    id_column: str
    timestamp_column: str
    features: tuple[str, ...]
    categorical: tuple[str, ...]
    monotone: dict[str, int] = field(default_factory=dict)
    source_columns: dict[str, str] = field(default_factory=dict)  # feature -> contract column (or itself)
    descriptions: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "features": list(self.features),
            "categorical": list(self.categorical),
            "monotone": dict(self.monotone),
            "source_columns": dict(self.source_columns),
        }


def feature_definition(dataset: DatasetSpec) -> FeatureDefinition:
    features: list[str] = []
    categorical: list[str] = []
    monotone: dict[str, int] = {}
    sources: dict[str, str] = {}
    descriptions: dict[str, str] = {}
    for col in dataset.columns:
        if col.role in ("numeric", "amount"):
            features.append(col.name)
            sources[col.name] = col.name
            descriptions[col.name] = col.description
            if col.risk_direction:
                monotone[col.name] = RISK_SIGN[col.risk_direction]
            if col.nullable:
                indicator = f"{col.name}{MISSING_SUFFIX}"
                features.append(indicator)
                sources[indicator] = col.name
                descriptions[indicator] = f"{col.name} is missing"
        elif col.role == "categorical":
            features.append(col.name)
            categorical.append(col.name)
            sources[col.name] = col.name
            descriptions[col.name] = col.description
    for derived in DERIVED_FEATURES:
        if all(dataset.by_meaning(m) is not None for m in derived.inputs) and derived.name not in features:
            features.append(derived.name)
            sources[derived.name] = derived.name
            descriptions[derived.name] = derived.description
            if derived.risk_direction:
                monotone[derived.name] = RISK_SIGN[derived.risk_direction]
    return FeatureDefinition(
        id_column=dataset.id_column.name,
        timestamp_column=dataset.timestamp_column.name,
        features=tuple(features),
        categorical=tuple(categorical),
        monotone=monotone,
        source_columns=sources,
        descriptions=descriptions,
    )


def _safe_ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    return pl.when(denominator > 0).then(numerator / denominator).otherwise(None)


def _derived_expr(derived: DerivedFeature, dataset: DatasetSpec) -> pl.Expr:
    col = {m: pl.col(dataset.by_meaning(m).name).cast(pl.Float64) for m in derived.inputs}  # type: ignore[union-attr]
    if derived.name == "loan_to_income":
        return _safe_ratio(col["loan_amount"], col["annual_income"])
    if derived.name == "existing_debt_to_income":
        return _safe_ratio(col["existing_debt"], col["annual_income"])
    if derived.name == "payment_burden":
        monthly_payment = _safe_ratio(col["loan_amount"], col["term_months"])
        return _safe_ratio(monthly_payment, col["annual_income"] / 12.0)
    raise ValueError(f"no expression for derived feature {derived.name}")


def build_features(applications: pl.DataFrame, dataset: DatasetSpec) -> pl.DataFrame:
    """One row per application: ``application_id``, ``application_ts``, ``application_date``,
    then the features in order."""
    definition = feature_definition(dataset)
    ts = dataset.timestamp_column
    ts_expr = pl.col(ts.name)
    date_expr = ts_expr.dt.date() if ts.type == "timestamp" else ts_expr.cast(pl.Date)
    exprs: list[pl.Expr] = [
        pl.col(definition.id_column).cast(pl.String).alias(APPLICATION_ID),
        ts_expr.alias(APPLICATION_TS),
        date_expr.alias(APPLICATION_DATE),
    ]
    derived_by_name = {d.name: d for d in DERIVED_FEATURES}
    for name in definition.features:
        if name in derived_by_name:
            exprs.append(_derived_expr(derived_by_name[name], dataset).alias(name))
        elif name.endswith(MISSING_SUFFIX):
            exprs.append(pl.col(definition.source_columns[name]).is_null().cast(pl.Int8).alias(name))
        elif name in definition.categorical:
            allowed = [str(v) for v in dataset.column(name).allowed_values or ()]
            mapping = pl.DataFrame({"__value": allowed, "__code": list(range(len(allowed)))})
            code = pl.col(name).cast(pl.String).replace_strict(
                mapping["__value"], mapping["__code"], default=None, return_dtype=pl.Int32
            )
            exprs.append(code.alias(name))
        else:
            exprs.append(pl.col(name).cast(pl.Float64).alias(name))
    return applications.select(exprs)
