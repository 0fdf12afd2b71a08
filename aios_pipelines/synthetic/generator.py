"""The embedded synthetic lender: credit applications, hidden default truth and outcomes.

The platform needs a lender to talk to when no real one is connected. This module plays
that lender for the shipped data contract (``assets/contract/credit_applications.yaml``):
it produces one file of applications per day and, once a loan's performance window has
passed, one file of outcomes per day, in the landing layout that ingestion reads::

    landing/applications/YYYY-MM-DD/applications.csv   (or .parquet)
    landing/outcomes/YYYY-MM-DD/outcomes.csv           (or .parquet; folder = outcome date)

Properties the rest of the platform relies on:

* Deterministic: the same arguments give byte-identical files. Each day is seeded from
  ``(seed, day)`` alone, so one day's data does not depend on how many days are made, and
  each variable has its own random stream, so a drift or a bad-row rate changes only what
  it is meant to change.
* Realistic, correlated inputs (lognormal incomes, a latent credit quality behind bureau
  score, delinquencies and utilisation, loan amounts tied to income and purpose, ...).
* A hidden, non-linear default process (hinges on bureau score, utilisation x
  delinquencies interaction, loan-to-income, payment burden, thin-file penalty, channel and
  purpose effects) with a base default rate of about 10%.
* Optional drift from a given day (``DriftSpec``) and a small fraction of bad rows that
  break the contract in ways ingestion must catch; nothing in the files marks them.
* Vectorised with numpy and built with polars: a million applications take seconds.

Timestamps are UTC and stored timezone-naive (``Datetime("us")`` in Parquet,
``2026-01-05T09:13:22`` in CSV) so both file formats read back to the same type.

This module is pure: it imports neither Dagster nor anything with side effects.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

__all__ = [
    "APPLICATION_COLUMNS",
    "DRIFT_KINDS",
    "FILE_FORMATS",
    "OUTCOME_COLUMNS",
    "DriftSpec",
    "GenerationSummary",
    "day_file_format",
    "generate_applications",
    "write_landing",
]

DRIFT_KINDS = ("income_shift", "channel_mix")
FILE_FORMATS = ("csv", "parquet", "mixed")

APPLICATIONS_FOLDER = "applications"
OUTCOMES_FOLDER = "outcomes"
APPLICATIONS_STEM = "applications"
OUTCOMES_STEM = "outcomes"
CSV_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S"

PURPOSES = ("debt_consolidation", "home_improvement", "car", "medical", "education", "business", "other")
TERMS = (12, 24, 36, 48, 60)
REGIONS = ("north", "south", "east", "west", "central")
CHANNELS = ("branch", "web", "mobile", "broker")

APPLICATIONS_SCHEMA: dict[str, pl.DataType] = {
    "application_id": pl.String(),
    "application_ts": pl.Datetime("us"),
    "annual_income": pl.Float64(),
    "employment_length_years": pl.Float64(),
    "existing_debt": pl.Float64(),
    "debt_to_income": pl.Float64(),
    "credit_history_months": pl.Int64(),
    "delinquencies_2y": pl.Int64(),
    "bureau_score": pl.Int64(),
    "credit_utilisation": pl.Float64(),
    "loan_amount": pl.Float64(),
    "purpose": pl.String(),
    "term_months": pl.Int64(),
    "region": pl.String(),
    "channel": pl.String(),
}
APPLICATION_COLUMNS = tuple(APPLICATIONS_SCHEMA)

OUTCOMES_SCHEMA: dict[str, pl.DataType] = {
    "application_id": pl.String(),
    "outcome_date": pl.Date(),
    "defaulted": pl.Int64(),
}
OUTCOME_COLUMNS = tuple(OUTCOMES_SCHEMA)

TRUTH_SCHEMA: dict[str, pl.DataType] = {
    "application_id": pl.String(),
    "default_probability": pl.Float64(),
    "defaulted": pl.Int64(),
}

# One independent random stream per variable, spawned from SeedSequence((seed, day)).
# Append new names at the end only: the position decides the stream.
_STREAMS = (
    "ts", "age", "quality", "income", "self_employed", "employment", "history",
    "delinquencies", "utilisation", "bureau", "bureau_missing", "debt", "dti",
    "purpose", "loan", "term", "channel", "region", "unobserved", "default", "bad_rows",
)

# Ground-truth effects on the default log-odds (index-aligned with the tuples above).
_PURPOSE_LOGIT = np.array([0.10, -0.20, -0.25, 0.30, 0.15, 0.50, 0.05])
_CHANNEL_LOGIT = np.array([-0.20, 0.0, 0.15, 0.35])
_REGION_LOGIT = np.array([0.05, 0.10, 0.0, -0.05, -0.10])
_TERM_LOGIT = np.array([-0.10, 0.0, 0.0, 0.05, 0.15])
_REGION_INCOME = np.array([-0.05, -0.08, 0.0, 0.06, 0.10])
# Intercept calibrated so that the undrifted base default rate is about 10%.
_INTERCEPT = -4.5
_APR = 0.11

# Bad rows -------------------------------------------------------------------------------
_NOT_NULLABLE = (
    "application_ts", "annual_income", "existing_debt", "debt_to_income",
    "credit_history_months", "delinquencies_2y", "credit_utilisation", "loan_amount",
    "purpose", "term_months", "region", "channel",
)
_NOT_NULLABLE_NUMBERS = (
    "annual_income", "existing_debt", "debt_to_income", "credit_history_months",
    "delinquencies_2y", "credit_utilisation", "loan_amount", "term_months",
)
_OUT_OF_RANGE: tuple[tuple[str, Any], ...] = (
    ("annual_income", -52000.0),
    ("bureau_score", 900),
    ("credit_utilisation", 2.75),
    ("debt_to_income", 7.5),
    ("delinquencies_2y", -1),
    ("loan_amount", 250.0),
    ("loan_amount", 1_250_000.0),
    ("employment_length_years", 75.0),
    ("credit_history_months", -12),
    ("term_months", 18),
)
_UNKNOWN_CATEGORY = (("purpose", "crypto"), ("channel", "fax"), ("region", "atlantis"))
_NON_NUMERIC_TEXT = ("n/a", "abc")
_TYPED_BAD_KINDS = ("missing_required", "out_of_range", "unknown_category")
_TEXT_BAD_KINDS = _TYPED_BAD_KINDS + ("non_numeric", "ts_other_day")


@dataclass(frozen=True)
class DriftSpec:
    """A change in the applicant population from ``start`` on.

    ``income_shift``: declared incomes fall to ``0.7 ** strength`` of what they would have
    been while debts and requested amounts stay, so debt-to-income and loan-to-income rise
    (and so does risk). ``channel_mix``: broker and mobile take over the channel mix
    (fully at strength >= 1) and broker applicants get riskier, both in what the files
    show (weaker credit quality) and in what they do not (extra default risk).
    """

    start: dt.date
    kind: str
    strength: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in DRIFT_KINDS:
            raise ValueError(f"drift kind must be one of {DRIFT_KINDS}, got {self.kind!r}")
        if not np.isfinite(self.strength) or self.strength < 0:
            raise ValueError(f"drift strength must be a finite number >= 0, got {self.strength!r}")
        if not isinstance(self.start, dt.date) or isinstance(self.start, dt.datetime):
            raise ValueError(f"drift start must be a date, got {self.start!r}")

    def active_on(self, day: dt.date) -> bool:
        return day >= self.start


@dataclass(frozen=True)
class GenerationSummary:
    application_files: list[Path]
    outcome_files: list[Path]
    applications: int
    outcomes: int
    bad_rows: int
    days: int
    first_day: dt.date
    last_day: dt.date
    as_of: dt.date


@dataclass(frozen=True)
class _BadRow:
    row: int
    kind: str
    column: str
    value: Any


# ----------------------------------------------------------------------------------------
# Simulation
# ----------------------------------------------------------------------------------------


def _streams(seed: int, day: dt.date) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence([int(seed), day.toordinal()]).spawn(len(_STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(_STREAMS, children)}


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pick(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One categorical draw per row from row-wise (unnormalised) weights, vectorised."""
    cumulative = np.cumsum(weights, axis=1)
    u = rng.random(weights.shape[0]) * cumulative[:, -1]
    index = (u[:, None] >= cumulative).sum(axis=1)
    return np.minimum(index, weights.shape[1] - 1)


