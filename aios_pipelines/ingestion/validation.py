"""Row-level contract enforcement: every row read is either loaded (typed) or quarantined.

Quarantine never drops data: the quarantined row keeps its raw values as JSON with the file,
row number, first failing column and every reason, so ``rows read = rows loaded + rows
quarantined`` holds for every file and a corrected file can be re-ingested.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

import polars as pl

from aios_pipelines.ingestion.contract import ColumnSpec, DatasetSpec
from aios_pipelines.ingestion.landing import MALFORMED, RAW_CELLS, ROW_NUMBER, SOURCE_FILE

POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "integer": pl.Int64(),
    "float": pl.Float64(),
    "timestamp": pl.Datetime("us"),
    "date": pl.Date(),
}
# A text value longer than this is quarantined: an id or category this long is a broken
# export, and a multi-megabyte cell must not travel on to features, reports and the review UI.
MAX_TEXT_CHARS = 1000
CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
SHOWN_CHARS = 40
TIMESTAMP_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")

LANDING_DATE = "landing_date"
SOURCE_FILE_COLUMN = "source_file"
SOURCE_ROW_COLUMN = "source_row"

QUARANTINE_SCHEMA = {
    LANDING_DATE: pl.Date(),
    SOURCE_FILE_COLUMN: pl.String(),
    SOURCE_ROW_COLUMN: pl.Int64(),
    "record_id": pl.String(),
    "column_name": pl.String(),
    "reason": pl.String(),
    "all_reasons": pl.List(pl.String()),
    "raw_record": pl.String(),
}


@dataclass
class ValidationResult:
    loaded: pl.DataFrame
    quarantined: pl.DataFrame

    @property
    def rows_read(self) -> int:
        return self.loaded.height + self.quarantined.height


def _text(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.String).str.strip_chars()


def _typed(spec: ColumnSpec, dtype: pl.DataType) -> pl.Expr:
    """The column converted to its contract type; a value that does not convert becomes null."""
    col = pl.col(spec.name)
    if spec.type == "string":
        text = _text(spec.name)
        return pl.when(text == "").then(None).otherwise(text)
    if spec.type in ("integer", "float"):
        if dtype.is_numeric():
            as_float = col.cast(pl.Float64, strict=False)
        else:
            as_float = _text(spec.name).cast(pl.Float64, strict=False)
        if spec.type == "integer":
            return pl.when(as_float == as_float.round(0)).then(as_float).otherwise(None).cast(pl.Int64, strict=False)
        return pl.when(as_float.is_finite()).then(as_float).otherwise(None)
    if spec.type == "timestamp":
        if isinstance(dtype, pl.Datetime):
            # the contract's timestamps are UTC: convert an aware one before dropping its zone
            utc = col.dt.convert_time_zone("UTC") if dtype.time_zone is not None else col
            return utc.dt.replace_time_zone(None).cast(pl.Datetime("us"))
        if isinstance(dtype, pl.Date):
            return col.cast(pl.Datetime("us"))
        text = _text(spec.name).str.replace(r"(Z|\+00:?00)$", "")
        return pl.coalesce([text.str.to_datetime(fmt, strict=False, time_unit="us") for fmt in TIMESTAMP_FORMATS])
    if spec.type == "date":
        if isinstance(dtype, pl.Date):
            return col
        if isinstance(dtype, pl.Datetime):
            return col.dt.date()
        return _text(spec.name).str.to_date("%Y-%m-%d", strict=False)
    raise ValueError(f"unknown column type {spec.type!r}")


def _present(spec: ColumnSpec, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.String:
        return pl.col(spec.name).is_not_null() & (_text(spec.name) != "")
    return pl.col(spec.name).is_not_null()


# A rule: (where it is broken, as a boolean; the reason it gives there; the column it blames).
Rule = tuple[pl.Expr, pl.Expr, str]


def _column_rules(spec: ColumnSpec, typed: str, present: pl.Expr) -> list[Rule]:
    """The contract's rules for one column, in the order their reasons are listed."""
    value = pl.col(typed)
    raw_text = pl.col(spec.name).cast(pl.String)
    rules: list[Rule] = []
    if not spec.nullable:
        rules.append((~present, pl.lit(f"{spec.name}: missing required value"), spec.name))
    rules.append((
        present & value.is_null(),
        pl.format(f"{spec.name}: expected {spec.type}, got '{{}}'", raw_text.str.slice(0, SHOWN_CHARS)),
        spec.name,
    ))
    if spec.type == "string":
        length = value.str.len_chars()
        rules.append((
            length > MAX_TEXT_CHARS,
            pl.format(f"{spec.name}: value is {{}} characters long, more than the {MAX_TEXT_CHARS} allowed", length),
            spec.name,
        ))
        rules.append((
            value.str.contains(CONTROL_CHARACTERS),
            pl.lit(f"{spec.name}: contains control characters (NUL, escape...)"),
            spec.name,
        ))
    if spec.is_number and (spec.min is not None or spec.max is not None):
        lo = spec.min if spec.min is not None else float("-inf")
        hi = spec.max if spec.max is not None else float("inf")
        rules.append((
            value.is_not_null() & ((value < lo) | (value > hi)),
            pl.format(f"{spec.name}: {{}} outside valid range [{spec.min}, {spec.max}]", value),
            spec.name,
        ))
    if spec.allowed_values is not None:
        allowed = list(spec.allowed_values)
        rules.append((
            value.is_not_null() & ~value.is_in(pl.lit(pl.Series(allowed, dtype=POLARS_TYPES[spec.type])).implode()),
            pl.format(
                f"{spec.name}: '{{}}' not among allowed values {allowed}",
                value.cast(pl.String).str.slice(0, SHOWN_CHARS),
            ),
            spec.name,
        ))
    return rules


