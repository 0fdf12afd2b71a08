"""The drift scenario of ``aios demo --drift-from``: the drift check turns red on the drifted
days only, a retraining trigger fires with its evidence, the simulated clock runs until the
drifted applications' outcomes have matured (no label before its window closes), and the
challenger is trained on them: its training window holds drifted days its trees grew on,
its data hash differs from the champion's, and the summary names the trigger and the gate.

The end-to-end case is the demo in miniature: a contract with a 5-day performance window,
a 3-day out-of-time window, 400 applications a day (drift is judged from 200 a day).
"""

from __future__ import annotations

import re
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from aios_pipelines import cli
from aios_pipelines.demo_drift import demo_landing_writer, retraining_clock, run_drift_scenario
from aios_pipelines.modeling.registry import (
    TAG_DATA_SNAPSHOT_HASH,
    TAG_EARLY_STOPPING_START,
    TAG_TRAINING_WINDOW,
    TAG_TRIGGER,
    ModelRegistry,
    default_registry_config,
)
from aios_pipelines.modeling.training import FeatureSpec, TrainingConfig, train_credit_model, training_windows
from aios_pipelines.monitoring.snapshot import drift_by_day, drift_status
from aios_pipelines.monitoring.triggers import FeatureDay, evaluate_triggers, load_trigger_config
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH, AiosPaths
from aios_pipelines.storage.warehouse import Warehouse
from aios_pipelines.synthetic.generator import DriftSpec, write_landing

DEMO_START = date(2026, 6, 1)


def test_training_windows_are_the_ones_train_credit_model_cuts():
    import numpy as np

    rng = np.random.default_rng(3)
    days = [DEMO_START + timedelta(days=i) for i in range(30) if i != 11]  # a day without applications
    n = 40 * len(days)
    x = rng.normal(size=n)
    frame = pl.DataFrame({
        "application_id": [f"A{i:05d}" for i in range(n)],
        "application_date": [d for d in days for _ in range(40)],
        "x": x,
        "defaulted": (rng.uniform(size=n) < 1 / (1 + np.exp(1.5 - x))).astype(np.int64),
    })
    config = TrainingConfig(oot_days=5, max_rounds=20, early_stopping_rounds=5, min_data_in_leaf=10, num_threads=1)
    trained = train_credit_model(frame, FeatureSpec(features=["x"], categorical=[], monotone={}), config)
    windows = training_windows(days, config)
    assert windows.fit[0] == trained.train_start == DEMO_START
    assert windows.early_stopping == (trained.early_stopping_start, trained.train_end)
    assert windows.out_of_time == (trained.oot_start, trained.oot_end)
    assert windows.fit[1] < windows.early_stopping[0] < windows.out_of_time[0]


def test_the_clock_runs_until_the_trees_can_grow_on_drifted_days():
    today, drift, far = date(2026, 9, 28), date(2026, 8, 1), date(2027, 6, 1)
    clock = retraining_clock(DEMO_START, today, drift, 60, far)
    assert clock > today

    def drifted_fit_days(on: date) -> int:
        matured = [DEMO_START + timedelta(days=i) for i in range((on - timedelta(days=60) - DEMO_START).days + 1)]
        return max(0, (training_windows(matured).fit[1] - drift).days + 1)

    assert drifted_fit_days(clock) >= 7 > drifted_fit_days(clock - timedelta(days=1))
    # never past today's partition; no wait when the drifted outcomes have matured already
    assert retraining_clock(DEMO_START, today, drift, 60, date(2026, 10, 15)) == date(2026, 10, 15)
    assert retraining_clock(DEMO_START, clock, drift, 60, far) == clock
    assert retraining_clock(DEMO_START, today, drift, 60, today - timedelta(days=3)) == today


def test_drift_evidence_names_the_drifted_features_and_their_psi():
    from aios_pipelines.monitoring.triggers import DayValue, MonitoringSnapshot

    days = [date(2026, 9, 1) + timedelta(days=i) for i in range(5)]
    feature_days = []
    for i, day in enumerate(days):
        red = i >= 2
        feature_days += [
            FeatureDay(day, "annual_income", red, 0.5 if red else 0.05, 1.2 if red else 0.01),
            FeatureDay(day, "loan_to_income", red and i >= 3, 0.3, 0.4),
            FeatureDay(day, "channel", False, 0.01, None),
        ]
    snapshot = MonitoringSnapshot(
        as_of=datetime(2026, 9, 6),
        champion_version=1,
        champion_data_hash="f" * 64,
        drift_shares=tuple(DayValue(d, 0.3 if i >= 2 else 0.0, 400) for i, d in enumerate(days)),
        feature_days=tuple(feature_days),
    )
    (trigger,) = [t for t in evaluate_triggers(snapshot, load_trigger_config()) if t.name == "drift_share"]
    assert trigger.evidence["days"] == {d.isoformat(): 0.3 for d in days[2:]}
    assert trigger.evidence["features"] == {
        "annual_income": {"drifted_days": 3, "score": 0.5, "psi": 1.2},
        "loan_to_income": {"drifted_days": 2, "score": 0.3, "psi": 0.4},
    }


