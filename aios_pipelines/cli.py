"""The ``aios`` command: generate data, run the demo, and operate the platform."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

DEMO_START = date(2026, 6, 1)
DEMO_DAYS = 120
DEMO_PER_DAY = 400
DEMO_SEED = 42


def _paths():
    from aios_pipelines.settings import aios_paths

    return aios_paths().ensure()


def cmd_generate(args: argparse.Namespace) -> int:
    from aios_pipelines.synthetic.generator import DriftSpec, write_landing

    paths = _paths()
    out = Path(args.out) if args.out else paths.landing
    drift = None
    if args.drift_from:
        drift = DriftSpec(start=date.fromisoformat(args.drift_from), kind=args.drift_kind, strength=args.drift_strength)
    started = time.perf_counter()
    summary = write_landing(
        out,
        start=date.fromisoformat(args.start),
        days=args.days,
        per_day=args.per_day,
        seed=args.seed,
        file_format=args.format,
        performance_window_days=args.performance_window_days,
        drift=drift,
        bad_row_rate=args.bad_row_rate,
    )
    seconds = time.perf_counter() - started
    print(
        f"wrote {summary.applications:,} applications over {summary.days} days "
        f"({summary.first_day} .. {summary.last_day}) and {summary.outcomes:,} matured outcomes "
        f"to {out} in {seconds:.1f}s ({summary.bad_rows} rows deliberately break the contract)"
    )
    return 0


def _landing_span(landing_dir: Path, dataset) -> tuple[date, date] | None:
    from aios_pipelines.ingestion.landing import discover_landing_files

    files = discover_landing_files(landing_dir, dataset)
    if not files:
        return None
    return min(f.day for f in files), max(f.day for f in files)


def cmd_demo(args: argparse.Namespace) -> int:
    from aios_pipelines.defs.instance import dagster_home
    from aios_pipelines.defs.runner import JobFailedError, run_job
    from aios_pipelines.ingestion.contract import load_contract
    from aios_pipelines.settings import contract_path
    from aios_pipelines.synthetic.generator import DriftSpec, write_landing

    started = time.perf_counter()
    paths = _paths()
    home = dagster_home(paths)
    contract = load_contract(contract_path())
    print(f"AIOS demo in {paths.home}")

    if not _landing_span(paths.landing, contract.applications):
        print(f"[1/3] generating the synthetic lender: {args.days} days x {args.per_day} applications")
        drift = DriftSpec(start=date.fromisoformat(args.drift_from), kind=args.drift_kind) if args.drift_from else None
        write_landing(
            paths.landing,
            start=DEMO_START,
            days=args.days,
            per_day=args.per_day,
            seed=DEMO_SEED,
            performance_window_days=contract.performance_window_days,
            drift=drift,
        )
    else:
        print(f"[1/3] landing files already under {paths.landing}; using them")

    try:
        span = _landing_span(paths.landing, contract.applications)
        assert span is not None
        print(f"[2/3] ingesting applications and building features ({span[0]} .. {span[1]})")
        run_job("ingest_applications", first_day=span[0], last_day=span[1])
        outcome_span = _landing_span(paths.landing, contract.outcomes)
        if outcome_span:
            print(f"[3/3] ingesting matured loan outcomes ({outcome_span[0]} .. {outcome_span[1]})")
            run_job("ingest_loan_outcomes", first_day=outcome_span[0], last_day=outcome_span[1])
    except JobFailedError as exc:
        print(f"\nDEMO FAILED: {exc}", file=sys.stderr)
        return 1

    print_summary(paths, home, time.perf_counter() - started)
    return 0


def print_summary(paths, home: Path, seconds: float) -> None:
    from aios_pipelines.storage.warehouse import Warehouse

    warehouse = Warehouse(paths.warehouse)
    print(f"\nSummary ({seconds:.0f}s)")
    tables = ["raw_applications", "quarantined_applications", "application_features", "raw_loan_outcomes",
              "quarantined_loan_outcomes"]
    width = max(len(t) for t in tables)
    for table in tables:
        count = warehouse.scalar(f'select count(*) from "{table}"') if warehouse.table_exists(table) else 0
        print(f"  {table:<{width}}  {count:>9,} rows")
    if warehouse.table_exists("quarantined_applications"):
        reasons = warehouse.query(
            "select column_name, count(*) as rows from quarantined_applications group by 1 order by 2 desc limit 5"
        )
        if reasons.height:
            print("  quarantined applications by first failing column: "
                  + ", ".join(f"{c} {n}" for c, n in reasons.iter_rows()))
    print("\nWhere to look")
    print(f"  Dagster UI:  DAGSTER_HOME={home} .venv/bin/dagster dev -w workspace.yaml   (or: make dev)")
    print(f"  warehouse:   {paths.warehouse}   (duckdb -readonly, or notebooks/)")
    print(f"  landing:     {paths.landing}   (drop a file into a day folder; the sensor ingests it)")
    print(f"  reports:     {paths.reports}")


def cmd_paths(args: argparse.Namespace) -> int:
    from aios_pipelines.defs.instance import dagster_home

    paths = _paths()
    for name in ("home", "landing", "warehouse", "review_store", "mlflow_db", "mlflow_artifacts", "reports"):
        print(f"{name:<17} {getattr(paths, name)}")
    print(f"{'dagster_home':<17} {dagster_home(paths)}")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    """Start the Dagster UI (webserver, daemon, code server) on this data directory."""
    from aios_pipelines.defs.instance import dagster_home
    from aios_pipelines.settings import PROJECT_ROOT

    paths = _paths()
    env = dict(os.environ, DAGSTER_HOME=str(dagster_home(paths)), AIOS_HOME=str(paths.home))
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", args.host, "-p", str(args.port)]
    print(f"Dagster UI on http://{args.host}:{args.port}  (DAGSTER_HOME={env['DAGSTER_HOME']})", flush=True)
    os.chdir(PROJECT_ROOT)
    os.execve(command[0], command, env)
    return 0  # not reached


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aios", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write synthetic landing files (applications and matured outcomes)")
    gen.add_argument("--days", type=int, default=DEMO_DAYS)
    gen.add_argument("--per-day", type=int, default=DEMO_PER_DAY)
    gen.add_argument("--start", default=DEMO_START.isoformat(), help="first application day (YYYY-MM-DD)")
    gen.add_argument("--seed", type=int, default=DEMO_SEED)
    gen.add_argument("--format", choices=["csv", "parquet", "mixed"], default="mixed")
    gen.add_argument("--performance-window-days", type=int, default=60)
    gen.add_argument("--bad-row-rate", type=float, default=0.002)
    gen.add_argument("--drift-from", help="first drifted day (YYYY-MM-DD)")
    gen.add_argument("--drift-kind", choices=["income_shift", "channel_mix"], default="income_shift")
    gen.add_argument("--drift-strength", type=float, default=1.0)
    gen.add_argument("--out", help="landing folder (default: $AIOS_HOME/landing)")
    gen.set_defaults(func=cmd_generate)

    demo = sub.add_parser("demo", help="generate data if needed and run the platform end to end")
    demo.add_argument("--days", type=int, default=DEMO_DAYS)
    demo.add_argument("--per-day", type=int, default=DEMO_PER_DAY)
    demo.add_argument("--drift-from", help="inject drift from this day (YYYY-MM-DD)")
    demo.add_argument("--drift-kind", choices=["income_shift", "channel_mix"], default="income_shift")
    demo.set_defaults(func=cmd_demo)

    dev = sub.add_parser("dev", help="start the Dagster UI on this data directory")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(func=cmd_dev)

    paths = sub.add_parser("paths", help="print where this data directory keeps each store")
    paths.set_defaults(func=cmd_paths)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