def _annuity(principal: np.ndarray, term_months: np.ndarray, apr: float = _APR) -> np.ndarray:
    r = apr / 12.0
    return principal * r / (1.0 - (1.0 + r) ** (-term_months.astype(np.float64)))


def _application_ids(day: dt.date, n: int) -> pl.Series:
    prefix = f"APP-{day:%Y%m%d}-"
    return (
        pl.select(pl.lit(prefix) + pl.int_range(0, n, dtype=pl.Int64).cast(pl.String).str.zfill(6))
        .to_series()
        .alias("application_id")
    )


def _simulate_day(
    day: dt.date, n: int, seed: int, drift: DriftSpec | None
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, np.random.Generator]]:
    """Clean applications and hidden truth for one day (no bad rows yet)."""
    rng = _streams(seed, day)
    income_factor = 1.0
    channel_shift = 0.0
    broker_risk = 0.0
    if drift is not None and drift.active_on(day):
        if drift.kind == "income_shift":
            income_factor = 0.7 ** drift.strength
        else:
            channel_shift = min(drift.strength, 1.0)
            broker_risk = drift.strength

    # When: busy around early afternoon, some traffic at any hour; ids follow time order.
    g = rng["ts"]
    busy = g.normal(13.5 * 3600.0, 3.5 * 3600.0, n)
    anytime = g.uniform(0.0, 86400.0, n)
    seconds = np.where(g.random(n) < 0.85, busy, anytime)
    seconds = np.sort(np.mod(np.floor(seconds), 86400.0).astype(np.int64))
    midnight_us = int((dt.datetime(day.year, day.month, day.day) - dt.datetime(1970, 1, 1)).total_seconds()) * 1_000_000
    ts_us = midnight_us + seconds * 1_000_000

    # Who: age (not published) drives history, employment and channel.
    age = np.minimum(19.0 + rng["age"].gamma(2.2, 8.5, n), 79.0)

    region = rng["region"].choice(len(REGIONS), size=n, p=[0.20, 0.22, 0.20, 0.18, 0.20])

    base_channel = np.array([0.22, 0.38, 0.25, 0.15])
    drifted_channel = np.array([0.06, 0.14, 0.42, 0.38])
    channel_w = np.broadcast_to((1 - channel_shift) * base_channel + channel_shift * drifted_channel, (n, 4)).copy()
    channel_w[:, 0] *= np.where(age > 55, 2.0, 1.0)
    channel_w[:, 2] *= np.where(age < 35, 1.6, 1.0)
    channel = _pick(rng["channel"], channel_w)
    is_broker = channel == 3

    # Latent credit quality: seen only through its traces in the bureau data.
    quality = rng["quality"].standard_normal(n)
    quality = quality - 0.5 * broker_risk * is_broker

    log_income = (
        10.75 + 0.22 * quality + 0.012 * np.clip(age - 19.0, 0.0, 30.0) + _REGION_INCOME[region]
        + 0.5 * rng["income"].standard_normal(n)
    )
    income_before_drift = np.round(np.clip(np.exp(log_income), 6000.0, 5_000_000.0), -2)
    annual_income = np.round(income_before_drift * income_factor, 2)

    self_employed = rng["self_employed"].random(n) < 0.08
    employment = np.minimum(rng["employment"].exponential(1.0, n) * (3.0 + 0.12 * (age - 19.0)), age - 18.0)
    employment = np.round(np.clip(employment, 0.0, 60.0), 1)

    history = np.floor((age - 18.0) * 12.0 * rng["history"].beta(2.5, 1.6, n)).astype(np.int64)
    history = np.clip(history, 0, 900)

    delinquencies = rng["delinquencies"].poisson(np.exp(-1.7 - 0.85 * quality))
    delinquencies = np.clip(delinquencies, 0, 50).astype(np.int64)

    g = rng["utilisation"]
    utilisation = _expit(-0.7 - 0.9 * quality + 0.8 * g.standard_normal(n)) * 1.25
    utilisation = np.where(g.random(n) < 0.08, 0.0, utilisation)
    utilisation = np.round(np.clip(utilisation, 0.0, 1.5), 4)

    g = rng["bureau"]
    bureau = (
        700.0 + 48.0 * quality - 20.0 * np.minimum(delinquencies, 5) - 70.0 * np.maximum(utilisation - 0.3, 0.0)
        + 0.15 * np.minimum(history, 300) - 22.0 + 22.0 * g.standard_normal(n)
    )
    bureau = np.clip(np.rint(bureau), 300, 850).astype(np.int64)
    thin_file_p = np.where(history < 24, 0.5, np.where(history < 48, 0.12, 0.015))
    bureau_missing = rng["bureau_missing"].random(n) < thin_file_p

    g = rng["debt"]
    has_debt = g.random(n) < 0.88
    debt_ratio = np.exp(np.log(0.28) - 0.25 * quality + 0.6 * (utilisation - 0.4) + 0.7 * g.standard_normal(n))
    existing_debt = np.round(np.clip(income_before_drift * debt_ratio * has_debt, 0.0, 10_000_000.0), 2)

    other_payments = rng["dti"].beta(2.0, 5.0, n) * 0.12 * income_before_drift / 12.0
    monthly_debt_service = 0.03 * existing_debt + other_payments
    debt_to_income = np.round(np.clip(monthly_debt_service / (annual_income / 12.0), 0.0, 5.0), 4)

    purpose_w = np.broadcast_to(np.array([0.36, 0.14, 0.15, 0.06, 0.07, 0.06, 0.16]), (n, 7)).copy()
    purpose_w[:, 0] *= 0.6 + utilisation
    purpose_w[:, 4] *= np.where(age < 27, 3.0, 1.0)
    purpose_w[:, 5] *= np.where(self_employed, 6.0, 1.0)
    purpose = _pick(rng["purpose"], purpose_w)

    purpose_multiple = np.array([0.22, 0.30, 0.32, 0.08, 0.20, 0.40, 0.12])[purpose]
    requested = (income_before_drift * purpose_multiple + np.where(purpose == 0, 0.35 * existing_debt, 0.0)) * np.exp(
        0.5 * rng["loan"].standard_normal(n)
    )
    loan_amount = np.clip(np.round(requested, -2), 500.0, 250_000.0)

    term_position = (np.log(loan_amount) - np.log(3000.0)) / (np.log(60000.0) - np.log(3000.0)) * 4.0
    term_position += np.where((purpose == 1) | (purpose == 2), 0.3, 0.0) + 0.8 * rng["term"].standard_normal(n)
    term_index = np.clip(np.rint(term_position), 0, 4).astype(np.int64)
    term_months = np.array(TERMS, dtype=np.int64)[term_index]

    # The hidden default process -------------------------------------------------------
    score = bureau.astype(np.float64)
    score_effect = np.where(
        bureau_missing,
        0.9,
        0.008 * np.maximum(700.0 - score, 0.0) + 0.010 * np.maximum(600.0 - score, 0.0)
        - 0.005 * np.maximum(score - 740.0, 0.0),
    )
    monthly_income = annual_income / 12.0
    burden = debt_to_income + _annuity(loan_amount, term_months) / monthly_income
    loan_to_income = loan_amount / annual_income
    capped_delinquencies = np.minimum(delinquencies, 5).astype(np.float64)
    logit = (
        _INTERCEPT
        + score_effect
        + np.where(history < 24, 0.3, 0.0)
        + 0.35 * capped_delinquencies
        + 1.1 * np.maximum(utilisation - 0.6, 0.0) + 1.5 * np.maximum(utilisation - 1.0, 0.0)
        + 0.5 * np.minimum(capped_delinquencies, 3.0) * utilisation
        + 1.8 * np.maximum(loan_to_income - 0.3, 0.0)
        + 2.5 * np.maximum(burden - 0.35, 0.0) + 3.0 * np.maximum(burden - 0.6, 0.0)
        + np.where(self_employed, 0.3, 0.2 * np.maximum(2.0 - employment, 0.0))
        + _CHANNEL_LOGIT[channel] + _PURPOSE_LOGIT[purpose] + _REGION_LOGIT[region] + _TERM_LOGIT[term_index]
        + 0.4 * broker_risk * is_broker
        - 0.25 * quality
        + 1.3 * rng["unobserved"].standard_normal(n)
    )
    default_probability = _expit(logit)
    defaulted = (rng["default"].random(n) < default_probability).astype(np.int64)

    ids = _application_ids(day, n)
    applications = pl.DataFrame(
        {
            "application_id": ids,
            "application_ts": pl.Series(ts_us, dtype=pl.Int64).cast(pl.Datetime("us")),
            "annual_income": annual_income,
            "employment_length_years": pl.Series(employment).scatter(np.flatnonzero(self_employed), None),
            "existing_debt": existing_debt,
            "debt_to_income": debt_to_income,
            "credit_history_months": history,
            "delinquencies_2y": delinquencies,
            "bureau_score": pl.Series(bureau).scatter(np.flatnonzero(bureau_missing), None),
            "credit_utilisation": utilisation,
            "loan_amount": loan_amount,
            "purpose": pl.Series(PURPOSES, dtype=pl.String).gather(purpose),
            "term_months": term_months,
            "region": pl.Series(REGIONS, dtype=pl.String).gather(region),
            "channel": pl.Series(CHANNELS, dtype=pl.String).gather(channel),
        },
        schema=APPLICATIONS_SCHEMA,
    )
    truth = pl.DataFrame(
        {"application_id": ids, "default_probability": default_probability, "defaulted": defaulted},
        schema=TRUTH_SCHEMA,
    )
    return applications, truth, rng


