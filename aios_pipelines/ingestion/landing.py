"""Finding and reading landing files.

Landing layout, one folder per day: ``<landing>/<dataset folder>/YYYY-MM-DD/*.csv|*.parquet``.
Files are read without type inference (CSV cells stay text) so that a bad cell becomes a
quarantined row with a reason instead of a failed parse; only a file that cannot be read at
all raises ``LandingFileError``, which names the file and, where known, the line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from aios_pipelines.ingestion.contract import DatasetSpec

SUPPORTED_SUFFIXES = (".csv", ".parquet")
ROW_NUMBER = "__source_row"
SOURCE_FILE = "__source_file"
MALFORMED = "__malformed_reason"
RAW_CELLS = "__raw_cells"
_POLARS_DUPLICATE = re.compile(r"(.+)_duplicated_\d+")
# Parquet column types a contract column can be read from; anything else (lists, structs,
# durations...) fails the file with the column named instead of a polars cast error
_PARQUET_READABLE = (pl.String, pl.Boolean, pl.Date, pl.Datetime, pl.Null, pl.Categorical, pl.Enum, pl.Binary)


class LandingFileError(ValueError):
    """A landing file that cannot be read at all. Nothing from it is stored."""

    def __init__(self, path: Path | str, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{path}, line {line}" if line is not None else f"{path}"
        super().__init__(f"cannot ingest {where}: {message}")


@dataclass(frozen=True)
class LandingFile:
    path: Path
    day: date

    @property
    def signature(self) -> str:
        """Changes when the file is replaced or rewritten; used by the sensor's cursor."""
        stat = self.path.stat()
        return f"{stat.st_mtime_ns}:{stat.st_size}"


def dataset_folder(landing_dir: Path, dataset: DatasetSpec) -> Path:
    return Path(landing_dir) / dataset.landing_folder


def _parse_day(name: str) -> date | None:
    try:
        return date.fromisoformat(name)
    except ValueError:
        return None


def discover_landing_files(landing_dir: Path, dataset: DatasetSpec) -> list[LandingFile]:
    """Every landing file of a dataset, ordered by day then name; other folders are ignored."""
    root = dataset_folder(landing_dir, dataset)
    if not root.is_dir():
        return []
    found: list[LandingFile] = []
    for day_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        day = _parse_day(day_dir.name)
        if day is None:
            continue
        for path in sorted(day_dir.iterdir()):
            if path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES and not path.name.startswith("."):
                found.append(LandingFile(path=path, day=day))
    return found


def files_for_day(landing_dir: Path, dataset: DatasetSpec, day: date) -> list[LandingFile]:
    return [f for f in discover_landing_files(landing_dir, dataset) if f.day == day]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_header(path: Path, columns: list[str], dataset: DatasetSpec) -> list[str]:
    """Missing or repeated contract columns make the whole file unreadable; extra columns are reported."""
    if not any(c.strip() for c in columns):
        raise LandingFileError(path, "empty file: no header row", line=1)
    # a contract column named twice is ambiguous (polars renames the repeat to NAME_duplicated_N);
    # repeated extra columns, such as blank names from trailing commas, are only ignored
    repeated = sorted(
        c for c in dataset.column_names
        if columns.count(c) > 1 or any((m := _POLARS_DUPLICATE.fullmatch(x)) and m.group(1) == c for x in columns)
    )
    if repeated:
        raise LandingFileError(path, f"header repeats column(s) {repeated}: which one holds the value is ambiguous", line=1)
    missing = [c for c in dataset.column_names if c not in columns]
    if missing:
        hint = ""
        if len(columns) == 1 and any(sep in columns[0] for sep in (";", "\t", "|")):
            hint = " (the header is one column: is the file delimited by something other than ','?)"
        raise LandingFileError(
            path, f"header lacks contract column(s) {missing}; found {columns[:20]}{hint}", line=1
        )
    return [c for c in columns if c not in dataset.column_names]


