"""Fault injection: runs killed with SIGKILL in the middle of a write, a read-only data
directory, a full disk.

The jobs run in a child process exactly as ``aios demo`` runs them (``run_job`` against the
persistent Dagster instance in ``$AIOS_HOME``). A test-only hook in the child
(tests/child_jobs.py) stops the write right after a chosen statement has executed inside its
transaction and tells the parent, which then kills the child with SIGKILL: the kill lands at
the same point of the write every time. The same partition is then re-run normally in a new
process, and every count must reconcile with the landing files or the review store.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from aios_pipelines.ingestion.contract import load_contract
from aios_pipelines.ingestion.landing import discover_landing_files, read_landing_file
from aios_pipelines.review.store import ReviewStore
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH, AiosPaths
from aios_pipelines.storage.warehouse import Warehouse
from aios_pipelines.synthetic.generator import write_landing
from aios_pipelines.synthetic.reviewers import simulate_reviews
from child_jobs import (CHILD, CHILD_TIMEOUT, D1, D2, D3, PER_DAY, child_env, finish, run_child, run_ids,
                        shared_world, start_child, wait_for_marker, wait_until_queued_for_pool)

pytestmark = pytest.mark.slow



# ----------------------------------------------------------------------------- helpers
def kill_mid_write(home: Path, job: str, day: date | None, pause_after: str) -> None:
    """Start ``job`` in a child, wait until it has executed ``pause_after`` inside its write
    transaction, and SIGKILL it there."""
    marker = home.parent / f"paused-{time.monotonic_ns()}"
    proc = start_child(home, {"runs": [{"job": job, "first": day.isoformat() if day else None}],
                              "pause_after": pause_after, "marker": str(marker)})
    try:
        wait_for_marker(proc, marker, job)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def tables(home: Path, *names: str) -> dict[str, pl.DataFrame]:
    wh = Warehouse(AiosPaths(home).warehouse)
    return {n: wh.query(f'select * from "{n}"').sort(pl.all()) if wh.table_exists(n) else None for n in names}


def landing_rows(home: Path, day: date) -> int:
    dataset = load_contract(DEFAULT_CONTRACT_PATH).applications
    return sum(read_landing_file(f.path, dataset)[0].height
               for f in discover_landing_files(AiosPaths(home).landing, dataset) if f.day == day)


def assert_instance_settled(home: Path, killed_job: str) -> None:
    """The killed run is marked failed, no run is left 'started', no pool slot stays claimed."""
    instance = dg.DagsterInstance.from_config(str(AiosPaths(home).dagster_home))
    try:
        runs = instance.get_runs()
        unfinished = [r for r in runs if not r.is_finished]
        assert not unfinished, f"runs left unfinished: {[(r.job_name, r.status) for r in unfinished]}"
        failed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
        assert [r.job_name for r in failed] == [killed_job]
        assert runs[0].status == dg.DagsterRunStatus.SUCCESS and runs[0].job_name == killed_job
        info = instance.event_log_storage.get_concurrency_info("warehouse")
        assert info.claimed_slots == [] and info.pending_steps == []
    finally:
        instance.dispose()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return shared_world(tmp_path_factory)


@pytest.fixture()
def home(world: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(world, copy)
    return copy


# ----------------------------------------------------------------------------- SIGKILL mid-write
@pytest.mark.parametrize(
    "pause_after",
    [
        # inside the transaction that writes raw_applications and its quarantine together
        'insert into "raw_applications"',
        # raw_applications committed; killed while the features of the day are written
        'insert into "application_features"',
    ],
)
def test_ingestion_killed_mid_write_then_rerun_reconciles(home, pause_after):
    before = tables(home, "raw_applications", "quarantined_applications", "application_features")
    kill_mid_write(home, "ingest_applications", D3, pause_after)

    after_kill = tables(home, "raw_applications", "quarantined_applications", "application_features")
    assert after_kill["application_features"].equals(before["application_features"]), "features changed by a killed write"
    if "raw_applications" in pause_after:
        for name in ("raw_applications", "quarantined_applications"):
            assert after_kill[name].equals(before[name]), f"{name} changed by a write that never committed"

    run_child(home, {"runs": [{"job": "ingest_applications", "first": D3.isoformat()}]})

    wh = Warehouse(AiosPaths(home).warehouse)
    raw = wh.query("select * from raw_applications")
    quarantined = wh.query("select * from quarantined_applications")
    features = wh.query("select * from application_features")
    assert raw["application_id"].n_unique() == raw.height, "an application was loaded twice"
    assert features["application_id"].n_unique() == features.height
    loaded_d3 = raw.filter(pl.col("landing_date") == D3)
    bad_d3 = quarantined.filter(pl.col("landing_date") == D3)
    assert bad_d3.select("source_file", "source_row").n_unique() == bad_d3.height
    assert loaded_d3.height + bad_d3.height == landing_rows(home, D3) == PER_DAY
    assert bad_d3.height > 0, "the generator's bad rows must reach the quarantine"
    assert set(features.filter(pl.col("landing_date") == D3)["application_id"]) == set(loaded_d3["application_id"])
    # the days stored before the kill are exactly as they were
    for name, frame in (("raw_applications", raw), ("quarantined_applications", quarantined),
                        ("application_features", features)):
        assert frame.filter(pl.col("landing_date") != D3).sort(pl.all()).equals(before[name])
    assert_instance_settled(home, "ingest_applications")


def test_scoring_killed_while_replacing_a_day_loses_nothing_and_rerun_reconciles(home):
    before = tables(home, "scored_applications")["scored_applications"]
    assert before.filter(pl.col("application_date") == D2).height > 0
    # the old rows of D2 are already deleted inside the transaction when the kill lands
    kill_mid_write(home, "score_applications", D2, 'insert into "scored_applications"')
    assert tables(home, "scored_applications")["scored_applications"].equals(before), "a killed re-score lost rows"

    run_child(home, {"runs": [{"job": "score_applications", "first": D2.isoformat()}]})

    wh = Warehouse(AiosPaths(home).warehouse)
    scored = wh.query("select * from scored_applications")
    features = wh.query("select application_id, landing_date from application_features")
    assert scored["application_id"].n_unique() == scored.height, "an application was scored twice"
    for day in (D1, D2):
        assert set(scored.filter(pl.col("application_date") == day)["application_id"]) == set(
            features.filter(pl.col("landing_date") == day)["application_id"])
    assert scored.filter(pl.col("application_date") == D1).sort(pl.all()).equals(
        before.filter(pl.col("application_date") == D1))
    assert_instance_settled(home, "score_applications")


def test_decision_copy_killed_mid_write_then_rerun_copies_each_decision_once(home):
    paths = AiosPaths(home)
    store = ReviewStore.for_paths(paths).create_all()
    copied_before = tables(home, "human_decisions", "review_events", "review_cases")
    done = simulate_reviews(store, max_cases=10, seed=3)
    assert done["decided"] > 0
    assert store.last_decision_seq() > copied_before["human_decisions"].height

    kill_mid_write(home, "copy_review_decisions", None, 'insert into "human_decisions"')
    after_kill = tables(home, "human_decisions", "review_events", "review_cases")
    for name, frame in after_kill.items():
        assert frame.equals(copied_before[name]), f"{name} changed by a copy that never committed"

    run_child(home, {"runs": [{"job": "copy_review_decisions"}]})

    wh = Warehouse(paths.warehouse)
    decisions = wh.query("select * from human_decisions")
    events = wh.query("select * from review_events")
    in_store = store.decisions_since(0, limit=1_000_000)
    assert decisions.height == len(in_store) == store.last_decision_seq()
    assert decisions["decision_id"].n_unique() == decisions.height, "a decision was copied twice"
    assert set(decisions["decision_id"]) == {d["decision_id"] for d in in_store}
    assert wh.scalar("select max(copied_cursor) from human_decisions") == store.last_decision_seq()
    store_events = store.events_since(0, limit=1_000_000)
    assert events.height == len(store_events) and events["event_id"].n_unique() == events.height
    assert wh.scalar("select count(*) from review_cases") == len(store.all_cases())
    assert_instance_settled(home, "copy_review_decisions")


def test_a_run_killed_while_waiting_for_the_pool_does_not_block_the_run_holding_it(home):
    """The waiting run's queued step would get the slot the holder frees and keep it for
    ever; the holder's next step must still get the pool."""
    marker, release = home.parent / "holder-paused", home.parent / "holder-release"
    holder = start_child(home, {"runs": [{"job": "ingest_applications", "first": D3.isoformat()}],
                                "pause_after": 'insert into "raw_applications"', "marker": str(marker),
                                "hold_until": str(release)})
    waiter = None
    try:
        wait_for_marker(holder, marker, "ingest_applications")
        waiter = start_child(home, {"runs": [{"job": "score_applications", "first": D2.isoformat()}]})
        wait_until_queued_for_pool(home, waiter, "score_applications")
        os.kill(waiter.pid, signal.SIGKILL)
        waiter.communicate(timeout=30)
        release.touch()
        out, _ = finish(holder, "ingest_applications")  # raw_applications, then application_features
    finally:
        release.touch()
        for proc in (holder, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()

    wh = Warehouse(AiosPaths(home).warehouse)
    loaded = wh.scalar("select count(*) from raw_applications where landing_date = ?", [D3])
    assert loaded + wh.scalar("select count(*) from quarantined_applications where landing_date = ?", [D3]) == PER_DAY
    assert wh.scalar("select count(*) from application_features where landing_date = ?", [D3]) == loaded
    instance = dg.DagsterInstance.from_config(str(AiosPaths(home).dagster_home))
    try:
        statuses = {r.job_name: r.status for r in instance.get_runs(limit=2)}
        assert statuses == {"ingest_applications": dg.DagsterRunStatus.SUCCESS,
                            "score_applications": dg.DagsterRunStatus.FAILURE}
        assert instance.get_run_by_id(run_ids(out)[0]).status == dg.DagsterRunStatus.SUCCESS
        info = instance.event_log_storage.get_concurrency_info("warehouse")
        assert info.claimed_slots == [] and info.pending_steps == []
    finally:
        instance.dispose()


# ----------------------------------------------------------------------------- read-only AIOS_HOME
def _can_mount() -> bool:
    """May this process mount in a private mount namespace (root with CAP_SYS_ADMIN)?"""
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as probe:
        done = subprocess.run(["unshare", "-m", "--", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe],
                              capture_output=True)
    return done.returncode == 0


def _as_nobody():
    os.setgid(65534)
    os.setgroups([])
    os.setuid(65534)


def run_aios_on_read_only(home: Path, *args: str) -> subprocess.CompletedProcess:
    """``aios ARGS`` with ``home`` read-only. File modes stop an ordinary user; root ignores
    them, so as root the child sees ``home`` through a read-only bind mount in its own mount
    namespace, or, where mounting is not allowed, runs as nobody."""
    for path in [home, *home.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o555 if path.is_dir() else 0o444)
    command, preexec = [sys.executable, "-m", "aios_pipelines.cli", *args], None
    if os.geteuid() == 0:
        if _can_mount():
            command = ["unshare", "-m", "--", "sh", "-c",
                       'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"', str(home), *command]
        else:
            preexec = _as_nobody
    return subprocess.run(command, env=child_env(home), capture_output=True, text=True, timeout=CHILD_TIMEOUT,
                          preexec_fn=preexec, cwd=tempfile.gettempdir())


@pytest.fixture()
def open_tmp():
    """A folder an unprivileged child can reach (pytest's tmp_path is private to its user)."""
    folder = Path(tempfile.mkdtemp(prefix="aios-readonly-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(folder)


def _refused(stderr: str) -> bool:
    return "Permission denied" in stderr or "Read-only file system" in stderr


def test_read_only_empty_data_directory_gives_a_clear_error(open_tmp):
    home = open_tmp / "home"
    home.mkdir()
    done = run_aios_on_read_only(home, "demo")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"error: cannot create {home / 'landing'}" in done.stderr and _refused(done.stderr), done.stderr
    assert list(home.iterdir()) == []


def test_read_only_populated_data_directory_gives_a_clear_error_and_changes_nothing(world, open_tmp):
    home = open_tmp / "home"
    shutil.copytree(world, home)
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in home.rglob("*")}
    done = run_aios_on_read_only(home, "demo")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"error: cannot write to {home}" in done.stderr and _refused(done.stderr), done.stderr
    assert f"AIOS_HOME={home}" in done.stderr
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in home.rglob("*")} == before


# ----------------------------------------------------------------------------- disk full
def test_full_disk_under_the_warehouse_gives_a_clear_error_naming_the_file(tmp_path):
    """The warehouse folder on a 64 KiB tmpfs (in a private mount namespace of the child) when
    this machine allows it; elsewhere DuckDB's failed commit is reproduced by the child hook."""
    home = tmp_path / "home"
    paths = AiosPaths(home).ensure()
    write_landing(paths.landing, start=D1, days=1, per_day=20, seed=3, performance_window_days=1)
    spec = {"cli": ["demo"]}
    command = [sys.executable, str(CHILD)]
    if _can_mount():
        command = ["unshare", "-m", "--", "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0" && exec "$@"',
                   str(paths.warehouse.parent), *command]
    else:
        spec["enospc"] = True
    done = subprocess.run([*command, json.dumps(spec)], env=child_env(home), capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("DEMO FAILED: ingest_applications failed"), last
    assert f'{paths.warehouse}.wal' in last and "No space left on device" in last, last
    assert "cannot rollback" not in done.stderr