# ----------------------------------------------------------------------------------------
# Bad rows
# ----------------------------------------------------------------------------------------


def _plan_bad_rows(
    rng: np.random.Generator, applications: pl.DataFrame, rate: float, text_format: bool
) -> list[_BadRow]:
    """Choose which rows break the contract and how; every plan breaks exactly one rule."""
    n = applications.height
    count = int(rng.binomial(n, rate)) if n and rate > 0 else 0
    if count == 0:
        return []
    rows = np.sort(rng.choice(n, size=count, replace=False))
    kinds = _TEXT_BAD_KINDS if text_format else _TYPED_BAD_KINDS
    kind_index = rng.integers(0, len(kinds), size=count)
    option = rng.integers(0, 1 << 30, size=count)
    plan: list[_BadRow] = []
    for row, k, o in zip(rows.tolist(), kind_index.tolist(), option.tolist()):
        kind = kinds[k]
        if kind == "missing_required":
            plan.append(_BadRow(row, kind, _NOT_NULLABLE[o % len(_NOT_NULLABLE)], None))
        elif kind == "out_of_range":
            column, value = _OUT_OF_RANGE[o % len(_OUT_OF_RANGE)]
            plan.append(_BadRow(row, kind, column, value))
        elif kind == "unknown_category":
            column, value = _UNKNOWN_CATEGORY[o % len(_UNKNOWN_CATEGORY)]
            plan.append(_BadRow(row, kind, column, value))
        elif kind == "non_numeric":
            column = _NOT_NULLABLE_NUMBERS[o % len(_NOT_NULLABLE_NUMBERS)]
            plan.append(_BadRow(row, kind, column, _NON_NUMERIC_TEXT[(o >> 8) % len(_NON_NUMERIC_TEXT)]))
        else:  # ts_other_day: same time of day, one to three days off
            offsets = (-3, -2, -1, 1, 2, 3)
            ts = applications["application_ts"][row]
            plan.append(_BadRow(row, kind, "application_ts", ts + dt.timedelta(days=offsets[(o >> 8) % len(offsets)])))
    return plan