def _check_text_encoding(path: Path) -> None:
    """UTF-16 text is valid UTF-8 byte by byte (with NULs), so name it before polars reads it."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise LandingFileError(path, "the file is UTF-16 encoded (byte-order mark); save it as UTF-8", line=1)
    if b"\x00" in head.split(b"\n", 1)[0]:
        raise LandingFileError(
            path, "the header contains NUL bytes: UTF-16 without a byte-order mark, or not a text file; "
            "save it as UTF-8", line=1,
        )


def _read_csv_strict(path: Path, dataset: DatasetSpec) -> pl.DataFrame:
    """Slow path with the standard csv module: exact line numbers, ragged rows kept as malformed."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise LandingFileError(
            path, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8", line=line
        ) from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise LandingFileError(path, "empty file: no header row", line=1) from None
    except csv.Error as exc:
        raise LandingFileError(path, f"unreadable header: {exc}", line=1) from exc
    header = [h.strip() for h in header]
    _check_header(path, header, dataset)
    width = len(header)
    rows: list[list[str | None]] = []
    malformed: list[str | None] = []
    raw_cells: list[str | None] = []
    try:
        for record in reader:
            if not record:
                continue
            if len(record) != width:
                malformed.append(f"malformed row: {len(record)} fields where the header has {width}")
                raw_cells.append(json.dumps(record))
                rows.append([None] * width)
            else:
                malformed.append(None)
                raw_cells.append(None)
                rows.append([cell if cell != "" else None for cell in record])
    except csv.Error as exc:
        raise LandingFileError(path, f"unparseable CSV: {exc}", line=reader.line_num) from exc
    frame = pl.DataFrame(rows, schema=[(h, pl.String) for h in header], orient="row")
    return frame.with_columns(
        pl.Series(MALFORMED, malformed, dtype=pl.String), pl.Series(RAW_CELLS, raw_cells, dtype=pl.String)
    )


def read_landing_file(
    path: Path, dataset: DatasetSpec, source_name: str | None = None
) -> tuple[pl.DataFrame, list[str]]:
    """Read one file into a frame with the contract's columns (CSV cells as text).

    ``source_name`` is how the file is named in stored rows (default: the path); callers pass
    the path relative to the landing folder so stored rows do not depend on where it lives.
    Returns the frame, with the 1-based data row number in ``__source_row`` and any
    row-level parse problem in ``__malformed_reason``, and the list of extra columns ignored.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise LandingFileError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise LandingFileError(path, "empty file: no header row", line=1)
    if suffix == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # polars raises several types for a corrupt file
            raise LandingFileError(path, f"not a readable Parquet file: {exc}") from exc
        unreadable = {
            c: str(t) for c, t in frame.schema.items()
            if c in dataset.column_names and not (t.is_numeric() or isinstance(t, _PARQUET_READABLE))
        }
        if unreadable:
            raise LandingFileError(
                path, f"column(s) of a type no contract value can come from: {unreadable}; "
                "expected text, numbers, booleans, dates or timestamps"
            )
        frame = frame.with_columns(
            pl.lit(None, dtype=pl.String).alias(MALFORMED), pl.lit(None, dtype=pl.String).alias(RAW_CELLS)
        )
    elif suffix == ".csv":
        _check_text_encoding(path)
        try:
            frame = pl.read_csv(path, infer_schema=False, encoding="utf8")
            _check_header(path, [c.strip() for c in frame.columns], dataset)  # before a rename can collide
            frame = frame.rename({c: c.strip() for c in frame.columns})
            frame = frame.with_columns(
                pl.lit(None, dtype=pl.String).alias(MALFORMED), pl.lit(None, dtype=pl.String).alias(RAW_CELLS)
            )
        except (pl.exceptions.ComputeError, pl.exceptions.NoDataError):
            frame = _read_csv_strict(path, dataset)
    else:
        raise LandingFileError(path, f"unsupported file type {suffix!r}; expected one of {SUPPORTED_SUFFIXES}")

    extra = _check_header(path, [c for c in frame.columns if c not in (MALFORMED, RAW_CELLS)], dataset)
    frame = frame.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ROW_NUMBER),
        pl.lit(source_name or str(path)).alias(SOURCE_FILE),
        *dataset.column_names,
        MALFORMED,
        RAW_CELLS,
    )
    return frame, extra