def validate_rows(
    raw: pl.DataFrame,
    dataset: DatasetSpec,
    landing_day: date,
    *,
    already_loaded_ids: pl.DataFrame | None = None,
    known_references: pl.Series | None = None,
    now: datetime | None = None,
) -> ValidationResult:
    """Split raw rows (from ``read_landing_file``, possibly several files of one day) into
    typed rows that satisfy the contract and quarantined rows with their reasons.

    ``already_loaded_ids``: ids stored under other landing days (columns id, landing_date);
    a repeat of one is quarantined instead of loaded twice. ``known_references``: valid values
    for a column declaring ``references`` (outcomes must point at a loaded application).
    """
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    id_col = dataset.id_column.name
    ts_col = dataset.timestamp_column.name
    typed_names = {c.name: f"__typed__{c.name}" for c in dataset.columns}

    frame = raw.with_columns(
        [_typed(spec, raw.schema[spec.name]).alias(typed_names[spec.name]) for spec in dataset.columns]
    )
    # in contract order: the first broken rule names the column
    rules: list[Rule] = [(pl.col(MALFORMED).is_not_null(), pl.col(MALFORMED), "(row)")]
    for spec in dataset.columns:
        rules += _column_rules(spec, typed_names[spec.name], _present(spec, raw.schema[spec.name]))

    ts_typed = pl.col(typed_names[ts_col])
    ts_date = ts_typed.dt.date() if dataset.timestamp_column.type == "timestamp" else ts_typed
    id_value = pl.col(typed_names[id_col])
    rules += [
        (
            ts_typed.is_not_null() & (ts_date != pl.lit(landing_day)),
            pl.format(f"{ts_col}: {{}} is not on landing day {landing_day.isoformat()}", ts_date.cast(pl.String)),
            ts_col,
        ),
        (
            ts_typed.is_not_null() & (ts_typed.cast(pl.Datetime("us")) > pl.lit(now)),
            pl.format(f"{ts_col}: {{}} is in the future", ts_typed.cast(pl.String)),
            ts_col,
        ),
        (
            id_value.is_not_null() & ~id_value.is_first_distinct(),
            pl.format(f"{id_col}: duplicate '{{}}' (already earlier in this landing day)",
                      id_value.str.slice(0, SHOWN_CHARS)),
            id_col,
        ),
    ]

    if already_loaded_ids is not None and already_loaded_ids.height:
        earlier = already_loaded_ids.select(
            pl.col(already_loaded_ids.columns[0]).cast(pl.String).alias("__earlier_id"),
            pl.col(already_loaded_ids.columns[1]).cast(pl.String).alias("__earlier_day"),
        ).unique("__earlier_id")
        frame = frame.join(earlier, left_on=typed_names[id_col], right_on="__earlier_id", how="left")
        rules.append((
            pl.col("__earlier_day").is_not_null(),
            pl.format(f"{id_col}: '{{}}' was already loaded from landing day {{}}", id_value, pl.col("__earlier_day")),
            id_col,
        ))

    for spec in dataset.columns:
        if spec.references and known_references is not None:
            known = known_references.cast(pl.String).unique()
            ref_value = pl.col(typed_names[spec.name])
            rules.append((
                ref_value.is_not_null() & ~ref_value.is_in(pl.lit(known).implode()),
                pl.format(f"{spec.name}: '{{}}' does not match any loaded {spec.references}", ref_value),
                spec.name,
            ))

    # Every rule is evaluated once over the whole frame as a boolean column; the reasons
    # (formatted text) and the column to blame only for the (few) broken rows. Formatting a
    # reason for every row and picking the first one cost over half the ingestion time
    # (benchmarks/results, profiles of 2026-11-26 and -27).
    broken_columns = [f"__broken_{i}" for i in range(len(rules))]
    frame = frame.with_columns([broken.fill_null(False).alias(name) for (broken, _, _), name in zip(rules, broken_columns)])
    bad = pl.any_horizontal(broken_columns)
    in_file_order = [SOURCE_FILE, ROW_NUMBER]

    loaded = frame.filter(~bad).select(
        *[pl.col(typed_names[c.name]).alias(c.name) for c in dataset.columns],
        pl.lit(landing_day).alias(LANDING_DATE),
        pl.col(SOURCE_FILE).alias(SOURCE_FILE_COLUMN),
        pl.col(ROW_NUMBER).alias(SOURCE_ROW_COLUMN),
    )
    if not _in_file_order(loaded, SOURCE_FILE_COLUMN, SOURCE_ROW_COLUMN):
        loaded = loaded.sort([SOURCE_FILE_COLUMN, SOURCE_ROW_COLUMN], maintain_order=True)
    malformed = pl.col(MALFORMED).is_not_null()
    quarantined_rows = frame.filter(bad).sort(in_file_order, maintain_order=True).with_columns(
        pl.coalesce([pl.when(pl.col(name)).then(pl.lit(column)) for name, (_, _, column) in zip(broken_columns, rules)])
        .alias("__first_column"),
        # a malformed row's cells are not where the header says, so its one reason is the shape
        pl.when(malformed)
        .then(pl.concat_list([pl.col(MALFORMED)]))
        .otherwise(
            pl.concat_list([pl.when(pl.col(name)).then(reason) for name, (_, reason, _) in zip(broken_columns, rules)])
            .list.drop_nulls()
        )
        .alias("__reasons"),
    )
    raw_record = pl.struct([pl.col(c).cast(pl.String) for c in dataset.column_names]).struct.json_encode()
    quarantined = quarantined_rows.select(
        pl.lit(landing_day).alias(LANDING_DATE),
        pl.col(SOURCE_FILE).alias(SOURCE_FILE_COLUMN),
        pl.col(ROW_NUMBER).cast(pl.Int64).alias(SOURCE_ROW_COLUMN),
        pl.col(id_col).cast(pl.String).alias("record_id"),
        pl.col("__first_column").alias("column_name"),
        pl.col("__reasons").list.first().alias("reason"),
        pl.col("__reasons").alias("all_reasons"),
        pl.coalesce(pl.col(RAW_CELLS), raw_record).alias("raw_record"),
    ).cast(QUARANTINE_SCHEMA)
    return ValidationResult(loaded=loaded, quarantined=quarantined)


def _in_file_order(frame: pl.DataFrame, file_column: str, row_column: str) -> bool:
    """Whether rows already run by file name, then row number (one file read in order always
    does): sorting a million wide rows that are in order costs a second for nothing."""
    files, rows = pl.col(file_column), pl.col(row_column)
    backwards = (files < files.shift()) | ((files == files.shift()) & (rows < rows.shift()))
    return not frame.select(backwards.any()).item()


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def loaded_schema(dataset: DatasetSpec) -> dict[str, pl.DataType]:
    schema = {c.name: POLARS_TYPES[c.type] for c in dataset.columns}
    schema.update({LANDING_DATE: pl.Date(), SOURCE_FILE_COLUMN: pl.String(), SOURCE_ROW_COLUMN: pl.Int64()})
    return schema
