"""The decision policy: loading, validation, boundaries, hard rules, pause, fallback, vectorised equality."""

from __future__ import annotations

import copy
import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

from aios_pipelines.ingestion.contract import load_contract
from aios_pipelines.policy.evaluate import (
    DECISION_COLUMNS,
    PolicyDecision,
    condition_expr,
    condition_holds,
    evaluate,
    evaluate_frame,
    fallback_pd,
    fallback_pd_row,
    fallback_points,
    fallback_points_row,
    score_band,
)
from aios_pipelines.policy.policy import (
    DEFAULT_POLICY_PATH,
    DecisionPolicy,
    PolicyError,
    load_policy,
    parse_condition,
    parse_policy,
    validate_policy_columns,
)
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH


def below(x: float) -> float:
    return math.nextafter(x, -math.inf)


def above(x: float) -> float:
    return math.nextafter(x, math.inf)


# An applicant no hard rule touches, with a moderate amount.
BASE_APP: dict[str, Any] = {
    "application_id": "a-1",
    "annual_income": 60000.0,
    "employment_length_years": 5.0,
    "existing_debt": 5000.0,
    "debt_to_income": 0.25,
    "credit_history_months": 120,
    "delinquencies_2y": 0,
    "bureau_score": 720,
    "credit_utilisation": 0.3,
    "loan_amount": 10000.0,
    "purpose": "car",
    "term_months": 36,
    "region": "north",
    "channel": "web",
}


def app(**overrides: Any) -> dict[str, Any]:
    out = dict(BASE_APP)
    out.update(overrides)
    return out


@pytest.fixture(scope="module")
def policy() -> DecisionPolicy:
    return load_policy(DEFAULT_POLICY_PATH)


@pytest.fixture(scope="module")
def raw_policy() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))


