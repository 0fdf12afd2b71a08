"""The analytics warehouse on PostgreSQL: the same methods as the DuckDB ``Warehouse``, so the
Python assets run unchanged on either engine (a DuckDB file has one writer and lives on one
machine; a deployment over several machines points the warehouse resource at PostgreSQL).

Frames travel as Arrow through ADBC's PostgreSQL driver (COPY in binary both ways), not row by
row. Statements use DuckDB's ``?`` placeholders, numbered here into PostgreSQL's ``$1, $2 ...``.
What DuckDB does in one statement and PostgreSQL does not, this class does in a transaction:
``insert ... by name`` becomes an insert with the frame's column list; ``create or replace
table`` becomes delete-and-insert into the existing table (PostgreSQL refuses to drop a table
that dbt's staging views depend on) with any new columns added first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from aios_pipelines.storage.warehouse import check_partition_frames, quote_identifier

_PG_TYPE_KEY = b"POSTGRESQL:type"


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://...`` (SQLAlchemy's spelling) as libpq wants it: ``postgresql://...``."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    return urlunsplit(("postgresql", *parts[1:]))


def is_postgres_url(location: str | None) -> bool:
    return bool(location) and urlsplit(str(location)).scheme.split("+", 1)[0] in ("postgresql", "postgres")


def numbered_placeholders(sql: str) -> str:
    """DuckDB's ``?`` placeholders as ``$1, $2 ...``, leaving quoted text and identifiers alone."""
    out: list[str] = []
    number = 0
    quote: str | None = None
    for char in sql:
        if quote:
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
        elif char == "?":
            number += 1
            out.append(f"${number}")
            continue
        out.append(char)
    return "".join(out)


def _pg_type(field: pa.Field) -> str | None:
    return (field.metadata or {}).get(_PG_TYPE_KEY, b"").decode() or None


def _arrow_to_polars(table: pa.Table) -> pl.DataFrame:
    """PostgreSQL ``numeric`` arrives as text (ADBC keeps its exact digits): read it as DuckDB
    gives ``sum``/``avg`` results, an integer when every value is whole, else a float;
    everything else maps one to one."""
    for index, field in enumerate(table.schema):
        if _pg_type(field) == "numeric":
            column = table.column(index)
            text = (pa.chunked_array([chunk.storage for chunk in column.chunks], column.type.storage_type)
                    if hasattr(column.type, "storage_type") else column)
            # sum() of integers is numeric in PostgreSQL and an integer in DuckDB: whole numbers stay whole
            whole = not pc.any(pc.match_substring_regex(text, r"[^0-9-]")).as_py()
            kind = pa.int64() if whole else pa.float64()
            table = table.set_column(index, pa.field(field.name, kind), pc.cast(text, kind))
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _ingestable(frame: pl.DataFrame | pa.Table) -> pa.Table:
    """Arrow that the PostgreSQL driver can COPY: no unsigned or 8-bit integers (PostgreSQL has
    neither), no polars-only types."""
    if isinstance(frame, pa.Table):
        frame = pl.from_arrow(frame)  # type: ignore[assignment]
    casts = {
        pl.UInt8: pl.Int16, pl.Int8: pl.Int16, pl.UInt16: pl.Int32, pl.UInt32: pl.Int64, pl.UInt64: pl.Int64,
        pl.Categorical: pl.String, pl.Enum: pl.String, pl.Null: pl.String,
    }
    exprs = [pl.col(name).cast(casts[type(dtype)]) for name, dtype in frame.schema.items()
             if type(dtype) in casts]
    return (frame.with_columns(exprs) if exprs else frame).to_arrow()


# polars types PostgreSQL has no column type for: stored widened, named in a column comment and
# restored by read_table, so a frame reads back as it was written (as on DuckDB)
_NARROWED = {pl.Int8: pl.Int8, pl.UInt8: pl.UInt8, pl.UInt16: pl.UInt16, pl.UInt32: pl.UInt32,
             pl.UInt64: pl.UInt64}
_DTYPE_COMMENT = "polars dtype: "


class _Result:
    def __init__(self, cursor: Any):
        self._cursor = cursor

    def fetchone(self):
        return self._cursor.fetchone()

    def fetchall(self):
        return self._cursor.fetchall()

    def pl(self) -> pl.DataFrame:
        return _arrow_to_polars(self._cursor.fetch_arrow_table())