@pytest.fixture()
def short_window_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AiosPaths:
    contract_dir = tmp_path / "contract"
    contract_dir.mkdir()
    text = DEFAULT_CONTRACT_PATH.read_text()
    assert text.count("performance_window_days: 60") == 1
    (contract_dir / DEFAULT_CONTRACT_PATH.name).write_text(text.replace("performance_window_days: 60",
                                                                        "performance_window_days: 5"))
    shutil.copy(DEFAULT_CONTRACT_PATH.with_name("reason_codes.yaml"), contract_dir / "reason_codes.yaml")
    monkeypatch.setenv("AIOS_CONTRACT", str(contract_dir / DEFAULT_CONTRACT_PATH.name))
    monkeypatch.setenv("AIOS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("AIOS_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("AIOS_RETRAINING_TRIGGERS", raising=False)
    return AiosPaths(tmp_path / "home").ensure()


@pytest.mark.slow
def test_after_drift_the_challenger_learns_from_the_drifted_days(short_window_home, capsys):
    from aios_pipelines.defs.runner import run_job

    paths = short_window_home
    window, oot, per_day = 5, 3, 400
    today = DEMO_START + timedelta(days=15)           # 06-16: outcomes known up to application day 06-11
    drift_from = DEMO_START + timedelta(days=12)     # 06-13: after the champion's newest training day
    drift = DriftSpec(start=drift_from, kind="income_shift")
    write_landing(paths.landing, start=DEMO_START, days=16, per_day=per_day, seed=42,
                  performance_window_days=window, drift=drift)
    quiet = lambda _line: None  # noqa: E731
    run_job("ingest_applications", first_day=DEMO_START, last_day=today, progress=quiet)
    run_job("ingest_loan_outcomes", first_day=DEMO_START + timedelta(days=window), last_day=today, progress=quiet)
    run_job("retrain_credit_model", run_config={"ops": {"credit_risk_model": {"config": {"oot_days": oot}}}},
            progress=quiet)
    run_job("score_applications", first_day=DEMO_START, last_day=today, progress=quiet)
    registry = ModelRegistry(default_registry_config(paths))
    champion = registry.champion()
    assert champion.version == 1 and TAG_TRIGGER not in champion.tags
    assert champion.tags[TAG_TRAINING_WINDOW] == f"{DEMO_START}/{today - timedelta(days=window)}"

    # somebody else's landing files are never rewritten by the demo's clock
    assert demo_landing_writer(paths.landing, start=DEMO_START, seed=43, per_day=per_day, drift=drift,
                               performance_window_days=window) is None
    writer = demo_landing_writer(paths.landing, start=DEMO_START, seed=42, per_day=per_day, drift=drift,
                                 performance_window_days=window)
    assert writer is not None

    capsys.readouterr()
    run_drift_scenario(paths, (DEMO_START, today), drift_from, window, writer,
                       monitor_days_before=4, min_drifted_fit_days=2, oot_days=oot)
    flow = capsys.readouterr().out

    # the drift check is red on the drifted days and on no day before
    days = drift_status(drift_by_day(Warehouse(paths.warehouse)))
    red = days.filter(pl.col("status") == "error")["day"].to_list()
    assert days["day"].min() == drift_from - timedelta(days=4)
    assert red and min(red) == drift_from and red == [d for d in days["day"].to_list() if d >= drift_from]

    # the trigger fired, time passed, and the drifted outcomes arrived only once matured
    assert "trigger drift_share fired" in flow and "[time passes]" in flow
    clock = date.fromisoformat(re.search(r"the simulated clock moves from \S+ to (\S+):", flow).group(1))
    assert clock > today
    store = Warehouse(paths.warehouse)
    assert store.scalar("select max(outcome_date) from raw_loan_outcomes") == clock
    assert store.scalar("select max(application_date) from application_features") == clock
    training = store.read_table("training_set")
    assert training.filter(pl.col("outcome_date") < pl.col("application_date") + pl.duration(days=window)).is_empty()
    assert training["application_date"].max() == clock - timedelta(days=window)

    # the challenger: trained because of the trigger, on drifted days its trees grew on
    versions = registry.list_versions()
    assert [v.version for v in versions] == [2, 1]
    challenger = versions[0]
    assert challenger.tags[TAG_TRIGGER] == "drift_share" or "drift_share" in challenger.tags[TAG_TRIGGER].split(",")
    first_day, last_day = map(date.fromisoformat, challenger.tags[TAG_TRAINING_WINDOW].split("/"))
    assert first_day == DEMO_START and last_day == clock - timedelta(days=window) > drift_from
    assert date.fromisoformat(challenger.tags[TAG_EARLY_STOPPING_START]) > drift_from + timedelta(days=1)
    assert training.filter(pl.col("application_date") >= drift_from).height > 0
    assert challenger.tags[TAG_DATA_SNAPSHOT_HASH] != champion.tags[TAG_DATA_SNAPSHOT_HASH]
    assert challenger.tags["gate_decision"] in ("promoted", "refused")

    # the summary says what happened and why
    capsys.readouterr()
    cli.print_summary(paths, paths.dagster_home, 1.0)
    summary = capsys.readouterr().out
    assert f"turned red on {drift_from} .. {clock}" in summary
    assert re.search(r"retraining trigger: drift_share fired: share of drifted features >= 0\.2 on \d+ of the newest "
                     r"\d+ monitored days .*; red days \S+ \.\. " + str(clock), summary)
    assert re.search(r"drifted features: .*annual_income \(drifted on \d+ days, PSI \d+\.\d\d\)", summary)
    drifted_days = (last_day - drift_from).days + 1
    assert (f"challenger v2 trained on application days {DEMO_START} .. {last_day}, {drifted_days} of them drifted "
            f"(from {drift_from})") in summary
    assert f"data hash {challenger.tags[TAG_DATA_SNAPSHOT_HASH][:12]} (champion v1: " \
           f"{champion.tags[TAG_DATA_SNAPSHOT_HASH][:12]})" in summary
    gate = re.search(r"promotion gate: (promoted|refused): (.*)", summary)
    assert gate and gate.group(1) == challenger.tags["gate_decision"]
    assert re.search(r"AUC \d\.\d{4}", gate.group(2)) and "champion" in gate.group(2)
    assert not gate.group(2).startswith(gate.group(1))  # the decision is said once
    assert re.search(r"champion: v1 -> v[12]", summary)