def write_policy(tmp_path: Path, raw: Any, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the shipped policy


def test_shipped_policy_loads_with_its_declared_thresholds(policy: DecisionPolicy) -> None:
    assert policy.version == "2026.11.1"
    assert policy.name == "standard_consumer_credit"
    assert policy.amount_column == "loan_amount"
    assert policy.auto_approve.max_pd == 0.04 and policy.auto_approve.max_amount == 25000
    assert policy.auto_decline.min_pd == 0.35
    assert policy.four_eyes.min_amount == 50000
    assert [b.label for b in policy.score_bands] == ["A", "B", "C", "D", "E"]
    assert [r.id for r in policy.hard_rules] == [
        "min_income", "max_delinquencies", "loan_to_income", "max_debt_to_income", "min_bureau_score",
        "thin_file_large_loan",
    ]
    assert policy.fallback.allow_auto_approve is False
    assert policy.reasons.max_reasons == 4
    assert set(policy.reasons.required_for) == {"auto_decline", "review"}
    assert (policy.review.default_priority, policy.review.default_due_hours) == ("normal", 48)


def test_fingerprint_is_the_sha256_of_the_file_text(tmp_path: Path) -> None:
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    assert load_policy(DEFAULT_POLICY_PATH).fingerprint == hashlib.sha256(text.encode()).hexdigest()[:16]
    changed = write_policy(tmp_path, text + "\n# a comment changes the fingerprint\n")
    assert load_policy(changed).fingerprint != load_policy(DEFAULT_POLICY_PATH).fingerprint


def test_shipped_policy_fits_the_shipped_contract(policy: DecisionPolicy) -> None:
    contract = load_contract(DEFAULT_CONTRACT_PATH)
    columns = contract.applications.columns
    validate_policy_columns(policy, [c.name for c in columns], {c.name: c.type for c in columns})
    assert set(policy.columns) <= set(contract.applications.column_names)


def test_base_application_is_neutral(policy: DecisionPolicy) -> None:
    decision = evaluate(policy, BASE_APP, 0.2)
    assert decision.hard_rule is None and decision.rule == "review:grey_zone"


# --------------------------------------------------------------------------- boundaries


@pytest.mark.parametrize(
    ("pd", "expected_rule"),
    [(0.04, "auto_approve"), (below(0.04), "auto_approve"), (above(0.04), "review:grey_zone")],
    ids=["at", "below", "above"],
)
def test_auto_approve_max_pd_boundary(policy: DecisionPolicy, pd: float, expected_rule: str) -> None:
    decision = evaluate(policy, app(loan_amount=10000.0), pd)
    assert decision.rule == expected_rule
    assert decision.action == ("auto_approve" if expected_rule == "auto_approve" else "review")


@pytest.mark.parametrize(
    ("amount", "expected_rule"),
    [(25000.0, "auto_approve"), (below(25000.0), "auto_approve"), (above(25000.0), "review:amount_over_limit")],
    ids=["at", "below", "above"],
)
def test_auto_approve_max_amount_boundary(policy: DecisionPolicy, amount: float, expected_rule: str) -> None:
    assert evaluate(policy, app(loan_amount=amount), 0.01).rule == expected_rule


@pytest.mark.parametrize(
    ("pd", "expected_action"),
    [(0.35, "auto_decline"), (below(0.35), "review"), (above(0.35), "auto_decline")],
    ids=["at", "below", "above"],
)
def test_auto_decline_min_pd_boundary(policy: DecisionPolicy, pd: float, expected_action: str) -> None:
    decision = evaluate(policy, BASE_APP, pd)
    assert decision.action == expected_action
    assert decision.rule == ("auto_decline" if expected_action == "auto_decline" else "review:grey_zone")


@pytest.mark.parametrize(
    ("amount", "expected"),
    [(50000.0, True), (below(50000.0), False), (above(50000.0), True)],
    ids=["at", "below", "above"],
)
def test_four_eyes_min_amount_boundary(policy: DecisionPolicy, amount: float, expected: bool) -> None:
    decision = evaluate(policy, app(loan_amount=amount), 0.2)
    assert decision.action == "review"
    assert decision.requires_four_eyes is expected


def test_four_eyes_only_for_review_and_for_missing_amounts(policy: DecisionPolicy) -> None:
    assert evaluate(policy, app(loan_amount=60000.0), 0.9).requires_four_eyes is False  # auto-declined
    missing = evaluate(policy, app(loan_amount=None), 0.01)
    assert missing.action == "review" and missing.rule == "review:amount_over_limit"
    assert missing.requires_four_eyes is True
    assert evaluate(policy, app(loan_amount=float("nan")), 0.2).requires_four_eyes is True


@pytest.mark.parametrize("index", range(5))
def test_score_band_boundaries(policy: DecisionPolicy, index: int) -> None:
    bands = policy.score_bands
    cut = bands[index].max_pd
    assert score_band(policy, cut) == bands[index].label
    assert score_band(policy, below(cut)) == bands[index].label
    if index + 1 < len(bands):
        assert score_band(policy, above(cut)) == bands[index + 1].label
    assert evaluate(policy, BASE_APP, cut).score_band == bands[index].label


def test_score_band_rejects_missing_and_out_of_range(policy: DecisionPolicy) -> None:
    assert score_band(policy, 0.0) == "A"
    for bad in (None, float("nan"), -0.01, above(1.0)):
        with pytest.raises(ValueError):
            score_band(policy, bad)  # type: ignore[arg-type]


HARD_RULE_BOUNDARIES = [
    # (rule id, overrides at the threshold, expected hit at, below, above)
    ("min_income", "annual_income", 10000.0, False, True, False),
    ("max_delinquencies", "delinquencies_2y", 6, True, False, True),
    ("max_debt_to_income", "debt_to_income", 0.6, False, False, True),
    ("min_bureau_score", "bureau_score", 450, False, True, False),
]


@pytest.mark.parametrize(("rule_id", "column", "threshold", "at", "under", "over"), HARD_RULE_BOUNDARIES)
def test_hard_rule_column_boundaries(
    policy: DecisionPolicy, rule_id: str, column: str, threshold: float, at: bool, under: bool, over: bool
) -> None:
    small_loan = {"loan_amount": 5000.0}  # keeps loan_to_income quiet when income is low
    for value, expected in ((threshold, at), (below(threshold), under), (above(threshold), over)):
        decision = evaluate(policy, app(**small_loan, **{column: value}), 0.01)
        assert (decision.hard_rule == rule_id) is expected, (column, value)
        if expected:
            assert decision.action == "auto_decline" and decision.rule == f"hard_rule:{rule_id}"
        else:
            assert decision.action == "auto_approve"


def test_loan_to_income_ratio_boundary(policy: DecisionPolicy) -> None:
    income = 20000.0
    at = app(annual_income=income, loan_amount=200000.0)
    assert at["loan_amount"] / at["annual_income"] == 10
    assert evaluate(policy, at, 0.2).hard_rule is None
    over = app(annual_income=below(income), loan_amount=200000.0)
    assert over["loan_amount"] / over["annual_income"] > 10
    assert evaluate(policy, over, 0.2).rule == "hard_rule:loan_to_income"
    under = app(annual_income=above(income), loan_amount=200000.0)
    assert evaluate(policy, under, 0.2).hard_rule is None


def test_thin_file_rule_nesting(policy: DecisionPolicy) -> None:
    thin = {"bureau_score": None}
    assert evaluate(policy, app(**thin, credit_history_months=12), 0.2).hard_rule is None
    assert evaluate(policy, app(**thin, credit_history_months=11), 0.2).hard_rule == "thin_file_large_loan"
    assert evaluate(policy, app(**thin, loan_amount=50000.0), 0.2).hard_rule is None
    assert evaluate(policy, app(**thin, loan_amount=above(50000.0)), 0.2).hard_rule == "thin_file_large_loan"
    # with a bureau score the same history and amount are fine
    assert evaluate(policy, app(credit_history_months=11, loan_amount=60000.0), 0.2).hard_rule is None


def test_first_hard_rule_in_declared_order_wins(policy: DecisionPolicy) -> None:
    decision = evaluate(policy, app(annual_income=5000.0, delinquencies_2y=9, loan_amount=5000.0), 0.01)
    assert decision.hard_rule == "min_income"


# --------------------------------------------------------------------------- review priorities


def test_review_priority_pd_range_boundary(policy: DecisionPolicy) -> None:
    assert (evaluate(policy, BASE_APP, 0.25).priority, evaluate(policy, BASE_APP, 0.25).due_hours) == ("high", 24)
    assert evaluate(policy, BASE_APP, above(0.25)).priority == "high"
    low = evaluate(policy, BASE_APP, below(0.25))
    assert (low.priority, low.due_hours) == ("normal", 48)


def test_review_priority_amount_and_band(policy: DecisionPolicy) -> None:
    assert evaluate(policy, app(loan_amount=50000.0), 0.2).priority == "high"
    assert evaluate(policy, app(loan_amount=below(50000.0)), 0.2).priority == "normal"
    # low risk but above the auto-approve amount: bands A and B are low priority, C is not
    at_b = evaluate(policy, app(loan_amount=30000.0), 0.04)
    assert (at_b.rule, at_b.score_band, at_b.priority, at_b.due_hours) == ("review:amount_over_limit", "B", "low", 72)
    above_b = evaluate(policy, app(loan_amount=30000.0), above(0.04))
    assert (above_b.score_band, above_b.priority) == ("C", "normal")


def test_review_priority_by_routing_rule(policy: DecisionPolicy) -> None:
    no_score = evaluate(policy, BASE_APP, None)
    assert (no_score.rule, no_score.priority, no_score.due_hours, no_score.score_band) == (
        "review:no_score", "high", 24, None)
    fallback = evaluate(policy, BASE_APP, 0.1, decision_source="fallback")
    assert (fallback.rule, fallback.priority, fallback.due_hours) == ("fallback:review", "high", 24)


def test_non_review_decisions_carry_no_priority(policy: DecisionPolicy) -> None:
    for pd in (0.01, 0.9):
        decision = evaluate(policy, BASE_APP, pd)
        assert decision.action != "review"
        assert decision.priority is None and decision.due_hours is None


def test_reasons_required_by_action(policy: DecisionPolicy) -> None:
    assert evaluate(policy, BASE_APP, 0.01).reasons_required is False
    assert evaluate(policy, BASE_APP, 0.9).reasons_required is True
    assert evaluate(policy, BASE_APP, 0.2).reasons_required is True
    assert evaluate(policy, app(annual_income=1.0, loan_amount=5.0), 0.01).reasons_required is True


def test_missing_pd_goes_to_review(policy: DecisionPolicy) -> None:
    for pd in (None, float("nan"), np.float64("nan")):
        decision = evaluate(policy, BASE_APP, pd)
        assert (decision.action, decision.rule, decision.score_band) == ("review", "review:no_score", None)


def test_bad_inputs_are_refused(policy: DecisionPolicy) -> None:
    with pytest.raises(ValueError, match="pd must lie"):
        evaluate(policy, BASE_APP, 1.2)
    with pytest.raises(ValueError, match="decision_source"):
        evaluate(policy, BASE_APP, 0.1, decision_source="human")
    without_bureau = {k: v for k, v in BASE_APP.items() if k != "bureau_score"}
    with pytest.raises(ValueError, match="bureau_score"):
        evaluate(policy, without_bureau, 0.1)
    with pytest.raises(ValueError, match="not a number"):
        evaluate(policy, app(annual_income="lots"), 0.1)


# --------------------------------------------------------------------------- the condition language


def check_condition(raw: dict, column_values: dict[str, list], dtypes: dict[str, pl.DataType], expected: list[bool]) -> None:
    """The condition gives ``expected`` row by row AND as a polars expression."""
    condition = parse_condition(raw, "test")
    rows = [dict(zip(column_values, values)) for values in zip(*column_values.values())]
    assert [condition_holds(condition, row) for row in rows] == expected
    frame = pl.DataFrame({c: pl.Series(c, v, dtype=dtypes[c]) for c, v in column_values.items()})
    assert frame.select(condition_expr(condition, frame.schema).alias("hit")).to_series().to_list() == expected


NAN = float("nan")
F64 = pl.Float64


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ("<", [True, False, False, False, False]),
        ("<=", [True, True, False, False, False]),
        (">", [False, False, True, False, False]),
        (">=", [False, True, True, False, False]),
        ("==", [False, True, False, False, False]),
        ("!=", [True, False, True, False, False]),
    ],
)
def test_numeric_ops_at_below_above_and_missing(op: str, expected: list[bool]) -> None:
    values = [below(10.0), 10.0, above(10.0), None, NAN]
    check_condition({"column": "x", "op": op, "value": 10}, {"x": values}, {"x": F64}, expected)


