"""The analytics warehouse: one DuckDB file, reached only through this class.

Writes replace whole partitions inside one transaction, so a re-run never appends twice and
a run killed half-way leaves the previous partition intact. DuckDB allows one writing
process per file: Dagster's ``warehouse`` concurrency pool serialises our own runs, and a
connection that still meets another process's lock (a notebook, dbt started by hand) waits
and retries for a bounded time before failing with a message that says what holds it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class WarehouseLockedError(RuntimeError):
    pass


def quote_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return f'"{name}"'


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back what is left of a failed transaction. A failed COMMIT (the disk is full, the
    WAL cannot be written) has already ended it, and DuckDB then refuses ROLLBACK: that
    refusal must not replace the error that says what went wrong and where."""
    try:
        con.execute("rollback")
    except duckdb.Error:
        pass


def check_partition_frames(frames: dict[str, pl.DataFrame], partition_column: str,
                           partition_values: Sequence[Any]) -> None:
    """Refuse, before anything is written, frames that lack the partition column or hold rows
    of partitions other than the ones being replaced."""
    for table, frame in frames.items():
        if partition_column not in frame.columns:
            raise ValueError(f"{table}: frame has no partition column {partition_column!r}")
        stray = frame.filter(~pl.col(partition_column).is_in(list(partition_values)))
        if stray.height:
            raise ValueError(f"{table}: {stray.height} rows fall outside the partitions being replaced")


@dataclass(frozen=True)
class Warehouse:
    path: Path
    lock_timeout_seconds: float = 120.0

    engine = "duckdb"

    def exists(self) -> bool:
        return Path(self.path).exists()

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        path = Path(self.path)
        if read_only and not path.exists():
            raise FileNotFoundError(f"warehouse {path} does not exist yet: run the ingestion first")
        if not read_only:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OSError(f"cannot create the warehouse folder {path.parent}: {exc.strerror}") from exc
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.1
        while True:
            try:
                con = duckdb.connect(str(path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if not _is_lock_error(exc) or time.monotonic() >= deadline:
                    if _is_lock_error(exc):
                        raise WarehouseLockedError(
                            f"warehouse {path} is held by another process for longer than "
                            f"{self.lock_timeout_seconds:.0f}s: {exc}"
                        ) from exc
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        try:
            yield con
        finally:
            con.close()

    def table_exists(self, table: str) -> bool:
        if not Path(self.path).exists():
            return False
        with self.connect(read_only=True) as con:
            found = con.execute(
                "select count(*) from information_schema.tables where table_name = ?", [table]
            ).fetchone()
        return bool(found and found[0])

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        with self.connect(read_only=True) as con:
            return con.sql(sql, params=list(params) if params else None).pl()

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        with self.connect(read_only=True) as con:
            row = con.execute(sql, params or []).fetchone()
        return row[0] if row else None

    def read_table(self, table: str, where: str = "", params: Sequence[Any] | None = None) -> pl.DataFrame:
        if not self.table_exists(table):
            raise LookupError(f"table {table} is not in the warehouse {self.path}: materialize it first")
        clause = f" where {where}" if where else ""
        return self.query(f"select * from {quote_identifier(table)}{clause}", params)

    def replace_partitions(
        self,
        table: str,
        frame: pl.DataFrame,
        partition_column: str,
        partition_values: Sequence[Any],
    ) -> int:
        """Atomically replace the given partitions of ``table`` with ``frame``'s rows.

        The table is created from the frame's schema on first write; columns are matched by
        name. Returns the number of rows written.
        """
        return self.replace_partitions_together({table: frame}, partition_column, partition_values)[table]

    def replace_partitions_together(
        self,
        frames: dict[str, pl.DataFrame],
        partition_column: str,
        partition_values: Sequence[Any],
    ) -> dict[str, int]:
        """Replace the same partitions of several tables in ONE transaction (a table and its
        quarantine, say): a crash leaves all of them as they were, or all replaced."""
        check_partition_frames(frames, partition_column, partition_values)
        values_table = pl.DataFrame({"v": list(partition_values)}).to_arrow()
        with self.connect() as con:
            con.register("replaced_partitions", values_table)
            con.execute("begin transaction")
            try:
                for i, (table, frame) in enumerate(frames.items()):
                    name = quote_identifier(table)
                    view = f"incoming_rows_{i}"
                    con.register(view, frame.to_arrow())
                    con.execute(f"create table if not exists {name} as select * from {view} limit 0")
                    con.execute(
                        f"delete from {name} where {quote_identifier(partition_column)} "
                        "in (select v from replaced_partitions)"
                    )
                    con.execute(f"insert into {name} by name select * from {view}")
                con.execute("commit")
            except BaseException:
                _rollback(con)
                raise
        return {table: frame.height for table, frame in frames.items()}

    def sync_tables(
        self,
        replace: dict[str, pl.DataFrame] | None = None,
        upsert: dict[str, tuple[pl.DataFrame, str]] | None = None,
    ) -> None:
        """In ONE transaction: replace whole tables, and upsert rows by a key column (rows
        whose key is already stored are replaced, so copying the same rows twice never
        duplicates them)."""
        with self.connect() as con:
            con.execute("begin transaction")
            try:
                for i, (table, frame) in enumerate((replace or {}).items()):
                    view = f"replacement_{i}"
                    con.register(view, frame.to_arrow())
                    con.execute(f"create or replace table {quote_identifier(table)} as select * from {view}")
                for i, (table, (frame, key)) in enumerate((upsert or {}).items()):
                    name, view = quote_identifier(table), f"upserted_{i}"
                    con.register(view, frame.to_arrow())
                    con.execute(f"create table if not exists {name} as select * from {view} limit 0")
                    con.execute(
                        f"delete from {name} where {quote_identifier(key)} in (select {quote_identifier(key)} from {view})"
                    )
                    con.execute(f"insert into {name} by name select * from {view}")
                con.execute("commit")
            except BaseException:
                _rollback(con)
                raise

    def replace_table(self, table: str, frame: pl.DataFrame) -> int:
        """Replace a whole (unpartitioned) table atomically."""
        name = quote_identifier(table)
        with self.connect() as con:
            con.register("incoming_rows", frame.to_arrow())
            con.execute("begin transaction")
            try:
                con.execute(f"create or replace table {name} as select * from incoming_rows")
                con.execute("commit")
            except BaseException:
                _rollback(con)
                raise
        return frame.height


WAREHOUSE_URL_ENV = "AIOS_WAREHOUSE_URL"


def configured_warehouse(paths, lock_timeout_seconds: float = 120.0):
    """The data directory's warehouse: PostgreSQL when ``AIOS_WAREHOUSE_URL`` is set (as for the
    Dagster resource), else the DuckDB file under ``AIOS_HOME``."""
    import os

    return open_warehouse(os.environ.get(WAREHOUSE_URL_ENV) or paths.warehouse, lock_timeout_seconds)


def open_warehouse(location: str | Path, lock_timeout_seconds: float = 120.0):
    """The warehouse at ``location``: a ``postgresql://`` URL (see ``postgres_warehouse``) or
    the path of a DuckDB file. Both have the same methods."""
    from aios_pipelines.storage.postgres_warehouse import PostgresWarehouse, is_postgres_url

    if is_postgres_url(str(location)):
        return PostgresWarehouse(str(location))
    return Warehouse(Path(location), lock_timeout_seconds=lock_timeout_seconds)
