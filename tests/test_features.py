"""Features come from the contract's roles; a day's features never depend on later data."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from aios_pipelines.features.build import MISSING_SUFFIX, build_features, feature_definition
from aios_pipelines.ingestion.contract import load_contract
from aios_pipelines.synthetic.generator import generate_applications


@pytest.fixture(scope="module")
def applications():
    days = [generate_applications(date(2026, 3, 2) + timedelta(days=i), 300, seed=11)[0] for i in range(3)]
    return pl.concat(days)


def test_definition_follows_roles(contract):
    definition = feature_definition(contract.applications)
    assert definition.categorical == ("purpose", "region", "channel")
    nullable_numeric = [c.name for c in contract.applications.columns if c.nullable and c.is_number]
    assert {f"{c}{MISSING_SUFFIX}" for c in nullable_numeric} <= set(definition.features)
    assert {"loan_to_income", "existing_debt_to_income", "payment_burden"} <= set(definition.features)
    assert definition.monotone["bureau_score"] == -1 and definition.monotone["payment_burden"] == 1
    assert "application_id" not in definition.features and "application_ts" not in definition.features


def test_values(contract, applications):
    features = build_features(applications, contract.applications)
    assert features.height == applications.height
    joined = features.join(applications, on="application_id", suffix="_raw")
    row = joined.filter(pl.col("bureau_score_raw").is_null()).row(0, named=True)
    assert row["bureau_score__missing"] == 1 and row["bureau_score"] is None
    row = joined.row(0, named=True)
    assert row["loan_to_income"] == pytest.approx(row["loan_amount_raw"] / row["annual_income_raw"])
    assert row["payment_burden"] == pytest.approx(
        (row["loan_amount_raw"] / row["term_months_raw"]) / (row["annual_income_raw"] / 12)
    )
    allowed = list(contract.applications.column("purpose").allowed_values)
    assert row["purpose"] == allowed.index(row["purpose_raw"])


def test_category_codes_do_not_depend_on_which_values_a_day_has(contract, applications):
    only_cars = applications.filter(pl.col("purpose") == "car").head(5)
    codes = build_features(only_cars, contract.applications)["purpose"].unique().to_list()
    assert codes == [list(contract.applications.column("purpose").allowed_values).index("car")]


def test_point_in_time_a_days_features_ignore_later_days(contract, applications):
    first_day = applications.filter(pl.col("application_ts").dt.date() == date(2026, 3, 2))
    alone = build_features(first_day, contract.applications)
    with_later = build_features(applications, contract.applications).filter(
        pl.col("application_date") == date(2026, 3, 2)
    )
    assert alone.equals(with_later)


def test_derived_features_need_their_inputs(tmp_path, contract):
    import yaml

    from aios_pipelines.settings import DEFAULT_CONTRACT_PATH

    raw = yaml.safe_load(DEFAULT_CONTRACT_PATH.read_text())
    for col in raw["applications"]["columns"]:
        if col.get("meaning") == "term_months":
            del col["meaning"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    definition = feature_definition(load_contract(path).applications)
    assert "payment_burden" not in definition.features
    assert "loan_to_income" in definition.features


def test_zero_income_gives_a_missing_ratio_not_infinity(contract, applications):
    zero = applications.head(1).with_columns(pl.lit(0.0).alias("annual_income"))
    features = build_features(zero, contract.applications)
    assert features["loan_to_income"].to_list() == [None]