def test_numeric_ops_on_integer_columns() -> None:
    values = [5, 6, 7, None]
    check_condition({"column": "n", "op": ">=", "value": 6}, {"n": values}, {"n": pl.Int64}, [False, True, True, False])
    check_condition({"column": "n", "op": "<", "value": 6.5}, {"n": values}, {"n": pl.Int64}, [True, True, False, False])


def test_string_equality_and_sets() -> None:
    values = ["car", "medical", "business", None]
    dtypes = {"p": pl.String}
    check_condition({"column": "p", "op": "==", "value": "car"}, {"p": values}, dtypes, [True, False, False, False])
    check_condition({"column": "p", "op": "!=", "value": "car"}, {"p": values}, dtypes, [False, True, True, False])
    check_condition({"column": "p", "op": "in", "value": ["car", "medical"]}, {"p": values}, dtypes,
                    [True, True, False, False])
    check_condition({"column": "p", "op": "not_in", "value": ["car", "medical"]}, {"p": values}, dtypes,
                    [False, False, True, False])


def test_numeric_sets_on_integer_and_float_columns() -> None:
    check_condition({"column": "t", "op": "in", "value": [12, 24]}, {"t": [12, 24, 36, None]}, {"t": pl.Int64},
                    [True, True, False, False])
    check_condition({"column": "t", "op": "not_in", "value": [12, 24]}, {"t": [12, 24, 36, None]}, {"t": pl.Int64},
                    [False, False, True, False])
    check_condition({"column": "x", "op": "in", "value": [0.5, 2]}, {"x": [0.5, 2.0, above(0.5), NAN]}, {"x": F64},
                    [True, True, False, False])


def test_is_null_and_is_not_null() -> None:
    values = [None, NAN, 0.0, 3.0]
    check_condition({"column": "x", "op": "is_null"}, {"x": values}, {"x": F64}, [True, True, False, False])
    check_condition({"column": "x", "op": "is_null", "value": False}, {"x": values}, {"x": F64},
                    [False, False, True, True])


