"""Jobs in a child process, for tests/test_fault_injection.py and tests/test_concurrency.py
(not a test module).

As a script, runs jobs exactly as ``aios demo`` does (``run_job`` against the persistent
Dagster instance of ``$AIOS_HOME``), or the ``aios`` command itself. Two test-only hooks,
installed in the child only, wrap the warehouse connection the product code uses:

* ``pause_after``: once a write statement starting with this text has executed (inside its
  transaction, before COMMIT), write the process id to ``marker`` and wait: until the file
  ``hold_until`` exists and then go on (the write stays open, and its run keeps the
  ``warehouse`` pool slot, until the parent says so), or, without ``hold_until``, until the
  parent kills the process at exactly that point of the write.
* ``dbt_gate``: before dbt's ``build`` process starts, write ``<dbt_gate>.ready`` and wait
  for ``<dbt_gate>.go`` (the parent does something in between, e.g. take the warehouse);
  dbt's process then appends a line to ``<dbt_gate>.connects`` for every attempt to open a
  DuckDB file (tests/dbt_sitecustomize/sitecustomize.py).
* ``enospc``: make every COMMIT fail the way DuckDB fails on a full disk (the transaction is
  gone and the error names the WAL file), for machines where a tiny tmpfs cannot be mounted.

Imported, it gives the tests the parent's side: start such a child, wait for its marker.

Usage: python tests/child_jobs.py '<json spec>'
  {"runs": [{"job": "ingest_applications", "first": "2026-03-02", "last": "2026-03-03", "config": {...}},
            {"simulate_reviews": 12}],
   "cli": ["demo"], "pause_after": "insert into \\"raw_applications\\"", "marker": "/tmp/m",
   "hold_until": null, "dbt_gate": null, "enospc": false}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path


def _signal(path: str) -> None:
    with open(f"{path}.tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(f"{path}.tmp", path)


def _wait_for(path: str, timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"the parent never created {path}")
        time.sleep(0.05)


class _PausingConnection:
    def __init__(self, con, path: str, spec: dict):
        self._con, self._path, self._spec = con, path, spec
        self._pause_after = spec["pause_after"].lower() if spec.get("pause_after") else None
        self._marker, self._hold = spec.get("marker"), spec.get("hold_until")
        self._enospc = bool(spec.get("enospc"))

    def __getattr__(self, name):
        return getattr(self._con, name)

    def execute(self, sql, *args, **kwargs):
        statement = sql.strip().lower()
        if self._enospc and statement == "commit":
            import duckdb

            self._con.execute("rollback")  # as DuckDB does when the commit cannot be written
            raise duckdb.TransactionException(
                f'TransactionContext Error: Failed to commit: Could not write file "{self._path}.wal": '
                "No space left on device"
            )
        result = self._con.execute(sql, *args, **kwargs)
        if self._pause_after and statement.startswith(self._pause_after):
            _signal(self._marker)
            self._pause_after = self._spec["pause_after"] = None  # once per process
            if self._hold is not None:
                _wait_for(self._hold)
            else:
                time.sleep(600)  # the parent kills us here
                raise SystemExit("the parent did not kill this process")
        return result


def install_hooks(spec: dict) -> None:
    if spec.get("dbt_gate"):
        from aios_pipelines.defs.analytics.resources import WarehouseDbtResource

        real_cli, gate = WarehouseDbtResource.cli, spec["dbt_gate"]

        def cli(self, args, **kwargs):
            if list(args)[:1] == ["build"]:
                _signal(f"{gate}.ready")
                _wait_for(f"{gate}.go")
            return real_cli(self, args, **kwargs)

        # dbt's own process records each attempt to open the warehouse in <dbt_gate>.connects
        hook = str(Path(__file__).resolve().with_name("dbt_sitecustomize"))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [hook, os.environ.get("PYTHONPATH")]))
        os.environ["AIOS_TEST_DBT_CONNECT_LOG"] = f"{gate}.connects"

        WarehouseDbtResource.cli = cli
    if not (spec.get("pause_after") or spec.get("enospc")):
        return
    from aios_pipelines.storage import warehouse as module

    real_connect = module.Warehouse.connect

    @contextmanager
    def connect(self, read_only: bool = False):
        with real_connect(self, read_only=read_only) as con:
            yield con if read_only else _PausingConnection(con, str(self.path), spec)

    module.Warehouse.connect = connect


def main() -> int:
    spec = json.loads(sys.argv[1])
    install_hooks(spec)
    if "cli" in spec:
        from aios_pipelines.cli import main as aios

        return aios(spec["cli"])
    from aios_pipelines.defs.runner import run_job

    for run in spec.get("runs", []):
        if "simulate_reviews" in run:  # simulated underwriters decide some open cases, as in the demo
            from aios_pipelines.review.store import ReviewStore
            from aios_pipelines.settings import aios_paths
            from aios_pipelines.synthetic.reviewers import simulate_reviews

            simulate_reviews(ReviewStore.for_paths(aios_paths()).create_all(), max_cases=run["simulate_reviews"])
            continue
        first = date.fromisoformat(run["first"]) if run.get("first") else None
        last = date.fromisoformat(run["last"]) if run.get("last") else first
        result = run_job(run["job"], first_day=first, last_day=last, run_config=run.get("config"))
        print(f"RUN {run['job']} {result.run_id}", flush=True)
    return 0


# ----------------------------------------------------------------------------- the parent's side
CHILD = Path(__file__).resolve()
CHILD_TIMEOUT = 420


def child_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DAGSTER_HOME", "AIOS_HOME"}}
    env.update(AIOS_HOME=str(home), AIOS_LOG_LEVEL="ERROR", PYTHONUNBUFFERED="1")
    return env


def run_child(home: Path, spec: dict) -> subprocess.CompletedProcess:
    """Run a child to the end; it must succeed."""
    done = subprocess.run([sys.executable, str(CHILD), json.dumps(spec)], env=child_env(home),
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    assert done.returncode == 0, f"child failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def start_child(home: Path, spec: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CHILD), json.dumps(spec)], env=child_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_marker(proc: subprocess.Popen, marker: Path, what: str) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT
    while not marker.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"{what} ended ({proc.returncode}) before its pause point:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never reached its pause point")
        time.sleep(0.1)
    assert int(marker.read_text()) == proc.pid


def wait_until_queued_for_pool(home: Path, proc: subprocess.Popen, what: str) -> None:
    """Until the Dagster instance shows a step queued for the ``warehouse`` pool by a run
    that holds no slot (``proc``'s run waits for the pool)."""
    import dagster as dg

    from aios_pipelines.settings import AiosPaths

    instance = dg.DagsterInstance.from_config(str(AiosPaths(home).dagster_home))
    try:
        deadline = time.monotonic() + CHILD_TIMEOUT
        while True:
            info = instance.event_log_storage.get_concurrency_info("warehouse")
            holders = {slot.run_id for slot in info.claimed_slots}
            if any(step.run_id not in holders for step in info.pending_steps):
                return
            if proc.poll() is not None:
                raise AssertionError(f"{what} ended without waiting for the pool: {proc.communicate()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} never queued for the warehouse pool")
            time.sleep(0.2)
    finally:
        instance.dispose()


def finish(proc: subprocess.Popen, what: str) -> tuple[str, str]:
    """Wait for a child started with start_child; it must succeed."""
    try:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{out}\n{err}"
    return out, err


D1, D2, D3 = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)
PER_DAY = 40


