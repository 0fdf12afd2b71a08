"""The Dagster instance's SQLite event log on open connections (PooledSqliteEventLogStorage).

What a user of the instance relies on: runs, materializations and check results are stored
and read exactly as with Dagster's own class (over the same files); the webserver, in
another process, sees a run's events while the run is still writing them; two processes
write to one instance at once; a forked child writes; open files stay bounded."""

import multiprocessing
import os
import threading
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from aios_pipelines.defs.instance import dagster_home, get_instance
from aios_pipelines.storage.dagster_event_log import PooledSqliteEventLogStorage


@dg.asset(check_specs=[dg.AssetCheckSpec("rows_positive", asset="numbers")])
def numbers(context: dg.AssetExecutionContext):
    for i in range(5):
        context.log_event(dg.AssetObservation(asset_key="numbers", metadata={"i": i}))
    yield dg.MaterializeResult(metadata={"rows": 5})
    yield dg.AssetCheckResult(check_name="rows_positive", passed=True)


def _message(run_id: str, text: str) -> EventLogEntry:
    return EventLogEntry(error_info=None, level="INFO", user_message=text, run_id=run_id,
                         timestamp=time.time(), step_key=None, job_name="job", dagster_event=None)


def _messages(storage, run_id: str) -> list[str]:
    return [r.event_log_entry.user_message for r in storage.get_records_for_run(run_id).records]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("AIOS_HOME", str(tmp_path / "aios"))
    return tmp_path


def test_the_instance_stores_runs_materializations_and_checks_readable_by_dagsters_own_class(home):
    instance = get_instance()
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    result = dg.materialize([numbers], instance=instance)
    assert result.success
    latest = instance.get_latest_materialization_event(dg.AssetKey("numbers"))
    assert latest is not None and latest.run_id == result.run_id
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("numbers"), "rows_positive")])
    assert next(iter(check.values())).run_id == result.run_id
    ours = [(e.dagster_event_type, e.message) for e in instance.all_logs(result.run_id)]
    instance.dispose()

    # Dagster's own class over the same files reads the same run, asset and check
    own = SqliteEventLogStorage(str(dagster_home() / "history" / "runs"))
    theirs = [(r.event_log_entry.dagster_event_type, r.event_log_entry.message)
              for r in own.get_records_for_run(result.run_id).records]
    assert theirs == ours and len(ours) > 10
    assert own.get_latest_materialization_events([dg.AssetKey("numbers")])[dg.AssetKey("numbers")].run_id == result.run_id
    own.dispose()


def test_another_process_watching_a_run_sees_each_event_while_the_run_writes(tmp_path):
    """The webserver follows a run launched in another process through a file watcher on
    the run's .db file; events left in the WAL would reach it only when the run ends."""
    base = str(tmp_path / "runs")
    writer = PooledSqliteEventLogStorage(base)
    reader = SqliteEventLogStorage(base)  # the webserver's side: a separate storage object
    run_id = str(uuid.uuid4())
    writer.store_event(_message(run_id, "start"))
    seen: list[str] = []
    arrived = threading.Condition()

    def on_event(entry, _cursor):
        with arrived:
            seen.append(entry.user_message)
            arrived.notify_all()

    reader.watch(run_id, None, on_event)
    try:
        for i in range(5):
            writer.store_event(_message(run_id, f"event {i}"))
            with arrived:
                assert arrived.wait_for(lambda: f"event {i}" in seen, timeout=10), \
                    f"the watcher did not see event {i} while the writer kept its connection open (saw {seen})"
    finally:
        reader.end_watch(run_id, on_event)
        reader.dispose()
        writer.dispose()


def _materialize_in_child(dagster_home_path: str, runs: int) -> None:
    os.environ["DAGSTER_HOME"] = dagster_home_path
    with dg.DagsterInstance.get() as instance:
        for _ in range(runs):
            assert dg.materialize([numbers], instance=instance).success


def test_two_processes_write_to_one_instance_at_once(home):
    instance = get_instance()
    path = str(dagster_home())
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_materialize_in_child, args=(path, 3)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=300)
    assert [c.exitcode for c in children] == [0, 0]
    runs = instance.get_runs()
    assert len(runs) == 6 and all(r.is_success for r in runs)
    materializations = instance.fetch_materializations(dg.AssetKey("numbers"), limit=100).records
    assert sorted(m.run_id for m in materializations) == sorted(r.run_id for r in runs)
    instance.dispose()


def test_a_forked_child_writes_through_its_own_connections(tmp_path):
    storage = PooledSqliteEventLogStorage(str(tmp_path / "runs"))
    run_id = str(uuid.uuid4())
    storage.store_event(_message(run_id, "parent before"))
    inherited = storage._engine(run_id)
    pid = os.fork()
    if pid == 0:  # the child: write, and leave without running the parent's clean-up
        try:
            storage.store_event(_message(run_id, "child"))
            # SQLite: a connection must not be carried across a fork; the child opened its own
            os._exit(0 if storage._engine(run_id) is not inherited else 2)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    storage.store_event(_message(run_id, "parent after"))
    assert _messages(storage, run_id) == ["parent before", "child", "parent after"]
    storage.dispose()


def _open_databases(base: Path) -> set[str]:
    opened = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(base)) and target.endswith(".db"):
            opened.add(Path(target).name)
    return opened


def test_open_run_databases_are_bounded_and_closed_on_dispose(tmp_path):
    base = tmp_path / "runs"
    storage = PooledSqliteEventLogStorage(str(base), max_open_run_databases=2)
    run_ids = [str(uuid.uuid4()) for _ in range(5)]
    for run_id in run_ids:
        storage.store_event(_message(run_id, f"hello {run_id}"))
    opened = _open_databases(base)
    assert opened <= {f"{r}.db" for r in run_ids[-2:]} | {"index.db"} and f"{run_ids[-1]}.db" in opened
    # a closed run's database opens again when read
    assert _messages(storage, run_ids[0]) == [f"hello {run_ids[0]}"]
    storage.dispose()
    assert _open_databases(base) == set()
    with pytest.raises(ValueError, match="max_open_run_databases"):
        PooledSqliteEventLogStorage(str(base), max_open_run_databases=0)


def test_wipe_removes_the_runs_and_the_storage_keeps_working(tmp_path):
    base = tmp_path / "runs"
    storage = PooledSqliteEventLogStorage(str(base))
    first = str(uuid.uuid4())
    storage.store_event(_message(first, "before wipe"))
    storage.wipe()
    assert not (base / f"{first}.db").exists()
    second = str(uuid.uuid4())
    storage.store_event(_message(second, "after wipe"))
    assert _messages(storage, first) == [] and _messages(storage, second) == ["after wipe"]
    storage.dispose()
