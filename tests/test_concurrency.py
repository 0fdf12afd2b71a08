"""Concurrency: runs that write the warehouse launched together, dbt building while a day is
ingested or while another process reads the warehouse, and the review service serving while
the pipeline runs. No lock error may reach the user and no run may fail for it.

Jobs run in child processes as ``aios demo`` runs them (tests/child_jobs.py), against one
persistent Dagster instance whose ``warehouse`` pool admits one step at a time. Overlap is
made certain, not hoped for: the first run is held inside its write transaction (holding
the pool slot) until the Dagster instance shows the second run's step queued for the pool,
and dbt is held at its start until the test has taken the warehouse as a reader.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from datetime import date, datetime
from pathlib import Path
from typing import Callable

import dagster as dg
import polars as pl
import pytest
from fastapi.testclient import TestClient

from aios_pipelines.ingestion.contract import load_contract
from aios_pipelines.review.app import create_app
from aios_pipelines.review.store import ReviewStore
from aios_pipelines.settings import AiosPaths, contract_path
from aios_pipelines.storage.warehouse import Warehouse
from aios_pipelines.synthetic.generator import generate_applications
from child_jobs import (CHILD_TIMEOUT, D3, PER_DAY, finish, run_ids, shared_world, start_child, wait_for_marker,
                        wait_until_queued_for_pool)

pytestmark = pytest.mark.slow

LOCK_WORDS = ("could not set lock", "conflicting lock", "database is locked", "warehouselockederror")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return shared_world(tmp_path_factory)


@pytest.fixture()
def home(world: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(world, copy)
    return copy


def instance_of(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(AiosPaths(home).dagster_home))


def assert_no_lock_error(*texts: str) -> None:
    for text in texts:
        lowered = text.lower()
        assert not any(word in lowered for word in LOCK_WORDS), text[-3000:]


def step_intervals(home: Path, ids: list[str]) -> list[tuple[str, str, float, float]]:
    """(run, step, start, end) of every step of these runs."""
    instance = instance_of(home)
    try:
        spans = []
        for run_id in ids:
            run = instance.get_run_by_id(run_id)
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS, (run_id, run and run.status)
            starts, ends = {}, {}
            for record in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_START,
                                                              dg.DagsterEventType.STEP_SUCCESS,
                                                              dg.DagsterEventType.STEP_FAILURE}):
                event = record.dagster_event
                (starts if event.event_type == dg.DagsterEventType.STEP_START else ends)[event.step_key] = record.timestamp
            assert starts and set(starts) == set(ends)
            spans += [(run_id, step, starts[step], ends[step]) for step in starts]
        return spans
    finally:
        instance.dispose()


def assert_serialised(spans: list[tuple[str, str, float, float]]) -> None:
    """Every step here writes the warehouse: no two of different runs may overlap in time."""
    for i, (run_a, step_a, start_a, end_a) in enumerate(spans):
        for run_b, step_b, start_b, end_b in spans[i + 1:]:
            if run_a != run_b:
                assert end_a <= start_b or end_b <= start_a, f"{step_a} ({run_a[:8]}) overlapped {step_b} ({run_b[:8]})"


def hold_and_race(home: Path, first: dict, pause_after: str, second: dict,
                  after_release: Callable[[subprocess.Popen], None] | None = None,
                  ) -> tuple[tuple[str, str], tuple[str, str]]:
    """Start the run ``first`` and hold it inside its warehouse write (it keeps its pool slot);
    start the child ``second``; let the first go once the second's step waits for the pool,
    then call ``after_release(second)``. Both children must succeed."""
    marker, release = home.parent / "first-paused", home.parent / "first-release"
    a = start_child(home, {"runs": [first], "pause_after": pause_after, "marker": str(marker),
                           "hold_until": str(release)})
    b = None
    try:
        wait_for_marker(a, marker, first["job"])
        b = start_child(home, second)
        wait_until_queued_for_pool(home, b, "the second child")
        release.touch()
        if after_release is not None:
            after_release(b)
        return finish(a, first["job"]), finish(b, "the second child")
    finally:
        release.touch()
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()


# ----------------------------------------------------------------------------- two writers
def test_two_ingestions_of_the_same_day_launched_together_both_succeed_and_store_the_day_once(home):
    run = {"job": "ingest_applications", "first": D3.isoformat()}
    (out_a, err_a), (out_b, err_b) = hold_and_race(home, run, 'insert into "raw_applications"', {"runs": [run]})
    assert_no_lock_error(out_a, err_a, out_b, err_b)
    spans = step_intervals(home, run_ids(out_a) + run_ids(out_b))
    assert len({s[0] for s in spans}) == 2
    assert_serialised(spans)

    wh = Warehouse(AiosPaths(home).warehouse)
    raw = wh.query("select application_id, landing_date from raw_applications")
    quarantined = wh.query("select source_file, source_row, landing_date from quarantined_applications")
    features = wh.query("select application_id, landing_date from application_features")
    assert raw["application_id"].n_unique() == raw.height
    assert quarantined.n_unique() == quarantined.height
    loaded = raw.filter(pl.col("landing_date") == D3).height
    assert loaded + quarantined.filter(pl.col("landing_date") == D3).height == PER_DAY
    assert features.filter(pl.col("landing_date") == D3).height == loaded
    assert features["application_id"].n_unique() == features.height


def test_dbt_build_during_ingestion_waits_for_the_pool_and_for_a_reader_and_both_runs_succeed(home):
    """``build_analytics`` launched while a day is being ingested waits for the ``warehouse``
    pool. When dbt then opens the file, another process reads it (the review service's
    lineage page, ``aios explain``, a notebook hold read-only connections): dbt waits for
    the reader instead of failing the run."""
    gate = home.parent / "dbt"
    held = {}

    def read_while_dbt_starts(build: subprocess.Popen) -> None:
        wait_for_marker(build, Path(f"{gate}.ready"), "build_analytics")
        connects = Path(f"{gate}.connects")
        with Warehouse(AiosPaths(home).warehouse).connect(read_only=True) as con:
            held["rows"] = con.execute("select count(*) from scored_applications").fetchone()[0]
            Path(f"{gate}.go").touch()
            deadline = time.monotonic() + CHILD_TIMEOUT
            # hold the file until dbt has tried to open it three times: it met the lock and waits
            while not connects.exists() or len(connects.read_text().splitlines()) < 3:
                assert build.poll() is None, f"build_analytics ended while a reader held the warehouse: {build.communicate()}"
                assert time.monotonic() < deadline, "dbt never tried to open the warehouse"
                time.sleep(0.1)

    try:
        (out_a, err_a), (out_b, err_b) = hold_and_race(
            home, {"job": "ingest_applications", "first": D3.isoformat()}, 'insert into "raw_applications"',
            {"runs": [{"job": "build_analytics"}], "dbt_gate": str(gate)}, after_release=read_while_dbt_starts)
    finally:
        Path(f"{gate}.go").touch()
    assert_no_lock_error(out_a, err_a, out_b, err_b)
    assert_serialised(step_intervals(home, run_ids(out_a) + run_ids(out_b)))
    wh = Warehouse(AiosPaths(home).warehouse)
    assert wh.scalar("select count(*) from raw_applications where landing_date = ?", [D3]) > 0
    assert wh.scalar("select count(*) from fct_application_decisions") == held["rows"] > 0


# ----------------------------------------------------------------------------- the review service
def test_review_service_serves_without_errors_while_the_pipeline_runs(home, monkeypatch):
    paths = AiosPaths(home)
    monkeypatch.setenv("AIOS_HOME", str(home))  # the lineage endpoint reads this data directory
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    store = ReviewStore.for_paths(paths).create_all()
    _, token = store.add_user("concurrency-senior", "senior_underwriter")
    client = TestClient(create_app(store, session_secret=b"concurrency-test-secret-0123"))
    headers = {"Authorization": f"Bearer {token}"}
    d1_case = store.list_cases(limit=1)[0]  # a case of the world's first days, in the warehouse
    online, _ = generate_applications(date(2026, 3, 20), 200, seed=23)
    bodies = iter(
        {k: (v.isoformat() if isinstance(v, (date, datetime)) else v) for k, v in row.items()}
        for row in online.select(load_contract(contract_path()).applications.column_names).to_dicts()
    )

    answers: list[tuple[float, str, int, str]] = []
    stop = threading.Event()

    def call(what: str, method: str, url: str, **kw) -> dict | None:
        response = getattr(client, method)(url, headers=headers, **kw)
        answers.append((time.time(), what, response.status_code, response.text[:500]))
        return response.json() if response.headers.get("content-type", "").startswith("application/json") else None

    def reviewers() -> None:  # the inbox and the online decisions: the review store
        while not stop.is_set():
            listed = call("list", "get", "/api/tasks", params={"status": "open", "queue": "standard",
                                                                "workable": "true", "limit": 5})
            tasks = (listed or {}).get("tasks", [])
            if tasks:
                call("decide", "post", f"/api/tasks/{tasks[0]['case_id']}/decision",
                     json={"decision": "decline", "reason_codes": ["R07"], "note": "concurrency test"})
            call("online", "post", "/api/decisions", json=next(bodies))
            time.sleep(0.3)

    def auditors() -> None:  # a decision's lineage: the warehouse
        while not stop.is_set():
            call("lineage", "get", f"/api/tasks/{d1_case['case_id']}/lineage")
            time.sleep(0.3)

    # the decision copy is held inside its warehouse transaction, after it has read the store,
    # until a reviewer has decided meanwhile: the copy must not count that decision as lost
    marker, release = home.parent / "copy-paused", home.parent / "copy-release"
    span = {"first": D3.isoformat()}
    pipeline = start_child(home, {"runs": [
        {"job": "ingest_applications", **span},
        {"job": "score_applications", **span},
        {"job": "publish_review_cases", **span},
        {"job": "copy_review_decisions"},
        {"job": "copy_online_decisions"},
    ], "pause_after": 'insert into "review_events"', "marker": str(marker), "hold_until": str(release)})
    servers = [threading.Thread(target=target, daemon=True) for target in (reviewers, auditors)]
    for server in servers:
        server.start()
    try:
        wait_for_marker(pipeline, marker, "copy_review_decisions")
        paused_at = time.time()
        deadline = time.monotonic() + CHILD_TIMEOUT
        while not any(what == "decide" and status == 200 and at > paused_at for at, what, status, _ in answers):
            assert time.monotonic() < deadline, "no decision was made while the copy was held"
            time.sleep(0.1)
        release.touch()
        out, err = finish(pipeline, "the pipeline")
    finally:
        stop.set()
        release.touch()
        for server in servers:
            server.join(timeout=120)
        if pipeline.poll() is None:
            pipeline.kill()
            pipeline.communicate()
    assert not any(server.is_alive() for server in servers)
    assert_no_lock_error(out, err, *(text for *_, text in answers))

    expected = {"list": {200}, "decide": {200}, "lineage": {200}, "online": {201}}
    wrong = [(what, status, text) for _, what, status, text in answers if status not in expected[what]]
    assert not wrong, wrong[:5]
    # the requests really overlapped the runs
    instance = instance_of(home)
    try:
        runs = [instance.get_run_by_id(run_id) for run_id in run_ids(out)]
        stats = [instance.get_run_stats(r.run_id) for r in runs]
    finally:
        instance.dispose()
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs) and len(runs) == 5
    first_start, last_end = min(s.start_time for s in stats), max(s.end_time for s in stats)
    during = {what for at, what, *_ in answers if first_start <= at <= last_end}
    assert during == {"list", "decide", "lineage", "online"}, during

    decided = store.last_decision_seq()
    wh = Warehouse(paths.warehouse)
    assert wh.scalar("select count(distinct decision_id) from human_decisions") == wh.scalar(
        "select count(*) from human_decisions") < decided  # the decisions made during the copy wait for the next
    assert wh.scalar("select count(distinct decision_id) from online_decisions") == wh.scalar(
        "select count(*) from online_decisions") > 0
    assert len([c for c in store.all_cases() if c["application_date"] == D3]) == wh.scalar(
        "select count(*) from scored_applications where action = 'review' and application_date = ?", [D3])