def build_world(home: Path) -> Path:
    """A data directory with two days ingested (and the outcomes of the first), scored (no champion yet: the policy's
    fallback scorecard) and published for review, some cases decided by the demo's simulated
    underwriters and copied to the warehouse, and a third landing day not yet ingested."""
    from aios_pipelines.settings import AiosPaths
    from aios_pipelines.storage.warehouse import Warehouse
    from aios_pipelines.synthetic.generator import write_landing

    paths = AiosPaths(home).ensure()
    write_landing(paths.landing, start=D1, days=3, per_day=PER_DAY, seed=11, file_format="mixed",
                  performance_window_days=1, bad_row_rate=0.15)
    span = {"first": D1.isoformat(), "last": D2.isoformat()}
    run_child(home, {"runs": [
        {"job": "ingest_applications", **span},
        {"job": "ingest_loan_outcomes", "first": D2.isoformat()},  # the outcomes of D1's loans
        {"job": "score_applications", **span},
        {"job": "publish_review_cases", **span},
        {"simulate_reviews": 10},
        {"job": "copy_review_decisions"},
    ]})
    assert Warehouse(paths.warehouse).scalar("select count(*) from human_decisions") > 0
    return home


_WORLDS: dict[str, Path] = {}


def shared_world(tmp_path_factory) -> Path:
    """One world per test session for every module that needs it; tests change copies only."""
    if "world" not in _WORLDS:
        _WORLDS["world"] = build_world(tmp_path_factory.mktemp("world") / "home")
    return _WORLDS["world"]


def run_ids(stdout: str) -> list[str]:
    return [line.split()[2] for line in stdout.splitlines() if line.startswith("RUN ")]


if __name__ == "__main__":
    sys.exit(main())
