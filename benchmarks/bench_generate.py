"""Time the synthetic lender writing a landing area.

    python benchmarks/bench_generate.py --rows 1000000 --out /tmp/bench_landing

Prints one JSON object: rows, days, format, seconds, rows_per_second and peak RSS (MiB).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from aios_pipelines.synthetic.generator import FILE_FORMATS, write_landing


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="total applications to generate")
    parser.add_argument("--days", type=int, default=10, help="days the rows are spread over")
    parser.add_argument("--format", dest="file_format", choices=FILE_FORMATS, default="parquet")
    parser.add_argument("--out", type=Path, default=None, help="landing directory (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2026, 1, 1))
    args = parser.parse_args(argv)
    if args.rows < args.days or args.days < 1:
        parser.error("--rows must be at least --days, and --days at least 1")

    per_day = args.rows // args.days
    with tempfile.TemporaryDirectory(prefix="aios_bench_") as scratch:
        out = args.out if args.out is not None else Path(scratch) / "landing"
        began = time.perf_counter()
        summary = write_landing(
            out,
            start=args.start,
            days=args.days,
            per_day=per_day,
            seed=args.seed,
            file_format=args.file_format,
        )
        seconds = time.perf_counter() - began
        written = sum(p.stat().st_size for p in summary.application_files + summary.outcome_files)

    result = {
        "rows": summary.applications,
        "days": summary.days,
        "per_day": per_day,
        "format": args.file_format,
        "outcomes": summary.outcomes,
        "bad_rows": summary.bad_rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(summary.applications / seconds) if seconds > 0 else None,
        "bytes_written": written,
        "peak_rss_mib": round(_peak_rss_mib(), 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
