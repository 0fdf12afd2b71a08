"""Child process for tests/test_fault_injection.py and tests/test_concurrency.py (not a test module).

Runs jobs exactly as ``aios demo`` does (``run_job`` against the persistent Dagster instance
of ``$AIOS_HOME``), or the ``aios`` command itself. Two test-only hooks, installed in this
process only, wrap the warehouse connection the product code uses:

* ``pause_after``: once a write statement starting with this text has executed (inside its
  transaction, before COMMIT), write the process id to ``marker`` and sleep, so the parent
  can SIGKILL the process at exactly that point of the write.
* ``enospc``: make every COMMIT fail the way DuckDB fails on a full disk (the transaction is
  gone and the error names the WAL file), for machines where a tiny tmpfs cannot be mounted.

Usage: python tests/fault_child.py '<json spec>'
  {"runs": [{"job": "ingest_applications", "first": "2026-03-02", "last": "2026-03-03"},
            {"simulate_reviews": 12}],
   "cli": ["demo"], "pause_after": "insert into \\"raw_applications\\"", "marker": "/tmp/m",
   "enospc": false}
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from datetime import date


class _PausingConnection:
    def __init__(self, con, path: str, pause_after: str | None, marker: str | None, enospc: bool):
        self._con, self._path = con, path
        self._pause_after = pause_after.lower() if pause_after else None
        self._marker, self._enospc = marker, enospc

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
            tmp = f"{self._marker}.tmp"
            with open(tmp, "w") as handle:
                handle.write(str(os.getpid()))
            os.replace(tmp, self._marker)
            time.sleep(600)  # the parent kills us here
            raise SystemExit("the parent did not kill this process")
        return result


def install_hooks(spec: dict) -> None:
    if not (spec.get("pause_after") or spec.get("enospc")):
        return
    from aios_pipelines.storage import warehouse as module

    real_connect = module.Warehouse.connect

    @contextmanager
    def connect(self, read_only: bool = False):
        with real_connect(self, read_only=read_only) as con:
            yield con if read_only else _PausingConnection(
                con, str(self.path), spec.get("pause_after"), spec.get("marker"), bool(spec.get("enospc"))
            )

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
        result = run_job(run["job"], first_day=first, last_day=last)
        print(f"RUN {run['job']} {result.run_id}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