class PostgresConnection:
    """What the Python assets use of a DuckDB connection, on PostgreSQL: ``execute`` with ``?``
    placeholders, ``sql(...).pl()``, ``register`` a frame as a (temporary) table, explicit
    ``begin transaction`` / ``commit`` / ``rollback``."""

    engine = "postgres"

    def __init__(self, connection: Any, schema: str):
        self._connection = connection
        self._cursor = connection.cursor()
        self.schema = schema

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _Result:
        text = numbered_placeholders(sql)
        self._cursor.execute(text, tuple(params) if params else None)
        return _Result(self._cursor)

    def sql(self, sql: str, params: Sequence[Any] | None = None) -> _Result:
        return self.execute(sql, params)

    def register(self, name: str, data: pl.DataFrame | pa.Table) -> None:
        quote_identifier(name)
        self._cursor.execute(f"drop table if exists pg_temp.{name}")
        self._cursor.adbc_ingest(name, _ingestable(data), mode="create", temporary=True)

    def unregister(self, name: str) -> None:
        self._cursor.execute(f"drop table if exists pg_temp.{quote_identifier(name)}")

    def column_types(self, relation: str) -> dict[str, str]:
        """Column name -> PostgreSQL type (``format_type``) of a table, or of a registered frame
        given as ``pg_temp.<name>``."""
        self._cursor.execute(
            "select attname, format_type(atttypid, atttypmod) from pg_attribute "
            "where attrelid = $1::regclass and attnum > 0 and not attisdropped order by attnum", (relation,))
        return {name: type_name for name, type_name in self._cursor.fetchall()}

    def close(self) -> None:
        try:
            self._cursor.close()
        finally:
            self._connection.close()


@dataclass(frozen=True)
class PostgresWarehouse:
    url: str
    schema: str = "public"

    engine = "postgres"

    @property
    def path(self) -> str:
        """Where the warehouse is, for messages (the URL without its password)."""
        parts = urlsplit(libpq_url(self.url))
        host = parts.hostname or ""
        netloc = f"{parts.username + '@' if parts.username else ''}{host}{':' + str(parts.port) if parts.port else ''}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def exists(self) -> bool:
        return True

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[PostgresConnection]:
        import adbc_driver_postgresql.dbapi as adbc

        try:
            raw = adbc.connect(libpq_url(self.url), autocommit=True)
        except Exception as exc:  # the driver's errors carry no URL: say which server
            raise ConnectionError(f"cannot connect to the warehouse {self.path}: {exc}") from exc
        con = PostgresConnection(raw, self.schema)
        try:
            name = quote_identifier(self.schema)
            # CREATE SCHEMA IF NOT EXISTS needs the CREATE right even when the schema exists,
            # which a deployment's warehouse role usually lacks: look first
            if not read_only and not con.execute(
                    "select count(*) from pg_namespace where nspname = ?", [self.schema]).fetchone()[0]:
                con.execute(f"create schema {name}")
            con.execute(f"set search_path to {name}")
            if read_only:
                con.execute("set default_transaction_read_only = on")
            yield con
        finally:
            con.close()

    def table_exists(self, table: str) -> bool:
        return bool(self.scalar(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [self.schema, table]))

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        with self.connect(read_only=True) as con:
            return con.sql(sql, params).pl()

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        with self.connect(read_only=True) as con:
            frame = con.sql(sql, params).pl()
        return frame.item(0, 0) if frame.height else None

    def read_table(self, table: str, where: str = "", params: Sequence[Any] | None = None) -> pl.DataFrame:
        if not self.table_exists(table):
            raise LookupError(f"table {table} is not in the warehouse {self.path}: materialize it first")
        clause = f" where {where}" if where else ""
        with self.connect(read_only=True) as con:
            frame = con.sql(f"select * from {quote_identifier(table)}{clause}", params).pl()
            comments = con.execute(
                "select attname, col_description(attrelid, attnum) from pg_attribute "
                "where attrelid = ?::regclass and attnum > 0 and not attisdropped",
                [f"{self.schema}.{table}"]).fetchall()
        narrowed = {name: text.removeprefix(_DTYPE_COMMENT) for name, text in comments
                    if text and text.startswith(_DTYPE_COMMENT)}
        dtypes = {t.__name__: t for t in _NARROWED}
        casts = {name: dtypes[kind] for name, kind in narrowed.items() if kind in dtypes and name in frame.columns}
        return frame.cast(casts) if casts else frame

    def replace_partitions(self, table: str, frame: pl.DataFrame, partition_column: str,
                           partition_values: Sequence[Any]) -> int:
        return self.replace_partitions_together({table: frame}, partition_column, partition_values)[table]

    def replace_partitions_together(self, frames: dict[str, pl.DataFrame], partition_column: str,
                                    partition_values: Sequence[Any]) -> dict[str, int]:
        check_partition_frames(frames, partition_column, partition_values)
        with self.connect() as con:
            con.register("replaced_partitions", pl.DataFrame({"v": list(partition_values)}))
            with _transaction(con):
                for i, (table, frame) in enumerate(frames.items()):
                    view = f"incoming_rows_{i}"
                    con.register(view, frame)
                    _create_like(con, table, view, frame.schema)
                    con.execute(f"delete from {quote_identifier(table)} where {quote_identifier(partition_column)} "
                                "in (select v from replaced_partitions)")
                    _insert_by_name(con, table, view, frame.columns)
        return {table: frame.height for table, frame in frames.items()}

    def sync_tables(self, replace: dict[str, pl.DataFrame] | None = None,
                    upsert: dict[str, tuple[pl.DataFrame, str]] | None = None) -> None:
        with self.connect() as con, _transaction(con):
            for i, (table, frame) in enumerate((replace or {}).items()):
                _replace_rows(con, table, frame, f"replacement_{i}")
            for i, (table, (frame, key)) in enumerate((upsert or {}).items()):
                view = f"upserted_{i}"
                con.register(view, frame)
                _create_like(con, table, view, frame.schema)
                con.execute(f"delete from {quote_identifier(table)} where {quote_identifier(key)} in "
                            f"(select {quote_identifier(key)} from {view})")
                _insert_by_name(con, table, view, frame.columns)

    def replace_table(self, table: str, frame: pl.DataFrame) -> int:
        with self.connect() as con, _transaction(con):
            _replace_rows(con, table, frame, "incoming_rows")
        return frame.height