def _apply_bad_rows(applications: pl.DataFrame, plan: list[_BadRow]) -> pl.DataFrame:
    """Write the planned breakages in; text values turn their column into strings."""
    if not plan:
        return applications
    by_column: dict[str, list[_BadRow]] = {}
    for bad in plan:
        by_column.setdefault(bad.column, []).append(bad)
    replaced = []
    for column, bads in by_column.items():
        series = applications[column]
        typed = [b for b in bads if b.kind != "non_numeric"]
        text = [b for b in bads if b.kind == "non_numeric"]
        if typed:
            values = pl.Series([b.value for b in typed], dtype=series.dtype)
            series = series.scatter([b.row for b in typed], values)
        if text:
            series = series.cast(pl.String).scatter([b.row for b in text], [b.value for b in text])
        replaced.append(series.alias(column))
    return applications.with_columns(replaced)


def _day_data(
    day: dt.date, n: int, seed: int, drift: DriftSpec | None, bad_row_rate: float, text_format: bool
) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray]:
    _check_generation_args(n, seed, bad_row_rate)
    applications, truth, rng = _simulate_day(day, n, seed, drift)
    plan = _plan_bad_rows(rng["bad_rows"], applications, bad_row_rate, text_format)
    bad_mask = np.zeros(n, dtype=bool)
    bad_mask[[b.row for b in plan]] = True
    return _apply_bad_rows(applications, plan), truth, bad_mask