def test_ratio_conditions_including_zero_and_missing_denominators() -> None:
    columns = {"a": [100.0, above(100.0), 100.0, None, 100.0, -50.0], "b": [10.0, 10.0, 0.0, 10.0, None, 10.0]}
    dtypes = {"a": F64, "b": F64}
    check_condition({"ratio": ["a", "b"], "op": ">", "value": 10}, columns, dtypes,
                    [False, True, False, False, False, False])
    check_condition({"ratio": ["a", "b"], "op": ">=", "value": 10}, columns, dtypes,
                    [True, True, False, False, False, False])
    check_condition({"ratio": ["a", "b"], "op": "is_null"}, columns, dtypes, [False, False, True, True, True, False])
    check_condition({"ratio": ["a", "b"], "op": "<", "value": 0}, columns, dtypes,
                    [False, False, False, False, False, True])
    # integer columns divide as floats
    check_condition({"ratio": ["i", "j"], "op": "==", "value": 2.5}, {"i": [5, 4], "j": [2, 2]},
                    {"i": pl.Int64, "j": pl.Int64}, [True, False])


def test_all_any_nesting_truth_table() -> None:
    raw = {"all": [{"column": "a", "op": ">", "value": 0},
                   {"any": [{"column": "b", "op": "==", "value": "x"}, {"column": "c", "op": "is_null"}]}]}
    columns = {
        "a": [1.0, 1.0, 1.0, 1.0, 0.0, None],
        "b": ["x", "y", "y", None, "x", "x"],
        "c": [5.0, 5.0, None, None, None, None],
    }
    check_condition(raw, columns, {"a": F64, "b": pl.String, "c": F64}, [True, False, True, True, False, False])
    nested_any = {"any": [{"all": [{"column": "a", "op": "<", "value": 0}]}, {"column": "b", "op": "in", "value": ["y"]}]}
    check_condition(nested_any, {"a": [-1.0, 1.0, 1.0], "b": ["x", "y", "x"]}, {"a": F64, "b": pl.String},
                    [True, True, False])


def test_type_mismatches_are_errors_both_ways() -> None:
    condition = parse_condition({"column": "p", "op": "<", "value": 3}, "t")
    with pytest.raises(ValueError):
        condition_holds(condition, {"p": "car"})
    frame = pl.DataFrame({"p": ["car"]})
    with pytest.raises(ValueError):
        frame.select(condition_expr(condition, frame.schema))
    equality = parse_condition({"column": "n", "op": "==", "value": "12"}, "t")
    with pytest.raises(ValueError):
        condition_holds(equality, {"n": 12})
    with pytest.raises(ValueError):
        pl.DataFrame({"n": [12]}).select(condition_expr(equality, {"n": pl.Int64}))


def test_hard_rules_with_every_op_in_a_policy(tmp_path: Path) -> None:
    policy = load_policy(write_policy(tmp_path, OPS_POLICY))
    base = app(purpose="car", region="north", channel="web", term_months=36, employment_length_years=3.0)
    assert evaluate(policy, base, 0.05).action == "auto_approve"
    cases = [
        ({"purpose": "business"}, "purpose_blocked"),  # in
        ({"region": "south", "channel": "web", "term_months": 36}, "south_remote_long"),  # ==, !=, not_in, all
        ({"employment_length_years": None, "bureau_score": 600}, "thin_or_indebted"),  # is_null inside all, any
        ({"existing_debt": 120000.0, "annual_income": 60000.0}, "thin_or_indebted"),  # ratio >=
        ({"annual_income": 0.0}, "income_unknown"),  # ratio is_null via a zero denominator
        ({"loan_amount": 0.0}, "nothing_asked"),  # == inside any
        ({"loan_amount": 150000.0, "existing_debt": 0.0}, "nothing_asked"),  # <=, > inside all inside any
    ]
    for overrides, rule_id in cases:
        decision = evaluate(policy, {**base, **overrides}, 0.05)
        assert (decision.action, decision.hard_rule) == ("auto_decline", rule_id), overrides
    near_misses = [
        {"purpose": "medical"},
        {"region": "south", "channel": "branch", "term_months": 36},
        {"region": "south", "channel": "web", "term_months": 24},
        {"employment_length_years": None, "bureau_score": 601},
        {"employment_length_years": 1.0, "bureau_score": 600},
        {"existing_debt": below(120000.0), "annual_income": 60000.0},
        {"loan_amount": above(0.0)},
        {"loan_amount": 100000.0, "existing_debt": 0.0},
        {"loan_amount": 150000.0, "existing_debt": above(0.0)},
    ]
    for overrides in near_misses:
        assert evaluate(policy, {**base, **overrides}, 0.05).hard_rule is None, overrides


# --------------------------------------------------------------------------- pause and fallback


def test_paused_never_decides_automatically(policy: DecisionPolicy) -> None:
    for pd in (0.0, 0.01, 0.04, 0.2, 0.35, 0.99, None):
        decision = evaluate(policy, BASE_APP, pd, automation_paused=True)
        assert (decision.action, decision.rule, decision.hard_rule) == ("review", "automation_paused", None)
    fallback = evaluate(policy, BASE_APP, 0.0, automation_paused=True, decision_source="fallback")
    assert (fallback.action, fallback.rule) == ("review", "automation_paused")


