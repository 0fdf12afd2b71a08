"""The embedded synthetic lender: determinism, contract conformance, outcomes, truth, drift, bad rows, layout."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aios_pipelines.ingestion.contract import DatasetSpec, load_contract
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH
from aios_pipelines.synthetic.generator import (
    APPLICATIONS_SCHEMA,
    OUTCOMES_SCHEMA,
    DriftSpec,
    generate_applications,
    write_landing,
)

START = dt.date(2026, 1, 5)
CONTRACT = load_contract(DEFAULT_CONTRACT_PATH)
APPS = CONTRACT.applications


# ---------------------------------------------------------------------------------------
# Helpers: read the landing area back and check rows against the contract
# ---------------------------------------------------------------------------------------


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read(path: Path) -> pl.DataFrame:
    """CSV comes back as text (as ingestion sees it), Parquet with its stored types."""
    if path.suffix == ".csv":
        return pl.read_csv(path, infer_schema=False)
    return pl.read_parquet(path)


def _violations(frame: pl.DataFrame, spec: DatasetSpec, day: dt.date) -> np.ndarray:
    """Per row: does it break any rule of the contract (types, nulls, ranges, values, day)?"""
    assert frame.columns == spec.column_names
    bad = np.zeros(frame.height, dtype=bool)
    for col in spec.columns:
        raw = frame[col.name]
        if col.type in ("integer", "float"):
            values = raw.cast(pl.Float64, strict=False) if raw.dtype == pl.String else raw.cast(pl.Float64)
            unparsable = (raw.is_not_null() & values.is_null()).to_numpy()
            if col.type == "integer":
                unparsable |= (values.is_not_null() & (values != values.floor())).fill_null(False).to_numpy()
        elif col.type == "timestamp":
            values = (
                raw.str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False) if raw.dtype == pl.String else raw
            )
            unparsable = (raw.is_not_null() & values.is_null()).to_numpy()
        else:
            values = raw.cast(pl.String)
            unparsable = np.zeros(frame.height, dtype=bool)
        bad |= unparsable
        if not col.nullable:
            bad |= values.is_null().to_numpy()
        if col.min is not None:
            bad |= (values < col.min).fill_null(False).to_numpy()
        if col.max is not None:
            bad |= (values > col.max).fill_null(False).to_numpy()
        if col.allowed_values is not None:
            allowed = pl.Series(list(col.allowed_values)).cast(values.dtype)
            bad |= (values.is_not_null() & ~values.is_in(allowed)).to_numpy()
        if col.type == "timestamp":
            bad |= (values.dt.date() != day).fill_null(False).to_numpy()
    return bad


def _application_days(landing: Path) -> dict[dt.date, Path]:
    files = sorted((landing / "applications").glob("*/applications.*"))
    return {dt.date.fromisoformat(p.parent.name): p for p in files}


def _outcome_days(landing: Path) -> dict[dt.date, Path]:
    files = sorted((landing / "outcomes").glob("*/outcomes.*"))
    return {dt.date.fromisoformat(p.parent.name): p for p in files}


# ---------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------


def test_same_arguments_give_byte_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    kwargs = dict(start=START, days=4, per_day=400, performance_window_days=2, bad_row_rate=0.02)
    write_landing(tmp_path / "a", seed=7, **kwargs)
    write_landing(tmp_path / "b", seed=7, **kwargs)
    write_landing(tmp_path / "c", seed=8, **kwargs)
    first, second, other = _hashes(tmp_path / "a"), _hashes(tmp_path / "b"), _hashes(tmp_path / "c")
    assert len(first) == 4 + 2  # 4 application files, outcomes for the 2 matured days
    assert first == second
    assert set(other) == set(first)
    assert all(other[name] != first[name] for name in first)


def test_a_day_does_not_depend_on_how_many_days_are_generated(tmp_path: Path) -> None:
    long = write_landing(tmp_path / "long", START, days=3, per_day=300, file_format="parquet")
    short = write_landing(tmp_path / "short", START + dt.timedelta(days=2), days=1, per_day=300, file_format="parquet")
    assert long.application_files[2].read_bytes() == short.application_files[0].read_bytes()
    apps, truth = generate_applications(START + dt.timedelta(days=2), 300, seed=42, bad_row_rate=0.002)
    assert apps.equals(pl.read_parquet(short.application_files[0]))
    # ... and different days are different draws, not the same rows relabelled.
    other_day, _ = generate_applications(START + dt.timedelta(days=1), 300, seed=42, bad_row_rate=0.002)
    assert not np.array_equal(other_day["annual_income"].to_numpy(), apps["annual_income"].to_numpy())
    assert truth.columns == ["application_id", "default_probability", "defaulted"]
    assert truth["application_id"].equals(apps["application_id"])


def test_rewriting_the_same_landing_leaves_files_untouched(tmp_path: Path) -> None:
    summary = write_landing(tmp_path, START, days=2, per_day=200)
    before = {p: p.stat().st_mtime_ns for p in summary.application_files}
    again = write_landing(tmp_path, START, days=2, per_day=200)
    assert again == summary
    assert {p: p.stat().st_mtime_ns for p in again.application_files} == before


# ---------------------------------------------------------------------------------------
# Contract conformance
# ---------------------------------------------------------------------------------------


def test_schema_matches_the_contract() -> None:
    assert list(APPLICATIONS_SCHEMA) == APPS.column_names
    assert list(OUTCOMES_SCHEMA) == CONTRACT.outcomes.column_names
    apps, _ = generate_applications(START, 50, seed=1)
    assert apps.schema == pl.Schema(APPLICATIONS_SCHEMA)


def test_good_rows_respect_ranges_values_and_nullability(tmp_path: Path) -> None:
    summary = write_landing(tmp_path, START, days=2, per_day=4000, bad_row_rate=0.0)
    assert summary.bad_rows == 0
    frames = []
    for day, path in _application_days(tmp_path).items():
        frame = _read(path)
        violations = _violations(frame, APPS, day)
        assert not violations.any(), frame.filter(pl.Series(violations)).head()
        frames.append(pl.read_csv(path) if path.suffix == ".csv" else frame)
    both = pl.concat([f.select("application_id", "employment_length_years", "bureau_score") for f in frames])
    assert both["application_id"].n_unique() == both.height == 8000
    # Nullable columns are sometimes missing, at about the intended rates.
    assert 0.05 < both["employment_length_years"].null_count() / both.height < 0.11
    assert 0.03 < both["bureau_score"].null_count() / both.height < 0.08
    # Every allowed category actually occurs.
    apps, _ = generate_applications(START, 20_000, seed=3)
    for col in APPS.columns:
        if col.allowed_values is not None:
            assert set(apps[col.name].unique().to_list()) == set(col.allowed_values), col.name


def test_inputs_are_correlated_like_credit_data() -> None:
    apps, _ = generate_applications(START, 20_000, seed=5)
    scored = apps.drop_nulls("bureau_score")
    corr = lambda a, b: np.corrcoef(scored[a].to_numpy(), scored[b].to_numpy())[0, 1]  # noqa: E731
    assert corr("bureau_score", "delinquencies_2y") < -0.2
    assert corr("bureau_score", "credit_utilisation") < -0.3
    assert corr("bureau_score", "credit_history_months") > 0.05
    assert corr("annual_income", "loan_amount") > 0.3
    log_income = np.log(apps["annual_income"].to_numpy())
    assert abs(float(np.mean(log_income) - np.median(log_income))) < 0.05  # lognormal: log is symmetric
    car = apps.filter(pl.col("purpose") == "car")["loan_amount"].median()
    medical = apps.filter(pl.col("purpose") == "medical")["loan_amount"].median()
    assert car > 2 * medical


# ---------------------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------------------


def test_outcomes_only_for_matured_days_dated_application_day_plus_window(tmp_path: Path) -> None:
    window = 3
    summary = write_landing(tmp_path, START, days=8, per_day=300, performance_window_days=window, bad_row_rate=0.01)
    applications = _application_days(tmp_path)
    outcomes = _outcome_days(tmp_path)
    assert summary.as_of == START + dt.timedelta(days=7)
    # Application days 0..4 have matured by day 7; days 5..7 have not.
    assert sorted(outcomes) == [START + dt.timedelta(days=i + window) for i in range(5)]
    assert summary.outcome_files == [outcomes[d] for d in sorted(outcomes)]
    total = 0
    for outcome_day, path in outcomes.items():
        frame = pl.read_csv(path, try_parse_dates=True) if path.suffix == ".csv" else pl.read_parquet(path)
        assert frame.columns == CONTRACT.outcomes.column_names
        assert (frame["outcome_date"] == outcome_day).all()
        assert set(frame["defaulted"].unique().to_list()) <= {0, 1}
        app_day = outcome_day - dt.timedelta(days=window)
        app_frame = _read(applications[app_day])
        good_ids = app_frame.filter(pl.Series(~_violations(app_frame, APPS, app_day)))["application_id"]
        assert sorted(frame["application_id"].to_list()) == sorted(good_ids.to_list())
        assert applications[app_day].suffix == path.suffix
        total += frame.height
    assert total == summary.outcomes


def test_a_later_as_of_matures_more_days(tmp_path: Path) -> None:
    summary = write_landing(
        tmp_path, START, days=4, per_day=100, performance_window_days=10, as_of=START + dt.timedelta(days=12)
    )
    assert [p.parent.name for p in summary.outcome_files] == [
        (START + dt.timedelta(days=10 + i)).isoformat() for i in range(3)
    ]
    assert write_landing(tmp_path / "none", START, days=4, per_day=100, performance_window_days=10).outcome_files == []


# ---------------------------------------------------------------------------------------
# The hidden default process
# ---------------------------------------------------------------------------------------


def test_default_rate_is_plausible_and_falls_with_bureau_score() -> None:
    apps, truth = generate_applications(START, 40_000, seed=11)
    assert 0.07 <= truth["defaulted"].mean() <= 0.13
    assert 0.07 <= truth["default_probability"].mean() <= 0.13
    joined = apps.with_columns(truth["default_probability"], truth["defaulted"]).drop_nulls("bureau_score")
    bands = joined.with_columns(
        band=(pl.col("bureau_score").rank("ordinal") * 5 // (joined.height + 1)).cast(pl.Int64)
    ).group_by("band").agg(pl.col("default_probability").mean(), pl.col("defaulted").mean()).sort("band")
    by_band = bands["default_probability"].to_numpy()
    assert np.all(np.diff(by_band) < 0), by_band
    realised = bands["defaulted"].to_numpy()
    assert realised[0] > 3 * realised[-1]
    # Thin files (no bureau score) are riskier than the median scored applicant.
    thin = truth.filter(apps["bureau_score"].is_null())["default_probability"].mean()
    assert thin > joined["default_probability"].median()


def _with_log_odds(seed: int, n: int) -> pl.DataFrame:
    apps, truth = generate_applications(START, n, seed=seed)
    p = pl.col("default_probability")
    return apps.with_columns(truth["default_probability"]).with_columns(log_odds=(p / (1 - p)).log())


def test_default_process_has_interactions_and_hinges() -> None:
    joined = _with_log_odds(seed=13, n=60_000)

    def mean_log_odds(delinquent: bool, high_util: bool) -> float:
        d = pl.col("delinquencies_2y") >= 2 if delinquent else pl.col("delinquencies_2y") == 0
        u = pl.col("credit_utilisation") > 0.9 if high_util else pl.col("credit_utilisation") < 0.3
        return float(joined.filter(d & u)["log_odds"].mean())

    # Utilisation x delinquencies: high utilisation costs far more log-odds for the delinquent.
    lift_clean = mean_log_odds(False, True) - mean_log_odds(False, False)
    lift_delinquent = mean_log_odds(True, True) - mean_log_odds(True, False)
    assert lift_clean > 0
    assert lift_delinquent - lift_clean > 1.8

    # Hinges on bureau score: log-odds fall steeply at low scores, gently at high ones.
    scored = joined.drop_nulls("bureau_score")

    def slope(low: int, high: int) -> float:
        band = scored.filter(pl.col("bureau_score").is_between(low, high))
        return -float(np.polyfit(band["bureau_score"].to_numpy(), band["log_odds"].to_numpy(), 1)[0])

    assert slope(520, 600) > 3 * slope(740, 820) > 0


def test_gradient_boosting_reaches_a_realistic_auc() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    categorical = [c.name for c in APPS.columns if c.role == "categorical"]
    features = [c.name for c in APPS.columns if c.role not in ("id", "timestamp")]

    def matrix(frame: pl.DataFrame) -> np.ndarray:
        return frame.select(
            pl.col(c).cast(pl.Enum(list(APPS.column(c).allowed_values))).to_physical() if c in categorical else pl.col(c)
            for c in features
        ).to_numpy()

    train, train_truth = generate_applications(START, 20_000, seed=3)
    test, test_truth = generate_applications(START + dt.timedelta(days=1), 20_000, seed=3)
    model = HistGradientBoostingClassifier(
        max_iter=120, learning_rate=0.08, categorical_features=[features.index(c) for c in categorical], random_state=0
    )
    with threadpool_limits(limits=1):  # a single thread: predictable time on a busy machine
        model.fit(matrix(train), train_truth["defaulted"].to_numpy())
        scores = model.predict_proba(matrix(test))[:, 1]
    auc = roc_auc_score(test_truth["defaulted"].to_numpy(), scores)
    assert 0.75 <= auc <= 0.87, auc


# ---------------------------------------------------------------------------------------
# Drift
# ---------------------------------------------------------------------------------------


def test_income_drift_changes_incomes_from_its_start_day_only() -> None:
    drift = DriftSpec(start=START + dt.timedelta(days=2), kind="income_shift")
    for offset in range(4):
        day = START + dt.timedelta(days=offset)
        plain, plain_truth = generate_applications(day, 3000, seed=21)
        drifted, drifted_truth = generate_applications(day, 3000, seed=21, drift=drift)
        if day < drift.start:
            assert drifted.equals(plain) and drifted_truth.equals(plain_truth)
        else:
            ratio = drifted["annual_income"].median() / plain["annual_income"].median()
            assert 0.65 < ratio < 0.75
            assert drifted["debt_to_income"].mean() > 1.3 * plain["debt_to_income"].mean()
            assert drifted["loan_amount"].equals(plain["loan_amount"])
            assert drifted_truth["default_probability"].mean() > plain_truth["default_probability"].mean()


def test_income_drift_shows_in_the_landing_files(tmp_path: Path) -> None:
    drift = DriftSpec(start=START + dt.timedelta(days=2), kind="income_shift", strength=1.0)
    write_landing(tmp_path / "plain", START, days=4, per_day=1000, file_format="parquet")
    write_landing(tmp_path / "drift", START, days=4, per_day=1000, file_format="parquet", drift=drift)
    plain, drifted = _application_days(tmp_path / "plain"), _application_days(tmp_path / "drift")
    for day in plain:
        same = plain[day].read_bytes() == drifted[day].read_bytes()
        assert same == (day < drift.start), day


def test_channel_mix_drift_brings_brokers_and_their_risk() -> None:
    day = START + dt.timedelta(days=1)
    drift = DriftSpec(start=day, kind="channel_mix")
    plain, plain_truth = generate_applications(day, 20_000, seed=31)
    drifted, drifted_truth = generate_applications(day, 20_000, seed=31, drift=drift)
    share = lambda f: f["channel"].is_in(["broker", "mobile"]).mean()  # noqa: E731
    assert share(plain) < 0.5 < share(drifted)
    broker_p = lambda a, t: t.filter(a["channel"] == "broker")["default_probability"].mean()  # noqa: E731
    assert broker_p(drifted, drifted_truth) > 1.3 * broker_p(plain, plain_truth)
    before, _ = generate_applications(START, 500, seed=31, drift=drift)
    assert before.equals(generate_applications(START, 500, seed=31)[0])


def test_drift_spec_is_validated() -> None:
    with pytest.raises(ValueError, match="drift kind"):
        DriftSpec(start=START, kind="bigger_loans")
    with pytest.raises(ValueError, match="strength"):
        DriftSpec(start=START, kind="income_shift", strength=-1.0)


# ---------------------------------------------------------------------------------------
# Bad rows
# ---------------------------------------------------------------------------------------


def test_bad_row_rate_gives_about_that_many_contract_violations(tmp_path: Path) -> None:
    rate, per_day, days = 0.02, 5000, 4
    summary = write_landing(tmp_path, START, days=days, per_day=per_day, bad_row_rate=rate)
    expected = rate * per_day * days
    assert abs(summary.bad_rows - expected) < 4 * np.sqrt(expected)
    found = 0
    text_in_numbers = other_day = 0
    for day, path in _application_days(tmp_path).items():
        frame = _read(path)
        found += int(_violations(frame, APPS, day).sum())
        if path.suffix == ".csv":
            numbers = [c.name for c in APPS.columns if c.is_number]
            text_in_numbers += frame.select(pl.any_horizontal(pl.col(numbers).is_in(["n/a", "abc"]))).sum().item()
            other_day += int((~frame["application_ts"].str.starts_with(day.isoformat())).sum())
        else:
            # Parquet keeps the contract's types; its bad rows are nulls, ranges, categories.
            assert frame.schema == pl.Schema(APPLICATIONS_SCHEMA)
            assert (frame["application_ts"].dt.date() == day).all()
    assert found == summary.bad_rows
    assert text_in_numbers > 0 and other_day > 0
    # Nothing in the files marks the bad rows.
    assert all(_read(p).columns == APPS.column_names for p in summary.application_files)


def test_no_bad_rows_when_the_rate_is_zero_and_all_rows_when_it_is_one() -> None:
    clean, _ = generate_applications(START, 2000, seed=2, bad_row_rate=0.0)
    assert not _violations(clean, APPS, START).any()
    broken, _ = generate_applications(START, 200, seed=2, bad_row_rate=1.0)
    assert _violations(broken, APPS, START).all()


# ---------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_format", "suffixes"),
    [("mixed", [".csv", ".parquet", ".csv"]), ("csv", [".csv"] * 3), ("parquet", [".parquet"] * 3)],
)
def test_layout_and_formats(tmp_path: Path, file_format: str, suffixes: list[str]) -> None:
    summary = write_landing(tmp_path, START, days=3, per_day=50, file_format=file_format, performance_window_days=1)
    days = [START + dt.timedelta(days=i) for i in range(3)]
    assert summary.application_files == [
        tmp_path / "applications" / d.isoformat() / f"applications{s}" for d, s in zip(days, suffixes)
    ]
    assert summary.outcome_files == [
        tmp_path / "outcomes" / (d + dt.timedelta(days=1)).isoformat() / f"outcomes{s}"
        for d, s in zip(days[:2], suffixes[:2])
    ]
    on_disk = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert on_disk == sorted(summary.application_files + summary.outcome_files)  # no temp files left behind
    for path in on_disk:
        if path.suffix == ".parquet":
            pl.read_parquet(path)  # really Parquet
        else:
            assert path.read_bytes().startswith(b"application_id,")  # CSV with a header
    assert (summary.days, summary.first_day, summary.last_day, summary.as_of) == (3, days[0], days[2], days[2])
    assert summary.applications == 150


def test_csv_timestamps_are_iso_and_parquet_types_follow_the_contract(tmp_path: Path) -> None:
    summary = write_landing(tmp_path, START, days=2, per_day=100, bad_row_rate=0.0, performance_window_days=0)
    csv_apps = pl.read_csv(summary.application_files[0], infer_schema=False)
    assert csv_apps["application_ts"].str.contains(r"^2026-01-05T\d{2}:\d{2}:\d{2}$").all()
    assert pl.read_parquet(summary.application_files[1]).schema == pl.Schema(APPLICATIONS_SCHEMA)
    assert pl.read_parquet(summary.outcome_files[1]).schema == pl.Schema(OUTCOMES_SCHEMA)
    assert pl.read_csv(summary.outcome_files[0], infer_schema=False)["outcome_date"].eq("2026-01-05").all()


def test_switching_format_replaces_the_old_file(tmp_path: Path) -> None:
    write_landing(tmp_path, START, days=1, per_day=20, file_format="csv")
    write_landing(tmp_path, START, days=1, per_day=20, file_format="parquet")
    assert sorted(p.name for p in (tmp_path / "applications" / START.isoformat()).iterdir()) == ["applications.parquet"]


def test_arguments_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="file_format"):
        write_landing(tmp_path, START, days=1, per_day=10, file_format="json")
    with pytest.raises(ValueError, match="days"):
        write_landing(tmp_path, START, days=0, per_day=10)
    with pytest.raises(ValueError, match="bad_row_rate"):
        generate_applications(START, 10, seed=1, bad_row_rate=1.5)
    empty, truth = generate_applications(START, 0, seed=1)
    assert empty.height == truth.height == 0 and empty.schema == pl.Schema(APPLICATIONS_SCHEMA)
