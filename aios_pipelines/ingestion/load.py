"""One landing day of one dataset, read and checked: the pure core of the raw_* assets."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from aios_pipelines.ingestion.contract import DatasetSpec
from aios_pipelines.ingestion.landing import files_for_day, read_landing_file
from aios_pipelines.ingestion.validation import (
    SOURCE_FILE_COLUMN,
    ValidationResult,
    empty_quarantine,
    loaded_schema,
    validate_rows,
)


@dataclass(frozen=True)
class FileReconciliation:
    file: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    extra_columns: tuple[str, ...] = ()

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_loaded + self.rows_quarantined


@dataclass
class LandingDayLoad:
    day: date
    loaded: pl.DataFrame
    quarantined: pl.DataFrame
    files: list[FileReconciliation] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)


def load_landing_day(
    landing_dir: Path,
    dataset: DatasetSpec,
    day: date,
    *,
    already_loaded_ids: pl.DataFrame | None = None,
    known_references: pl.Series | None = None,
) -> LandingDayLoad:
    """Read every file of ``day`` and split the rows into loaded and quarantined.

    Any unreadable file raises ``LandingFileError`` before anything is returned, so the
    caller stores nothing of the day rather than part of it.
    """
    landing_dir = Path(landing_dir)
    frames: list[pl.DataFrame] = []
    extras: dict[str, tuple[str, ...]] = {}
    for landing_file in files_for_day(landing_dir, dataset, day):
        name = landing_file.path.relative_to(landing_dir).as_posix()
        frame, extra = read_landing_file(landing_file.path, dataset, source_name=name)
        extras[name] = tuple(extra)
        frames.append(frame)
    if not frames:
        return LandingDayLoad(day, pl.DataFrame(schema=loaded_schema(dataset)), empty_quarantine(), [])

    if len({tuple(f.schema.items()) for f in frames}) > 1:
        # a CSV (text) and a Parquet (typed) file on the same day: compare them as text
        frames = [f.with_columns(pl.col(dataset.column_names).cast(pl.String)) for f in frames]
    raw = pl.concat(frames, how="vertical")
    result: ValidationResult = validate_rows(
        raw, dataset, day, already_loaded_ids=already_loaded_ids, known_references=known_references
    )
    loaded = result.loaded.cast(loaded_schema(dataset))  # type: ignore[arg-type]
    loaded_counts = dict(loaded.group_by(SOURCE_FILE_COLUMN).len().iter_rows())
    quarantined_counts = dict(result.quarantined.group_by(SOURCE_FILE_COLUMN).len().iter_rows())
    files = [
        FileReconciliation(
            file=name,
            rows_read=frame.height,
            rows_loaded=loaded_counts.get(name, 0),
            rows_quarantined=quarantined_counts.get(name, 0),
            extra_columns=extras[name],
        )
        for name, frame in zip(extras, frames)
    ]
    return LandingDayLoad(day=day, loaded=loaded, quarantined=result.quarantined, files=files)
