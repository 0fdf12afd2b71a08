"""Dagster's SQLite event log with its database connections kept open between events.

Dagster's ``SqliteEventLogStorage`` writes every event through a new SQLAlchemy engine and
connection (``NullPool``) and closes it again. In WAL mode, closing the last connection to
a database checkpoints the WAL into it and removes the WAL, with its fsyncs: a dbt build
whose 185 tests are asset checks stores about 630 events, each costing 15 ms on this
machine, 10 s of a 39 s job at 1M applications (benchmarks/README.md). Here one engine per
database file stays open (a bounded number of run files, least recently used closed first),
so an event is one transaction on an open connection.

Two things the per-event close also did are kept:

- The webserver follows a run written by another process by watching that run's ``.db``
  file for changes (``SqliteEventLogStorageWatchdog``). With an open connection the writes
  stay in the WAL, so after each transaction on a run's database a passive checkpoint copies
  them into the ``.db`` file, as the close did.
- A forked child never uses the parent's open connections (SQLite forbids it): after a fork
  the engines are dropped without closing and opened again on first use.

Everything else is Dagster's class: the same files, schema, migrations and queries; an
instance written by either class is read by the other.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster._config import Field, IntSource, StringSource
from dagster._config.config_schema import UserConfigSchema
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine

# Run databases kept open at once besides the index: a run writes to its own and the index;
# the webserver reads a few at a time.
DEFAULT_OPEN_RUN_DATABASES = 8


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with one open engine per database file (see the module)."""

    def __init__(
        self,
        base_dir: str,
        inst_data: ConfigurableClassData | None = None,
        max_open_run_databases: int = DEFAULT_OPEN_RUN_DATABASES,
    ):
        if max_open_run_databases < 1:
            raise ValueError(f"max_open_run_databases must be at least 1, got {max_open_run_databases}")
        self._max_open_run_databases = max_open_run_databases
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        self._engines_lock = threading.Lock()
        super().__init__(base_dir, inst_data)

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return {
            "base_dir": StringSource,
            "max_open_run_databases": Field(IntSource, is_required=False, default_value=DEFAULT_OPEN_RUN_DATABASES),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            if self._engines_pid != os.getpid():
                # a forked child: the parent's connections are not ours to use or to close
                for engine in self._engines.values():
                    engine.dispose(close=False)
                self._engines.clear()
                self._engines_pid = os.getpid()
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = create_engine(
                self.conn_string_for_shard(shard),
                pool_size=1,
                max_overflow=4,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            self._engines[shard] = engine
            run_shards = [s for s in self._engines if s != INDEX_SHARD_NAME]
            for evicted in run_shards[: max(0, len(run_shards) - self._max_open_run_databases)]:
                self._engines.pop(evicted).dispose()
            return engine

    def _close_engines(self, shards: list[str] | None = None) -> None:
        with self._engines_lock:
            for shard in list(self._engines) if shards is None else shards:
                engine = self._engines.pop(shard, None)
                if engine is not None:
                    engine.dispose()

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # Dagster's own class holds this lock for the whole transaction; so does this one
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn
                if shard != INDEX_SHARD_NAME:
                    # the webserver's watcher looks at the run's .db file, not at its WAL
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def wipe(self) -> None:
        # the run databases are deleted: close them first
        self._close_engines([s for s in list(self._engines) if s != INDEX_SHARD_NAME])
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        self._close_engines()