@contextmanager
def _transaction(con: PostgresConnection) -> Iterator[None]:
    con.execute("begin transaction")
    try:
        yield
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def _create_like(con: PostgresConnection, table: str, view: str, schema: pl.Schema) -> None:
    """The table with the incoming rows' columns and types if it is not there yet; columns the
    incoming rows bring that the table lacks are added (DuckDB's ``by name`` insert would
    refuse them, but a first write of an older release's table must not lose them). A new
    column whose polars type PostgreSQL lacks is commented with it, for ``read_table``."""
    name = quote_identifier(table)
    existed = con.execute("select to_regclass(?) is not null", [f"{con.schema}.{table}"]).fetchone()[0]
    con.execute(f"create table if not exists {name} as select * from pg_temp.{view} limit 0")
    present = con.column_types(f"{con.schema}.{table}") if existed else {}
    for column, type_name in con.column_types(f"pg_temp.{view}").items():
        if column in present:
            continue
        if existed:
            con.execute(f"alter table {name} add column {quote_identifier(column)} {type_name}")
        dtype = schema.get(column)
        if dtype is not None and type(dtype) in _NARROWED:
            con.execute(f"comment on column {name}.{quote_identifier(column)} is '{_DTYPE_COMMENT}{dtype}'")


def _insert_by_name(con: PostgresConnection, table: str, view: str, columns: Sequence[str]) -> None:
    """``insert into table by name``: the frame's columns by name, each cast to the stored
    column's type (a first write whose column was all nulls may have stored it as text)."""
    stored = con.column_types(f"{con.schema}.{table}")
    incoming = con.column_types(f"pg_temp.{view}")
    listed = ", ".join(quote_identifier(c) for c in columns)
    values = ", ".join(
        quote_identifier(c) if incoming.get(c) == stored.get(c) else f"{quote_identifier(c)}::{stored[c]}"
        for c in columns)
    con.execute(f"insert into {quote_identifier(table)} ({listed}) select {values} from pg_temp.{view}")


def _replace_rows(con: PostgresConnection, table: str, frame: pl.DataFrame, view: str) -> None:
    con.register(view, frame)
    _create_like(con, table, view, frame.schema)
    con.execute(f"delete from {quote_identifier(table)}")
    _insert_by_name(con, table, view, frame.columns)
