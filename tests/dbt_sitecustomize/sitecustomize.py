"""Test-only: put on PYTHONPATH of dbt's process by tests/child_jobs.py (``dbt_gate``).

Records every attempt dbt-duckdb makes to open a DuckDB file, one line per attempt, in the
file named by ``AIOS_TEST_DBT_CONNECT_LOG``, so a test can hold the warehouse until dbt has
met the lock (and retried) instead of guessing how long dbt takes to start.
"""

import os

_log = os.environ.get("AIOS_TEST_DBT_CONNECT_LOG")
if _log:
    import duckdb

    _connect = duckdb.connect

    def _recording_connect(*args, **kwargs):
        with open(_log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return _connect(*args, **kwargs)

    duckdb.connect = _recording_connect