def test_paused_hard_rule_hits_go_to_review_with_the_rule_noted(policy: DecisionPolicy) -> None:
    ineligible = app(annual_income=5000.0, loan_amount=5000.0)
    assert evaluate(policy, ineligible, 0.9).action == "auto_decline"
    paused = evaluate(policy, ineligible, 0.9, automation_paused=True)
    assert (paused.action, paused.rule, paused.hard_rule) == ("review", "automation_paused", "min_income")
    assert (paused.priority, paused.due_hours) == ("high", 8)
    assert paused.reasons_required is True


def test_fallback_never_auto_approves_or_auto_declines_on_pd(policy: DecisionPolicy) -> None:
    for pd in (0.0, 0.04, 0.2, 0.35, 1.0, None):
        decision = evaluate(policy, app(loan_amount=1000.0), pd, decision_source="fallback")
        assert (decision.action, decision.rule) == ("review", "fallback:review")
    hit = evaluate(policy, app(annual_income=5000.0, loan_amount=5000.0), 0.0, decision_source="fallback")
    assert (hit.action, hit.rule) == ("auto_decline", "hard_rule:min_income")


def test_fallback_approves_only_when_allowed_and_within_limits(raw_policy: dict) -> None:
    raw = copy.deepcopy(raw_policy)
    raw["fallback_scorecard"]["allow_auto_approve"] = True
    allowed = parse_policy(raw)
    assert evaluate(allowed, app(loan_amount=25000.0), 0.04, decision_source="fallback").rule == "fallback:auto_approve"
    assert evaluate(allowed, app(loan_amount=25000.0), above(0.04), decision_source="fallback").rule == "fallback:review"
    assert evaluate(allowed, app(loan_amount=above(25000.0)), 0.01, decision_source="fallback").rule == "fallback:review"
    assert evaluate(allowed, app(), 0.9, decision_source="fallback").action == "review"


def test_fallback_scorecard_bins_and_table(policy: DecisionPolicy) -> None:
    best = app(bureau_score=800, delinquencies_2y=0, debt_to_income=0.1, credit_utilisation=0.1,
               credit_history_months=100)
    assert fallback_points_row(policy, best) == 145
    assert fallback_pd_row(policy, best) == 0.03
    assert fallback_points_row(policy, app(bureau_score=580)) - fallback_points_row(policy, app(bureau_score=579)) == 15
    assert fallback_points_row(policy, app(bureau_score=None)) == fallback_points_row(policy, app(bureau_score=579)) + 10
    assert fallback_points_row(policy, app(debt_to_income=0.2)) == fallback_points_row(policy, app(debt_to_income=below(0.2))) - 10
    worst = app(bureau_score=300, delinquencies_2y=9, debt_to_income=0.9, credit_utilisation=1.4,
                credit_history_months=0)
    assert (fallback_points_row(policy, worst), fallback_pd_row(policy, worst)) == (0, 0.45)


@pytest.mark.parametrize("row", range(6))
def test_fallback_pd_table_boundaries(raw_policy: dict, row: int) -> None:
    table = sorted(raw_policy["fallback_scorecard"]["pd_table"], key=lambda r: r["min_points"], reverse=True)
    for base, expected in ((table[row]["min_points"], table[row]["pd"]),
                           (above(table[row]["min_points"]), table[row]["pd"]),
                           (below(table[row]["min_points"]), table[row + 1]["pd"] if row + 1 < len(table) else None)):
        raw = copy.deepcopy(raw_policy)
        card = raw["fallback_scorecard"]
        card["base_points"] = base
        for factor in card["factors"]:  # zero points everywhere: the total is the base
            factor["default_points"] = 0
            for b in factor["bins"]:
                b["points"] = 0
        if expected is None:
            with pytest.raises(PolicyError, match="must cover the lowest"):
                parse_policy(raw)
            continue
        scorecard = parse_policy(raw)
        assert fallback_pd_row(scorecard, BASE_APP) == expected
        assert fallback_pd(scorecard, pl.DataFrame([BASE_APP])).to_list() == [expected]


# --------------------------------------------------------------------------- vectorised equality


def random_applications(seed: int, n: int) -> pl.DataFrame:
    """Random applications, salted with exact thresholds, their float neighbours, nulls and NaNs."""
    rng = np.random.default_rng(seed)

    def salted(generic: np.ndarray, specials: list[float], share: float = 0.3) -> np.ndarray:
        out = generic.astype(float)
        mask = rng.random(n) < share
        out[mask] = rng.choice(np.array(specials, dtype=float), size=int(mask.sum()))
        return out

    def edges(*values: float) -> list[float]:
        return [v2 for v in values for v2 in (v, below(v), above(v))]

    def with_nulls(series: pl.Series, share: float) -> pl.Series:
        mask = pl.Series(rng.random(n) < share)
        return pl.select(pl.when(mask).then(None).otherwise(series)).to_series().alias(series.name)

    pd = salted(rng.random(n), edges(0.02, 0.04, 0.10, 0.20, 0.25, 0.35) + [0.0, 1.0, 0.1, 0.2, 0.3, 0.5], 0.5)
    pd[rng.random(n) < 0.03] = np.nan
    frame = pl.DataFrame({
        "application_id": [f"a-{seed}-{i}" for i in range(n)],
        "annual_income": salted(rng.uniform(0, 150000, n), edges(10000.0, 20000.0, 60000.0) + [0.0]),
        "employment_length_years": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0, 40, n)),
        "existing_debt": salted(rng.uniform(0, 150000, n), [0.0, 120000.0, below(120000.0)]),
        "debt_to_income": salted(rng.uniform(0, 0.8, n), edges(0.2, 0.35, 0.5, 0.6)),
        "credit_history_months": salted(rng.integers(0, 400, n), [11, 12, 24, 60]).astype(np.int64),
        "delinquencies_2y": np.minimum(rng.poisson(1.2, n), 9),
        "bureau_score": salted(rng.integers(420, 851, n), [449, 450, 579, 580, 600, 601, 640, 700, 760]).astype(np.int64),
        "credit_utilisation": salted(rng.uniform(0, 1.5, n), edges(0.3, 0.7)),
        "loan_amount": salted(np.where(rng.random(n) < 0.7, rng.uniform(500, 40000, n), rng.uniform(0, 250000, n)), edges(25000.0, 30000.0, 40000.0, 50000.0) + [0.0, 200000.0]),
        "purpose": rng.choice(["debt_consolidation", "home_improvement", "car", "medical", "education",
                               "business", "other"], n),
        "term_months": rng.choice([12, 24, 36, 48, 60], n),
        "region": rng.choice(["north", "south", "east", "west", "central"], n),
        "channel": rng.choice(["branch", "web", "mobile", "broker"], n),
        "pd": pd,
        "source": rng.choice(["model", "fallback"], n, p=[0.8, 0.2]),
    })
    return frame.with_columns(
        with_nulls(frame["bureau_score"], 0.15),
        with_nulls(frame["employment_length_years"], 0.05),
        with_nulls(frame["loan_amount"], 0.02),
        with_nulls(frame["pd"], 0.05),
    )


