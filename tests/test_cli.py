"""The ``aios`` command as a user runs it: ``cli.main([...])`` against a temporary AIOS_HOME."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from aios_pipelines import cli
from aios_pipelines.modeling.registry import ModelRegistry, default_registry_config
from aios_pipelines.settings import AiosPaths
from aios_pipelines.storage.warehouse import Warehouse


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh AIOS_HOME; DAGSTER_HOME unset (and restored afterwards even if a command sets it)."""
    folder = tmp_path / "aios_home"
    monkeypatch.setenv("AIOS_HOME", str(folder))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "placeholder"))  # records the original value ...
    monkeypatch.delenv("DAGSTER_HOME")  # ... so teardown restores it, whatever the command did
    monkeypatch.delenv("AIOS_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("AIOS_CONTRACT", raising=False)
    monkeypatch.delenv("AIOS_POLICY", raising=False)
    return folder


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_generate_writes_landing_files_and_prints_a_summary(home, capsys):
    code, out, _ = run(capsys, "generate", "--days", "3", "--per-day", "50", "--start", "2026-06-01")
    assert code == 0
    assert re.search(r"wrote 150 applications over 3 days \(2026-06-01 \.\. 2026-06-03\) and 0 matured outcomes", out)
    assert str(home / "landing") in out
    days = sorted(p.name for p in (home / "landing" / "applications").iterdir())
    assert days == ["2026-06-01", "2026-06-02", "2026-06-03"]
    rows = 0
    for day in days:
        (file,) = (home / "landing" / "applications" / day).iterdir()
        frame = pl.read_csv(file, infer_schema=False) if file.suffix == ".csv" else pl.read_parquet(file)
        rows += frame.height
    assert rows == 150
    assert not list((home / "landing").glob("outcomes/*/*")), "no outcome matures within 3 days"


def test_paths_lists_every_store_under_aios_home(home, capsys):
    code, out, _ = run(capsys, "paths")
    assert code == 0
    listed = dict(line.split(None, 1) for line in out.strip().splitlines())
    paths = AiosPaths(home.resolve())
    assert listed["home"] == str(paths.home)
    for name in ("landing", "warehouse", "review_store", "mlflow_db", "mlflow_artifacts", "reports"):
        assert listed[name] == str(getattr(paths, name)), name
        assert Path(listed[name]).is_relative_to(paths.home), name
    assert listed["dagster_home"] == str(paths.dagster_home)


def test_automation_pause_status_resume(home, capsys, monkeypatch):
    code, out, _ = run(capsys, "automation", "pause", "--reason", "x", "--who", "bob")
    assert code == 0
    assert "automation PAUSED by bob" in out and out.splitlines()[0].endswith(": x")

    code, out, _ = run(capsys, "automation", "status")
    assert code == 0
    assert out.startswith("automation PAUSED by bob") and "every new application is routed to human review" in out

    with pytest.raises(SystemExit) as exc:
        cli.main(["automation", "resume", "--who", "bob"])  # a reason is required
    assert exc.value.code == 2
    assert "--reason" in capsys.readouterr().err
    assert run(capsys, "automation", "status")[1].startswith("automation PAUSED by bob")

    monkeypatch.delenv("USER", raising=False)
    code, _, err = run(capsys, "automation", "resume", "--reason", "fixed")  # and nobody named
    assert code == 2 and "who is required" in err
    assert run(capsys, "automation", "status")[1].startswith("automation PAUSED")

    code, out, _ = run(capsys, "automation", "resume", "--reason", "incident closed", "--who", "bob")
    assert code == 0
    assert out.startswith("automation on (resumed by bob") and "incident closed" in out
    history = json.loads((home / "control" / "automation.json").read_text())["history"]
    assert [(h["action"], h["who"], h["why"]) for h in history] == [
        ("pause", "bob", "x"), ("resume", "bob", "incident closed")
    ]


def test_model_commands_on_an_empty_registry(home, capsys):
    code, out, err = run(capsys, "model", "list")
    assert code == 0, err
    assert "no model versions registered yet" in out

    code, out, err = run(capsys, "model", "history")
    assert (code, out) == (0, "")

    code, out, err = run(capsys, "model", "rollback", "--reason", "bad model", "--actor", "eve")
    assert code == 2
    assert err.startswith("error: ") and "no champion to roll back" in err


def test_model_commands_act_on_the_registry_named_by_the_environment(home, capsys, monkeypatch, tmp_path):
    """A deployment's registry is ``$AIOS_MLFLOW_TRACKING_URI`` (a server or a database): an
    operator's promote must reach it, not the data directory's embedded one."""
    from test_registry import register, train_booster

    from aios_pipelines.modeling.registry import RegistryConfig

    shared = tmp_path / "shared_registry"
    shared.mkdir()
    # a registry database elsewhere, artifacts in this data directory (as on PostgreSQL)
    registry = ModelRegistry(RegistryConfig(tracking_uri=f"sqlite:///{(shared / 'mlflow.db').as_posix()}",
                                            artifact_location=AiosPaths(home.resolve()).mlflow_artifact_uri))
    plot = shared / "calibration.png"
    plot.write_bytes(b"\x89PNG\r\n\x1a\n")
    register(registry, train_booster(seed=1), plot)
    register(registry, train_booster(seed=2), plot, auc=0.8)
    monkeypatch.setenv("AIOS_MLFLOW_TRACKING_URI", registry.config.tracking_uri)

    code, out, err = run(capsys, "model", "list")
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["2", "1"]
    code, out, err = run(capsys, "model", "promote", "2", "--reason", "reviewed", "--actor", "eve")
    assert code == 0, err
    assert registry.champion().version == 2

    monkeypatch.delenv("AIOS_MLFLOW_TRACKING_URI")
    code, out, _ = run(capsys, "model", "list")
    assert "no model versions registered yet" in out  # the embedded registry was never touched


def test_explain_an_unknown_application(home, capsys):
    code, out, err = run(capsys, "explain", "UNKNOWN")
    assert code == 2
    assert out == ""
    assert err.startswith("error: no warehouse at ") and "aios demo" in err


@pytest.mark.slow
def test_demo_end_to_end_then_explain_and_list(home, capsys):
    # too few days for outcomes to mature and a model to train: refused before any work
    code, _, err = run(capsys, "demo", "--days", "75", "--per-day", "80")
    assert code == 2
    assert "needs at least 90 days" in err
    assert not any((home / "landing").rglob("*.csv"))

    code, out, err = run(capsys, "demo", "--days", "90", "--per-day", "80")
    assert code == 0, err
    assert re.search(r"champion model: credit_risk_model v1, out-of-time AUC 0\.\d{3}, Gini", out)
    mix = re.search(r"decision mix: (.*)", out).group(1)
    for action in ("review", "auto_approve", "auto_decline"):
        assert re.search(rf"{action} [\d,]+ \(\d+%\)", mix), mix
    paths = AiosPaths(home.resolve())
    warehouse = Warehouse(paths.warehouse)
    scored = warehouse.scalar("select count(*) from scored_applications")
    assert re.search(rf"scored_applications\s+{scored:,} rows", out)
    assert scored == warehouse.scalar("select count(*) from application_features") > 0
    # the runs went to the Dagster instance inside AIOS_HOME, where `dagster dev` will show them
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        jobs = {run.job_name for run in instance.get_runs()}
    assert {"ingest_applications", "ingest_loan_outcomes", "retrain_credit_model", "score_applications",
            "publish_review_cases", "copy_review_decisions", "build_analytics"} <= jobs

    registry = ModelRegistry(default_registry_config(paths))
    v1 = registry.get_version(1)
    application_id = warehouse.query(
        "select application_id from scored_applications where action = 'auto_decline' order by application_id limit 1"
    )[0, 0]
    code, out, err = run(capsys, "explain", application_id)
    assert code == 0, err
    assert out.startswith(f"Decision record for application {application_id}")
    sections = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert sections[1:] == [
        "Inputs (as loaded under the data contract)", "Features", "Score", "Model", "Policy", "Action"
    ]
    assert re.search(r"PD 0\.\d{4}, band \w, confidence \d\.\d\d, source model", out)
    assert re.search(r"reason 1: R\d\d ", out)
    assert re.search(rf"mlflow_run_id\s+{v1.run_id}", out)
    assert re.search(rf"training_data_hash\s+{v1.tags['data_snapshot_hash']}", out)
    assert re.search(r"action\s+auto_decline", out)

    code, out, _ = run(capsys, "explain", application_id, "--json")
    record = json.loads(out)
    assert record["model"]["version"] == 1 and record["model"]["mlflow_run_id"] == v1.run_id
    assert record["action"]["action"] == "auto_decline" and 1 <= len(record["score"]["reasons"]) <= 4

    code, _, err = run(capsys, "explain", "APP-NOT-THERE")
    assert code == 2 and "'APP-NOT-THERE' is not in the warehouse" in err

    code, out, err = run(capsys, "model", "list")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [row[:2] for row in rows] == [["1", "champion"]]

    # promote by hand: recorded with who and why in the alias history
    code, out, err = run(capsys, "model", "promote", "1", "--reason", "re-confirmed by credit committee", "--actor", "risk-lead")
    assert code == 0 and "v1 is now the champion" in out, err
    code, out, err = run(capsys, "model", "promote", "7", "--reason", "no such version", "--actor", "risk-lead")
    assert code == 2 and "7" in err
