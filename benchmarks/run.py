"""The benchmark harness behind ``make bench``: the data plane against plain baselines.

    .venv/bin/python benchmarks/run.py                 # 1,000,000 applications over 10 days
    .venv/bin/python benchmarks/run.py --quick         # 100,000: a smoke test
    .venv/bin/python benchmarks/run.py --repeat 3 --profile --keep

Every stage runs in a fresh subprocess (``benchmarks.harness.run_stage``) so its peak RSS is
its own. Results are merged into ``benchmarks/results/<YYYY-MM-DD>.json`` under the key
``data_plane`` (``data_plane_rows_<n>`` for another size) and the day's Markdown table is
rewritten. Ratios are ours / baseline from the same run: below 1 means ours is faster.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import pstats
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # run as a script (benchmarks/run.py): make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (  # noqa: E402
    RESULTS_DIR,
    load_average,
    machine_info,
    make_work_dir,
    ratio,
    record_results,
    run_stage,
    run_stage_repeated,
)

BENCHMARK = "data_plane"
DEFAULT_ROWS = 1_000_000
QUICK_ROWS = 100_000
STAGE_MODULE = "benchmarks.data_plane"
FORMATS = ("csv", "parquet")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _summary(name: str, result: dict[str, Any]) -> str:
    rows_per_second = result.get("rows_per_second")
    return (
        f"  {name:<22} {result.get('seconds', 0):>9.3f} s  "
        f"{(f'{rows_per_second:,}' if rows_per_second else '-'):>12} rows/s  "
        f"{result.get('peak_rss_mib', 0):>8.1f} MiB peak"
    )


def _profile_text(profile_path: Path, title: str, limit: int = 30) -> str:
    stream = io.StringIO()
    stats = pstats.Stats(str(profile_path), stream=stream)
    stats.strip_dirs()
    stream.write(f"===== {title}: by cumulative time =====\n")
    stats.sort_stats("cumulative").print_stats(limit)
    stream.write(f"===== {title}: by own time =====\n")
    stats.sort_stats("tottime").print_stats(limit)
    return stream.getvalue()


def run_data_plane(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rows, days = args.rows, args.days
    common = {"seed": args.seed, "start": args.start}
    stages: dict[str, dict[str, Any]] = {}

    def stage(name: str, function: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        _log(f"- {name} ...")
        result = run_stage_repeated(f"{STAGE_MODULE}:{function}", kwargs, repeat=args.repeat)
        stages[name] = result
        _log(_summary(name, result))
        return result

    landing = {fmt: work / f"landing_{fmt}" for fmt in FORMATS}
    for fmt in FORMATS:
        stage(
            f"generate_{fmt}",
            "generate",
            {"landing_dir": str(landing[fmt]), "rows": rows, "days": days, "file_format": fmt, **common},
        )
    # ours and its baseline back to back, format by format, so both see the same machine
    for fmt in FORMATS:
        stage(
            f"ingest_{fmt}",
            "ingest",
            {
                "landing_dir": str(landing[fmt]),
                "warehouse_path": str(work / f"warehouse_{fmt}.duckdb"),
                "days": days,
                "start": args.start,
            },
        )
        stage(
            f"duckdb_read_{fmt}",
            "duckdb_read",
            {
                "landing_dir": str(landing[fmt]),
                "database_path": str(work / f"duckdb_read_{fmt}.duckdb"),
                "file_format": fmt,
            },
        )
    features_input = str(work / "warehouse_csv.duckdb")
    stage("features_polars", "features_polars", {"warehouse_path": features_input, "repeat": args.inner_repeat})
    stage("features_pandas", "features_pandas", {"warehouse_path": features_input, "repeat": args.inner_repeat})

    ratios = {
        "ingest_vs_duckdb_read_csv_ratio": ratio(stages["ingest_csv"]["seconds"], stages["duckdb_read_csv"]["seconds"]),
        "ingest_vs_duckdb_read_parquet_ratio": ratio(
            stages["ingest_parquet"]["seconds"], stages["duckdb_read_parquet"]["seconds"]
        ),
        "features_vs_pandas_ratio": ratio(stages["features_polars"]["seconds"], stages["features_pandas"]["seconds"]),
    }

    notes = [
        "Ratios are ours / baseline seconds from this run (below 1: ours is faster).",
        "ingest includes what the baseline does not: contract validation of every cell, quarantine with reasons, "
        "per-file reconciliation, and one replace-partition transaction per day and table "
        f"(load {stages['ingest_csv']['load_seconds']} s + write {stages['ingest_csv']['write_seconds']} s for CSV, "
        f"load {stages['ingest_parquet']['load_seconds']} s + write {stages['ingest_parquet']['write_seconds']} s "
        "for Parquet).",
    ]
    varchar = [c for c, t in stages["duckdb_read_csv"].get("column_types", {}).items() if t == "VARCHAR"]
    notes.append(
        "duckdb read_csv auto-detects types and validates nothing; it typed "
        f"{len(varchar)} columns as VARCHAR ({', '.join(varchar)}): text in numeric cells and string columns."
    )
    notes.append(
        f"features: median of {args.inner_repeat} calls inside one process over the rows ingested from CSV; "
        "polars uses every core, pandas one. Outputs were checked equal on "
        f"{stages['features_pandas'].get('equal_to_polars_on_sample_rows')} sampled rows before timing."
    )
    notes.append(
        "peak RSS is the stage process's ru_maxrss and includes the interpreter and libraries "
        "(the RSS-after-imports column: interpreter, polars, duckdb and aios_pipelines; pandas is imported inside "
        "its own stage) and, for features, the input frame loaded before timing."
    )

    profiles: dict[str, str] = {}
    if args.profile:
        for fmt in ("csv", "parquet"):
            path = work / f"ingest_{fmt}.prof"
            _log(f"- profiling ingest_{fmt} under cProfile ...")
            run_stage(
                f"{STAGE_MODULE}:ingest",
                {
                    "landing_dir": str(landing[fmt]),
                    "warehouse_path": str(work / f"warehouse_{fmt}_profiled.duckdb"),
                    "days": days,
                    "start": args.start,
                },
                profile=path,
            )
            profiles[fmt] = _profile_text(path, f"ingest_{fmt}")

    return {"stages": stages, "ratios": ratios, "notes": notes, "profiles": profiles}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help=f"applications in total (default {DEFAULT_ROWS:,})")
    parser.add_argument("--days", type=int, default=10, help="landing days the rows are spread over (default 10)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows: a smoke test")
    parser.add_argument("--repeat", type=int, default=1, help="fresh processes per stage; the median is kept")
    parser.add_argument("--inner-repeat", type=int, default=5, help="timed calls inside a features stage")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start", default="2026-01-01", help="first landing day (ISO date)")
    parser.add_argument("--profile", action="store_true", help="also run ingest under cProfile and save the stats")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (landing files, DuckDB files)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    if args.quick and args.rows is not None:
        parser.error("--quick and --rows are exclusive")
    args.rows = QUICK_ROWS if args.quick else (args.rows or DEFAULT_ROWS)
    if args.days < 1 or args.rows < args.days:
        parser.error("--days must be at least 1 and --rows at least --days")
    if args.repeat < 1 or args.inner_repeat < 1:
        parser.error("--repeat and --inner-repeat must be at least 1")
    try:
        dt.date.fromisoformat(args.start)
    except ValueError:
        parser.error(f"--start must be an ISO date, got {args.start!r}")

    machine = machine_info()
    _log(
        f"data-plane benchmark: {args.rows:,} rows over {args.days} days, repeat {args.repeat}; "
        f"{machine['cores']} cores, {machine['cpu_model']}, load average {load_average()}"
    )
    work = make_work_dir(BENCHMARK)
    _log(f"work directory: {work}")
    before = load_average()
    started = dt.datetime.now().astimezone()
    try:
        outcome = run_data_plane(args, work)
    finally:
        if args.keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    after = load_average()

    key = BENCHMARK if args.rows == DEFAULT_ROWS else f"{BENCHMARK}_rows_{args.rows}"
    entry = {
        "benchmark": BENCHMARK,
        "recorded_at": started.isoformat(timespec="seconds"),
        "command": " ".join(["benchmarks/run.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)]),
        "params": {
            "rows": args.rows,
            "days": args.days,
            "per_day": args.rows // args.days,
            "seed": args.seed,
            "start": args.start,
            "repeat": args.repeat,
            "inner_repeat": args.inner_repeat,
        },
        "machine": machine,
        "load_average": {"before": before, "after": after},
        "stages": outcome["stages"],
        "ratios": outcome["ratios"],
        "notes": outcome["notes"],
    }
    day = started.date()
    json_path, md_path = record_results(key, entry, results_dir=args.results_dir, day=day)
    profile_paths = []
    for fmt, text in outcome["profiles"].items():
        path = args.results_dir / f"{day.isoformat()}-{key}-ingest_{fmt}-profile.txt"
        path.write_text(text, encoding="utf-8")
        profile_paths.append(path)

    print(f"data plane, {args.rows:,} rows ({key}):")
    for name, result in outcome["stages"].items():
        print(_summary(name, result))
    for name, value in outcome["ratios"].items():
        print(f"  {name} = {value}")
    print(f"results: {json_path} and {md_path}")
    for path in profile_paths:
        print(f"profile: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