def assert_frame_matches_rows(policy: DecisionPolicy, frame: pl.DataFrame, paused: bool, source_column: str | None) -> pl.DataFrame:
    out = evaluate_frame(policy, frame, "pd", automation_paused=paused, decision_source_column=source_column)
    assert out.height == frame.height
    assert out.columns == frame.columns + list(DECISION_COLUMNS.values())
    decision_columns = list(DECISION_COLUMNS.values())
    for row, got in zip(frame.iter_rows(named=True), out.select(decision_columns).iter_rows(named=True)):
        source = row[source_column] if source_column else "model"
        expected = evaluate(policy, row, row["pd"], automation_paused=paused, decision_source=source).as_row()
        assert got == expected, (row, got, expected)
    return out


def test_evaluate_frame_equals_evaluate_on_every_threshold_edge(policy: DecisionPolicy) -> None:
    """Every PD edge x every amount edge x both sources: the vectorised path agrees exactly."""
    pds = [v for cut in (0.02, 0.04, 0.10, 0.20, 0.25, 0.35) for v in (below(cut), cut, above(cut))]
    pds += [0.0, 1.0, None, float("nan")]
    amounts = [v for cut in (25000.0, 50000.0) for v in (below(cut), cut, above(cut))] + [None]
    rows = [
        {**app(loan_amount=amount), "pd": pd, "source": source}
        for pd in pds for amount in amounts for source in ("model", "fallback")
    ]
    frame = pl.DataFrame(rows, schema_overrides={"pd": pl.Float64, "loan_amount": pl.Float64})
    for paused in (False, True):
        out = assert_frame_matches_rows(policy, frame, paused, "source")
        if not paused:
            assert {"auto_approve", "auto_decline", "review:grey_zone", "review:amount_over_limit",
                    "review:no_score", "fallback:review"} == set(out["policy_rule"].to_list())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("paused", [False, True])
def test_evaluate_frame_equals_evaluate_row_by_row(policy: DecisionPolicy, seed: int, paused: bool) -> None:
    frame = random_applications(seed, 400)
    out = assert_frame_matches_rows(policy, frame, paused, "source")
    actions = set(out["action"].to_list())
    if paused:
        assert actions == {"review"}
        assert set(out["policy_rule"].to_list()) == {"automation_paused"}
        assert out["policy_hard_rule"].null_count() < out.height  # hits are still noted
    else:
        assert actions == {"auto_approve", "auto_decline", "review"}  # the sample exercises every outcome
        assert out.filter(pl.col("source") == "fallback")["action"].to_list().count("auto_approve") == 0


@pytest.mark.parametrize("seed", [10, 11])
@pytest.mark.parametrize("paused", [False, True])
def test_evaluate_frame_equals_evaluate_on_a_policy_using_every_op(tmp_path: Path, seed: int, paused: bool) -> None:
    policy = load_policy(write_policy(tmp_path, OPS_POLICY))
    out = assert_frame_matches_rows(policy, random_applications(seed, 300), paused, "source")
    if not paused:
        hits = set(out["policy_hard_rule"].drop_nulls().to_list())
        assert hits == {r.id for r in policy.hard_rules}
        assert "fallback:auto_approve" in out["policy_rule"].to_list()  # this policy allows it
    assert len(set(out["review_priority"].drop_nulls().to_list())) == 3


def test_evaluate_frame_without_source_column_is_all_model(policy: DecisionPolicy) -> None:
    frame = random_applications(5, 200).drop("source")
    out = assert_frame_matches_rows(policy, frame, False, None)
    assert not any(r.startswith("fallback:") for r in out["policy_rule"].to_list())
    assert out.schema["requires_four_eyes"] == pl.Boolean and out.schema["review_due_hours"] == pl.Int64


def test_evaluate_frame_handles_an_empty_frame_and_replaces_old_decisions(policy: DecisionPolicy) -> None:
    frame = random_applications(6, 50)
    empty = evaluate_frame(policy, frame.head(0), decision_source_column="source")
    assert empty.height == 0 and "action" in empty.columns
    once = evaluate_frame(policy, frame, decision_source_column="source")
    twice = evaluate_frame(policy, once, decision_source_column="source")
    assert twice.equals(once)


