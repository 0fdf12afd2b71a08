"""Small helpers that turn frames into Dagster metadata (previews, counts)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import dagster as dg
import polars as pl


def markdown_table(frame: pl.DataFrame, max_rows: int = 10) -> dg.MetadataValue:
    if frame.is_empty():
        return dg.MetadataValue.md("_no rows_")
    head = frame.head(max_rows)
    header = "| " + " | ".join(head.columns) + " |"
    rule = "| " + " | ".join("---" for _ in head.columns) + " |"
    lines = [header, rule]
    for row in head.iter_rows():
        cells = ["" if v is None else str(v).replace("|", "\\|").replace("\n", " ")[:80] for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    if frame.height > max_rows:
        lines.append(f"\n_{frame.height - max_rows} more rows_")
    return dg.MetadataValue.md("\n".join(lines))


def partition_days(context: dg.AssetExecutionContext) -> list:
    """The days this run covers: one partition, or a whole range in a single-run backfill."""
    partitioned = context.has_partition_key or context.has_partition_key_range
    keys: Sequence[str] = context.partition_keys if partitioned else []
    return [date.fromisoformat(k) for k in keys]
