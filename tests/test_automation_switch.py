"""The automation stop switch: default, pause/resume history, validation, atomic writes."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from aios_pipelines.policy import automation_switch
from aios_pipelines.policy.automation_switch import (
    AutomationChange,
    AutomationSwitchError,
    is_paused,
    pause,
    resume,
    status,
    switch_path,
)
from aios_pipelines.policy.evaluate import evaluate
from aios_pipelines.policy.policy import DEFAULT_POLICY_PATH, load_policy
from aios_pipelines.settings import AiosPaths


@pytest.fixture()
def control(tmp_path: Path) -> Path:
    return AiosPaths(tmp_path / "home").control


def test_no_file_means_not_paused(control: Path) -> None:
    current = status(control)
    assert current.paused is False
    assert current.history == [] and current.changed_by is None and current.changed_at is None
    assert is_paused(control) is False
    assert not control.exists()  # reading never creates anything


def test_switch_lives_in_the_control_folder(control: Path) -> None:
    pause(control, "ops", "drill")
    assert switch_path(control) == control / "automation.json"
    assert (control / "automation.json").is_file()


def test_pause_then_resume_records_who_why_when_and_survives_reload(control: Path) -> None:
    t0 = datetime(2026, 11, 3, 9, 30, tzinfo=timezone.utc)
    paused = pause(control, "alice", "model drift alert on score PSI", now=t0)
    assert (paused.paused, paused.changed_by, paused.reason) == (True, "alice", "model drift alert on score PSI")
    assert paused.changed_at == "2026-11-03T09:30:00+00:00"

    reloaded = status(control)  # a fresh read of the file
    assert reloaded == paused
    assert is_paused(control) is True

    t1 = t0 + timedelta(hours=2)
    resumed = resume(control, "bob", "drift explained: new broker channel", now=t1)
    assert resumed.paused is False
    assert status(control).history == [
        AutomationChange("pause", "alice", "model drift alert on score PSI", "2026-11-03T09:30:00+00:00"),
        AutomationChange("resume", "bob", "drift explained: new broker channel", "2026-11-03T11:30:00+00:00"),
    ]
    assert (status(control).changed_by, status(control).reason) == ("bob", "drift explained: new broker channel")

    on_disk = json.loads((control / "automation.json").read_text())
    assert on_disk["paused"] is False
    assert [h["who"] for h in on_disk["history"]] == ["alice", "bob"]


def test_times_are_stored_in_utc(control: Path) -> None:
    local = datetime(2026, 11, 3, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    assert pause(control, "alice", "test", now=local).changed_at == "2026-11-03T08:00:00+00:00"
    assert datetime.fromisoformat(resume(control, "alice", "test").changed_at).tzinfo is not None


def test_repeated_pause_is_still_recorded(control: Path) -> None:
    pause(control, "alice", "first")
    again = pause(control, "bob", "still investigating")
    assert again.paused is True
    assert [(h.action, h.who) for h in again.history] == [("pause", "alice"), ("pause", "bob")]


@pytest.mark.parametrize(("who", "why"), [("", "reason"), ("   ", "reason"), ("alice", ""), ("alice", "\n\t"), (None, "x")])
def test_who_and_why_are_required(control: Path, who, why) -> None:
    with pytest.raises(ValueError):
        pause(control, who, why)
    with pytest.raises(ValueError):
        resume(control, who, why)
    assert not (control / "automation.json").exists()


def test_a_failed_write_leaves_the_previous_state_intact(control: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pause(control, "alice", "incident 42")
    before = (control / "automation.json").read_text()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(automation_switch.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        resume(control, "bob", "all clear")
    monkeypatch.undo()
    assert (control / "automation.json").read_text() == before
    assert status(control).paused is True
    assert [p.name for p in control.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("content", ["{not json", '{"paused": "yes", "history": []}', '{"paused": true}',
                                     '{"paused": true, "history": [{"who": "x"}]}'])
def test_a_corrupt_switch_file_is_an_error_not_a_silent_default(control: Path, content: str) -> None:
    control.mkdir(parents=True)
    (control / "automation.json").write_text(content)
    with pytest.raises(AutomationSwitchError, match="automation.json"):
        status(control)


def test_concurrent_changes_all_land_in_the_history(control: Path) -> None:
    def flip(worker: int) -> None:
        for i in range(10):
            (pause if i % 2 == 0 else resume)(control, f"op{worker}", f"change {i}")

    threads = [threading.Thread(target=flip, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = status(control).history
    assert len(history) == 40
    assert sorted((h.who, h.why) for h in history) == sorted(
        (f"op{w}", f"change {i}") for w in range(4) for i in range(10)
    )


def test_the_switch_drives_the_policy(control: Path) -> None:
    policy = load_policy(DEFAULT_POLICY_PATH)
    application = {
        "annual_income": 60000.0, "debt_to_income": 0.2, "credit_history_months": 120, "delinquencies_2y": 0,
        "bureau_score": 750, "credit_utilisation": 0.2, "loan_amount": 5000.0,
    }
    assert evaluate(policy, application, 0.01, automation_paused=is_paused(control)).action == "auto_approve"
    pause(control, "alice", "incident")
    assert evaluate(policy, application, 0.01, automation_paused=is_paused(control)).rule == "automation_paused"
    resume(control, "alice", "resolved")
    assert evaluate(policy, application, 0.01, automation_paused=is_paused(control)).action == "auto_approve"