def test_evaluate_frame_refuses_bad_input(policy: DecisionPolicy) -> None:
    frame = random_applications(7, 20)
    with pytest.raises(ValueError, match="outside"):
        evaluate_frame(policy, frame.with_columns(pd=pl.lit(1.5)))
    with pytest.raises(ValueError, match="decision source"):
        evaluate_frame(policy, frame.with_columns(source=pl.lit("human")), decision_source_column="source")
    with pytest.raises(ValueError, match="bureau_score"):
        evaluate_frame(policy, frame.drop("bureau_score"))
    with pytest.raises(ValueError, match="PD column"):
        evaluate_frame(policy, frame, pd_column="score")


def test_fallback_pd_frame_equals_rows_and_is_deterministic(policy: DecisionPolicy) -> None:
    frame = random_applications(3, 300)
    first = fallback_pd(policy, frame)
    assert first.name == "fallback_pd" and first.null_count() == 0
    assert first.to_list() == [fallback_pd_row(policy, row) for row in frame.iter_rows(named=True)]
    assert fallback_points(policy, frame).to_list() == [fallback_points_row(policy, row) for row in frame.iter_rows(named=True)]
    assert fallback_pd(policy, frame).equals(first)
    assert set(first.to_list()) <= {r.pd for r in policy.fallback.pd_table}
    scored = frame.with_columns(pd=first, source=pl.lit("fallback"))
    out = evaluate_frame(policy, scored, decision_source_column="source")
    assert "auto_approve" not in out["action"].to_list()


def test_evaluate_frame_on_a_million_rows_matches_the_small_frame(policy: DecisionPolicy) -> None:
    """Vectorised evaluation does not depend on frame size (speed is measured in benchmarks/)."""
    base = random_applications(42, 10_000)
    frame = pl.concat([base] * 100)
    assert frame.height == 1_000_000
    small = evaluate_frame(policy, base, decision_source_column="source")
    out = evaluate_frame(policy, frame, decision_source_column="source")
    assert out.height == frame.height
    assert out.slice(730_000, 10_000).equals(small)


# --------------------------------------------------------------------------- policy errors


def set_path(raw: dict, dotted: list, value: Any) -> dict:
    target = raw
    for key in dotted[:-1]:
        target = target[key]
    if value is DELETE:
        del target[dotted[-1]]
    else:
        target[dotted[-1]] = value
    return raw


DELETE = object()

BAD_POLICIES = [
    (["hard_rules", 0, "when", "op"], "=~", "hard_rules[0].when.op"),
    (["hard_rules", 0, "when"], "annual_income < 10000", "hard_rules[0].when"),
    (["hard_rules", 0, "when"], "__import__('os').system('true')", "not expressions"),
    (["hard_rules", 5, "when", "all", 1, "any", 0, "op"], "like", "hard_rules[5].when.all[1].any[0].op"),
    (["hard_rules", 0, "when", "value"], "ten thousand", "hard_rules[0].when.value"),
    (["hard_rules", 0, "when", "op"], "in", "hard_rules[0].when.value"),
    (["hard_rules", 2, "when", "ratio"], ["loan_amount"], "hard_rules[2].when.ratio"),
    (["hard_rules", 2, "when", "op"], "in", "hard_rules[2].when.op"),
    (["hard_rules", 1, "id"], "min_income", "hard_rules[1].id"),
    (["hard_rules", 0, "extra"], 1, "hard_rules[0]"),
    (["version"], 2026.11, "version"),
    (["amount_column"], DELETE, "amount_column"),
    (["automation"], {"paused": True}, "automation"),
    (["auto_approve", "max_pd"], 1.5, "auto_approve.max_pd"),
    (["auto_approve", "max_pd"], 0.35, "auto_decline.min_pd"),
    (["auto_approve", "max_amount"], "25k", "auto_approve.max_amount"),
    (["four_eyes", "min_amount"], -1, "four_eyes.min_amount"),
    (["score_bands", 4, "max_pd"], 0.9, "score_bands[4].max_pd"),
    (["score_bands", 2, "max_pd"], 0.03, "score_bands[2].max_pd"),
    (["review", "priorities", 4, "score_bands"], ["Z"], "review.priorities[4].score_bands[0]"),
    (["review", "priorities", 0, "routed_by"], ["review:nonsense"], "review.priorities[0].routed_by[0]"),
    (["review", "priorities", 0, "priority"], "urgent", "review.priorities[0].priority"),
    (["review", "priorities", 2, "due_hours"], 0, "review.priorities[2].due_hours"),
    (["review", "priorities", 2, "pd_range"], {"min": 0.5, "max": 0.4}, "review.priorities[2].pd_range"),
    (["fallback_scorecard", "allow_auto_approve"], "yes", "fallback_scorecard.allow_auto_approve"),
    (["fallback_scorecard", "pd_table", 5, "min_points"], 10, "fallback_scorecard.pd_table"),
    (["fallback_scorecard", "pd_table", 0, "pd"], 0.5, "fallback_scorecard.pd_table"),
    (["fallback_scorecard", "factors", 1, "bins", 0, "when", "column"], "", "fallback_scorecard.factors[1].bins[0].when.column"),
    (["reasons", "required_for"], ["approve"], "reasons.required_for[0]"),
    (["reasons", "max_reasons"], 0, "reasons.max_reasons"),
]


@pytest.mark.parametrize(("field_path", "value", "named"), BAD_POLICIES, ids=[b[2] + "=" + repr(b[1])[:20] for b in BAD_POLICIES])
def test_policy_errors_name_the_file_and_field(tmp_path: Path, raw_policy: dict, field_path: list, value: Any, named: str) -> None:
    path = write_policy(tmp_path, set_path(copy.deepcopy(raw_policy), field_path, value), "broken_policy.yaml")
    with pytest.raises(PolicyError) as excinfo:
        load_policy(path)
    message = str(excinfo.value)
    assert str(path) in message
    assert named in message