def _check_generation_args(n: int, seed: int, bad_row_rate: float) -> None:
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= bad_row_rate <= 1.0:
        raise ValueError(f"bad_row_rate must be between 0 and 1, got {bad_row_rate!r}")


def generate_applications(
    day: dt.date,
    n: int,
    seed: int,
    drift: DriftSpec | None = None,
    bad_row_rate: float = 0.0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(applications, hidden_truth) for one day; hidden_truth has application_id, default_probability, defaulted.

    Applications are typed as the contract says (``APPLICATIONS_SCHEMA``). Bad rows here
    are of the kinds a typed file can carry (nulls in required fields, out-of-range values,
    unknown categories); the CSV files written by ``write_landing`` also carry text in
    numeric fields and timestamps from another day. The truth covers every row, bad or not.
    """
    applications, truth, _ = _day_data(day, n, seed, drift, bad_row_rate, text_format=False)
    return applications, truth


# ----------------------------------------------------------------------------------------
# Landing files
# ----------------------------------------------------------------------------------------


def day_file_format(file_format: str, day_index: int) -> str:
    """The format of the files of the ``day_index``-th generated day ("mixed": even CSV, odd Parquet)."""
    if file_format not in FILE_FORMATS:
        raise ValueError(f"file_format must be one of {FILE_FORMATS}, got {file_format!r}")
    if file_format == "mixed":
        return "csv" if day_index % 2 == 0 else "parquet"
    return file_format


def _serialise(frame: pl.DataFrame, file_format: str) -> bytes:
    buffer = io.BytesIO()
    if file_format == "csv":
        frame.write_csv(buffer, datetime_format=CSV_DATETIME_FORMAT, date_format="%Y-%m-%d")
    else:
        frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


def _write_day_file(folder: Path, stem: str, file_format: str, frame: pl.DataFrame) -> Path:
    """Write atomically; leave an identical file untouched; drop the other format's file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.{file_format}"
    other = folder / f"{stem}.{'parquet' if file_format == 'csv' else 'csv'}"
    if other.exists():
        other.unlink()
    payload = _serialise(frame, file_format)
    if path.exists() and path.stat().st_size == len(payload) and path.read_bytes() == payload:
        return path
    tmp = folder / f".{path.name}.tmp"
    tmp.write_bytes(payload)
    os.replace(tmp, path)
    return path


def write_landing(
    landing_dir: Path,
    start: dt.date,
    days: int,
    per_day: int,
    seed: int = 42,
    file_format: str = "mixed",
    performance_window_days: int = 60,
    as_of: dt.date | None = None,
    drift: DriftSpec | None = None,
    bad_row_rate: float = 0.002,
) -> GenerationSummary:
    """Write ``days`` days of applications from ``start``, and the outcomes matured by ``as_of``.

    Application files go to ``applications/<day>/applications.<fmt>``. The outcomes of
    application day ``d`` go to ``outcomes/<d + performance_window_days>/outcomes.<fmt>``
    (same format as that application day) when that date is on or before ``as_of``
    (default: the last application day). Bad rows get no outcome. Rewriting with the same
    arguments leaves files byte-identical (unchanged files are not even rewritten).
    """
    landing_dir = Path(landing_dir)
    if int(days) != days or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    if int(performance_window_days) != performance_window_days or performance_window_days < 0:
        raise ValueError(f"performance_window_days must be a non-negative integer, got {performance_window_days!r}")
    day_file_format(file_format, 0)  # validates
    _check_generation_args(per_day, seed, bad_row_rate)
    last_day = start + dt.timedelta(days=days - 1)
    as_of = last_day if as_of is None else as_of
    window = dt.timedelta(days=performance_window_days)

    application_files: list[Path] = []
    outcome_files: list[Path] = []
    total_applications = total_outcomes = total_bad = 0
    for index in range(days):
        day = start + dt.timedelta(days=index)
        fmt = day_file_format(file_format, index)
        applications, truth, bad_mask = _day_data(day, per_day, seed, drift, bad_row_rate, text_format=fmt == "csv")
        application_files.append(
            _write_day_file(landing_dir / APPLICATIONS_FOLDER / day.isoformat(), APPLICATIONS_STEM, fmt, applications)
        )
        total_applications += applications.height
        total_bad += int(bad_mask.sum())

        outcome_day = day + window
        if outcome_day <= as_of:
            outcomes = (
                truth.filter(pl.Series(~bad_mask))
                .select(
                    "application_id",
                    pl.lit(outcome_day, dtype=pl.Date).alias("outcome_date"),
                    "defaulted",
                )
            )
            outcome_files.append(
                _write_day_file(landing_dir / OUTCOMES_FOLDER / outcome_day.isoformat(), OUTCOMES_STEM, fmt, outcomes)
            )
            total_outcomes += outcomes.height

    return GenerationSummary(
        application_files=application_files,
        outcome_files=outcome_files,
        applications=total_applications,
        outcomes=total_outcomes,
        bad_rows=total_bad,
        days=days,
        first_day=start,
        last_day=last_day,
        as_of=as_of,
    )
