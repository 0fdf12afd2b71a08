"""The online contract check against the nightly one: an application is accepted online exactly
when ``validate_rows`` accepts it, as the same typed row; a refused one names every bad field.

``validate_application`` types a plainly valid application directly and sends anything else
through ``validate_rows``; here both routes are compared with ``validate_rows`` alone
(``fast=False``) on generated applications, good and bad, and on hand-made edge cases."""

from __future__ import annotations

import math
from datetime import date, datetime, timezone

import pytest

from aios_pipelines.decisioning.online import (
    ContractViolation,
    _plainly_valid_row,
    contract_json_schema,
    validate_application,
)
from aios_pipelines.synthetic.generator import generate_applications

NOW = datetime(2026, 6, 2, 12, 0, tzinfo=timezone.utc)
DAY = date(2026, 6, 1)


def as_json(row: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, (date, datetime)) else v) for k, v in row.items()}


def outcome(payload, dataset, fast: bool):
    try:
        return "loaded", validate_application(payload, dataset, now=NOW, fast=fast)
    except ContractViolation as exc:
        return "refused", [p.as_dict() for p in exc.problems]


def same(payload, dataset) -> str:
    fast_kind, fast_value = outcome(payload, dataset, fast=True)
    slow_kind, slow_value = outcome(payload, dataset, fast=False)
    assert fast_kind == slow_kind, (payload, fast_value, slow_value)
    if fast_kind == "loaded":
        assert fast_value.schema == slow_value.schema, payload
        assert fast_value.equals(slow_value), (payload, fast_value.to_dicts(), slow_value.to_dicts())
    else:
        assert fast_value == slow_value, payload
    return fast_kind


def test_generated_applications_good_and_bad_get_the_same_answer(contract):
    dataset = contract.applications
    applications, _ = generate_applications(DAY, 600, seed=9, bad_row_rate=0.25)
    payloads = [as_json(row) for row in applications.to_dicts()]
    kinds = [same(payload, dataset) for payload in payloads]
    assert kinds.count("loaded") > 300 and kinds.count("refused") > 60
    # the direct typing is what serves a well-formed application (validate_rows only the rest)
    direct = sum(_plainly_valid_row(p, dataset, NOW.replace(tzinfo=None)) is not None for p in payloads)
    assert direct == kinds.count("loaded")


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"term_months": 36.0},  # an integral float for an integer column
        {"term_months": 36.5},
        {"annual_income": 50_000},  # an int for a float column
        {"annual_income": -1.0},
        {"annual_income": math.inf},
        {"annual_income": True},
        {"annual_income": "50000"},  # text that is a number: validate_rows reads it
        {"annual_income": "5e4"},
        {"credit_history_months": 2**60},
        {"bureau_score": None},  # nullable
        {"loan_amount": None},  # required
        {"purpose": " car"},
        {"purpose": "car "},
        {"purpose": ""},
        {"purpose": "crypto"},
        {"purpose": 3},
        {"application_id": 12345},
        {"application_ts": "2026-06-01T09:30:00Z"},
        {"application_ts": "2026-06-01T09:30:00+00:00"},
        {"application_ts": "2026-06-01T09:30:00.25"},
        {"application_ts": "2026-06-01T09:30:00.1234567"},
        {"application_ts": "2026-06-01T09:30:00+02:00"},
        {"application_ts": "2026-06-01 09:30:00"},
        {"application_ts": "2026-06-01"},
        {"application_ts": "2026-02-30T09:30:00"},
        {"application_ts": "2026-06-03T09:30:00"},  # after NOW: in the future
        {"application_ts": 1780000000},
        {"nickname": "Al"},
    ],
)
def test_edge_cases_get_the_same_answer(contract, change):
    dataset = contract.applications
    base = as_json(generate_applications(DAY, 1, seed=3)[0].to_dicts()[0])
    same({**base, **change}, dataset)


def test_refusals_name_every_bad_field(contract):
    dataset = contract.applications
    base = as_json(generate_applications(DAY, 1, seed=3)[0].to_dicts()[0])
    bad = {**base, "annual_income": "lots", "purpose": "crypto", "delinquencies_2y": -1, "extra": 1}
    del bad["loan_amount"]
    with pytest.raises(ContractViolation) as excinfo:
        validate_application(bad, dataset, now=NOW)
    fields = [p.field for p in excinfo.value.problems]
    assert fields == ["extra", "annual_income", "delinquencies_2y", "loan_amount", "purpose"]
    with pytest.raises(ContractViolation, match="expected a JSON object"):
        validate_application(["not", "an", "object"], dataset, now=NOW)


def test_the_openapi_schema_follows_the_contract(contract):
    schema = contract_json_schema(contract.applications)
    assert schema["additionalProperties"] is False
    assert "bureau_score" not in schema["required"] and "loan_amount" in schema["required"]
    assert schema["properties"]["purpose"]["enum"][0] == "debt_consolidation"
    assert schema["properties"]["loan_amount"]["minimum"] == 500
    assert schema["properties"]["bureau_score"]["anyOf"][1] == {"type": "null"}