def test_unreadable_and_invalid_yaml_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError, match="nope.yaml"):
        load_policy(missing)
    broken = write_policy(tmp_path, "version: [unclosed\n", "broken.yaml")
    with pytest.raises(PolicyError, match=r"broken.yaml: not valid YAML"):
        load_policy(broken)
    scalar = write_policy(tmp_path, "just a string\n", "scalar.yaml")
    with pytest.raises(PolicyError, match=r"scalar.yaml: policy: expected a mapping"):
        load_policy(scalar)


def test_validate_policy_columns_catches_an_unknown_column(policy: DecisionPolicy) -> None:
    contract = load_contract(DEFAULT_CONTRACT_PATH)
    columns = [c for c in contract.applications.column_names if c != "bureau_score"]
    with pytest.raises(PolicyError) as excinfo:
        validate_policy_columns(policy, columns)
    message = str(excinfo.value)
    assert "'bureau_score'" in message
    assert "hard_rules[min_bureau_score].when" in message
    assert "fallback_scorecard.factors[bureau_score]" in message
    assert str(policy.source_path) in message
    with pytest.raises(PolicyError, match="amount_column"):
        validate_policy_columns(policy, [c for c in contract.applications.column_names if c != "loan_amount"])


def test_validate_policy_columns_checks_types_when_given(tmp_path: Path, raw_policy: dict) -> None:
    contract = load_contract(DEFAULT_CONTRACT_PATH)
    names = contract.applications.column_names
    types = {c.name: c.type for c in contract.applications.columns}
    raw = copy.deepcopy(raw_policy)
    raw["hard_rules"][0]["when"] = {"column": "purpose", "op": "<", "value": 3}
    wrong = load_policy(write_policy(tmp_path, raw))
    validate_policy_columns(wrong, names)  # names alone are fine
    with pytest.raises(PolicyError, match=r"hard_rules\[min_income\].when: purpose < 3 needs a number column"):
        validate_policy_columns(wrong, names, types)
    raw["hard_rules"][0]["when"] = {"column": "term_months", "op": "in", "value": ["12"]}
    with pytest.raises(PolicyError, match="compares string values with a 'integer' column"):
        validate_policy_columns(load_policy(write_policy(tmp_path, raw)), names, types)
    with pytest.raises(PolicyError, match="amount_column"):
        validate_policy_columns(load_policy(DEFAULT_POLICY_PATH), names, {**types, "loan_amount": "string"})


def test_policy_decision_rows_use_the_frame_column_names() -> None:
    decision = PolicyDecision("review", "review:grey_zone", "D", False, "normal", 48, "v", True, None)
    assert decision.as_row() == {
        "action": "review", "policy_rule": "review:grey_zone", "policy_hard_rule": None, "score_band": "D",
        "requires_four_eyes": False, "review_priority": "normal", "review_due_hours": 48,
        "reasons_required": True, "policy_version": "v",
    }


# A second policy exercising every op of the condition language against the shipped contract.
OPS_POLICY = """
version: "test.1"
name: every_op
amount_column: loan_amount
hard_rules:
  - id: purpose_blocked
    when: {column: purpose, op: in, value: [business, other]}
  - id: south_remote_long
    when:
      all:
        - {column: region, op: "==", value: south}
        - {column: channel, op: "!=", value: branch}
        - {column: term_months, op: not_in, value: [12, 24]}
  - id: thin_or_indebted
    when:
      any:
        - all:
            - {column: employment_length_years, op: is_null}
            - {column: bureau_score, op: "<=", value: 600}
        - {ratio: [existing_debt, annual_income], op: ">=", value: 2}
  - id: income_unknown
    when: {ratio: [loan_amount, annual_income], op: is_null}
  - id: nothing_asked
    when:
      any:
        - {column: loan_amount, op: "==", value: 0}
        - all:
            - {column: existing_debt, op: "<=", value: 0}
            - {column: loan_amount, op: ">", value: 100000}
auto_approve: {max_pd: 0.1, max_amount: 30000}
auto_decline: {min_pd: 0.5}
four_eyes: {min_amount: 40000}
review:
  default: {priority: low, due_hours: 96}
  priorities:
    - {id: blocked_while_paused, routed_by: ["hard_rule:purpose_blocked"], priority: high, due_hours: 2}
    - id: digital_mid_risk
      when: {column: channel, op: in, value: [mobile, web]}
      pd_range: {min: 0.2, max: 0.3}
      priority: high
      due_hours: 12
    - {id: grey_high_band, routed_by: ["review:grey*"], score_bands: [top], priority: normal, due_hours: 24}
    - id: scored_low_risk
      when: {column: bureau_score, op: is_null, value: false}
      pd_range: {max: 0.15}
      priority: normal
      due_hours: 36
score_bands:
  - {band: low, max_pd: 0.1}
  - {band: mid, max_pd: 0.3}
  - {band: top, max_pd: 1.0}
fallback_scorecard:
  allow_auto_approve: true
  base_points: 10
  factors:
    - id: bureau
      bins: [{when: {column: bureau_score, op: ">=", value: 700}, points: 20}]
      default_points: -5
  pd_table: [{min_points: 30, pd: 0.05}, {min_points: 5, pd: 0.4}]
reasons: {max_reasons: 2, required_for: [auto_decline]}
"""
