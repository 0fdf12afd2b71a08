"""``dbt build`` of the analytics project on a warehouse holding N application decisions
(``benchmarks/run.py --only dbt_build``; default N = 1,000,000 and 10,000,000).

The warehouse is built cheaply, outside the timing:

1. **Seed**: the hand-made warehouse of ``tests/test_dbt_analytics.py`` (twelve batch
   applications over two days, every route through the policy, overrides both ways, blind
   reviews, requests for information, four-eyes cases, matured outcomes) plus its online
   decisions (two more applications, one referred to a review case). Every source table
   of ``dbt_project/models/staging/_sources.yml`` is written, with the product's schemas.
2. **Scale** (:func:`scale_warehouse`): every source table is copied ``copies`` times by
   DuckDB SQL (``cross join range(copies)``). In copy ``k`` every string id column
   (``*_id``) gets the suffix ``-k``, every integer id (``event_id``, ``copied_cursor``,
   ``source_row``) is offset by ``k * (max + 1)``, and every date and timestamp is moved by
   ``k % spread_days`` days, so ids stay unique, the references between tables (case ->
   application, decision -> case, event -> case, outcome -> application, online decision
   -> its case) stay inside one copy and hold, and the decisions spread over a year of days.

N counts application decisions: rows of ``fct_application_decisions`` (the seed has 14
distinct applications; the one the batch and the online service both decided is kept
once). ``copies = ceil(N / 14)``, so the build holds N rounded up to a multiple of 14.

The seed's mix is review-heavy (8 of 14 applications referred, 8 cases, 11 human decisions,
30 review events per copy), so the review marts carry more rows than in a lender's
portfolio with a 10-20% referral rate: the timing is on the heavy side for the review marts.

Then ``dbt build`` runs by dbt's CLI from the venv (as ``benchmarks/end_to_end.py``'s
baseline), with ``AIOS_WAREHOUSE_PATH`` pointing the project's ``profiles.yml`` at the file,
after an untimed ``dbt parse`` into the same target folder. The stage reports the wall
time, dbt's own ``elapsed_time`` and per-node ``execution_time`` from ``run_results.json``
(the slowest nodes), the peak RSS of the dbt process (``getrusage(RUSAGE_CHILDREN)``), the
row counts of the marts and the status of every test.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCHMARK = "dbt_build"
DEFAULT_SIZES = (1_000_000, 10_000_000)
QUICK_SIZES = (100_000,)
SEED_DECISIONS = 14  # distinct applications decided in the seed (12 batch + 2 online-only)
SPREAD_DAYS = 365
INTEGER_IDS = ("event_id", "copied_cursor", "source_row")
MARTS = (
    "fct_application_decisions",
    "fct_review_decisions",
    "override_rates",
    "time_to_decision",
    "approval_funnel",
    "override_outcomes",
    "portfolio_performance",
)
SOURCE_TABLES = (
    "raw_applications",
    "raw_loan_outcomes",
    "scored_applications",
    "review_cases",
    "human_decisions",
    "review_events",
    "online_decisions",
    "online_applications",
)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def copies_for(decisions: int) -> int:
    return max(1, math.ceil(decisions / SEED_DECISIONS))


# ----------------------------------------------------------------------------------------
# The warehouse
# ----------------------------------------------------------------------------------------


def write_seed(warehouse_path: str) -> dict[str, int]:
    """The test suite's hand-made warehouse with its online rows, at ``warehouse_path``."""
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    from tests.test_dbt_analytics import write_fixture_warehouse, write_online_rows

    from aios_pipelines.ingestion.contract import load_contract
    from aios_pipelines.settings import DEFAULT_CONTRACT_PATH
    from aios_pipelines.storage.warehouse import Warehouse

    contract = load_contract(DEFAULT_CONTRACT_PATH)
    warehouse = Warehouse(Path(warehouse_path))
    write_fixture_warehouse(warehouse, contract)
    write_online_rows(warehouse, contract)
    return {t: int(warehouse.scalar(f"select count(*) from {t}")) for t in SOURCE_TABLES}


def _scaled_expression(column: str, data_type: str, offsets: dict[str, int]) -> str:
    quoted = f'"{column}"'
    kind = data_type.upper()
    if column in offsets and kind in ("BIGINT", "INTEGER", "HUGEINT", "UBIGINT", "SMALLINT"):
        return f"{quoted} + k.k * {offsets[column]}"
    if column.endswith("_id") and kind == "VARCHAR":
        return f"{quoted} || '-' || k.k"
    if kind == "DATE":
        return f"{quoted} + cast(k.k % {SPREAD_DAYS} as integer)"
    if kind.startswith("TIMESTAMP"):
        return f"{quoted} + to_days(cast(k.k % {SPREAD_DAYS} as integer))"
    return quoted


def scale_warehouse(seed_path: str, warehouse_path: str, copies: int) -> dict[str, Any]:
    """Write ``copies`` copies of every source table of the seed warehouse into a new
    warehouse file (ids suffixed or offset per copy, dates shifted by ``k % 365`` days)."""
    import duckdb

    began = time.perf_counter()
    target = Path(warehouse_path)
    target.unlink(missing_ok=True)
    counts: dict[str, int] = {}
    with duckdb.connect(str(target)) as con:
        con.execute(f"attach '{seed_path}' as seed (read_only)")
        # one offset for every integer id of every table (the largest in the seed + 1), so an
        # id that refers across tables under another name (online_applications.source_row =
        # online_decisions.copied_cursor) moves by the same amount in both
        located = con.execute(
            "select table_name, column_name from information_schema.columns where table_catalog = 'seed' "
            f"and column_name in ({', '.join(repr(c) for c in INTEGER_IDS)})"
        ).fetchall()
        step = 1 + max([0] + [int(con.execute(f'select coalesce(max("{c}"), 0) from seed.{t}').fetchone()[0])
                              for t, c in located])
        offsets = {column: step for _table, column in located}
        for table in SOURCE_TABLES:
            columns = con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_catalog = 'seed' and table_name = ? order by ordinal_position", [table]
            ).fetchall()
            if not columns:
                continue
            select = ", ".join(
                f'{_scaled_expression(name, data_type, offsets)} as "{name}"' for name, data_type in columns
            )
            con.execute(
                f"create table main.{table} as select {select} "
                f"from seed.{table} cross join range({int(copies)}) as k(k) order by k.k"
            )
            counts[table] = con.execute(f"select count(*) from main.{table}").fetchone()[0]
        con.execute("detach seed")
        con.execute("checkpoint")
    return {"copies": copies, "rows_by_table": counts, "seconds": round(time.perf_counter() - began, 3),
            "bytes": target.stat().st_size}


def build_warehouse(work_dir: str, decisions: int) -> dict[str, Any]:
    """Stage: the seed, then the scaled warehouse holding ``decisions`` application decisions."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    seed = work / "seed.duckdb"
    seed.unlink(missing_ok=True)
    seed_counts = write_seed(str(seed))
    began = time.perf_counter()
    scaled = scale_warehouse(str(seed), str(work / "warehouse.duckdb"), copies_for(decisions))
    return {
        "label": "seed (tests' hand-made warehouse) scaled by DuckDB SQL (cross join range)",
        "rows": scaled["rows_by_table"]["scored_applications"] + scaled["rows_by_table"]["online_decisions"],
        "seconds": round(time.perf_counter() - began, 3),
        "seed_rows_by_table": seed_counts,
        **{k: v for k, v in scaled.items() if k != "seconds"},
        "warehouse_path": str(work / "warehouse.duckdb"),
    }


# ----------------------------------------------------------------------------------------
# dbt build
# ----------------------------------------------------------------------------------------


def _dbt_command(command: str, warehouse_path: str, work: Path) -> tuple[list[str], dict[str, str]]:
    dbt = str(Path(sys.executable).with_name("dbt"))
    project = PROJECT_ROOT / "dbt_project"
    env = dict(os.environ)
    env.update({"AIOS_WAREHOUSE_PATH": str(Path(warehouse_path).resolve()), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"})
    return ([dbt, command, "--project-dir", str(project), "--profiles-dir", str(project),
             "--target-path", str(work / "target"), "--log-path", str(work / "logs")], env)


def summarise_run_results(results: dict[str, Any], top: int = 8) -> dict[str, Any]:
    """Statuses per resource type, the slowest nodes, and failing tests from run_results.json."""
    statuses: dict[str, dict[str, int]] = {}
    timings: list[tuple[str, float]] = []
    failing: list[str] = []
    for node in results.get("results", []):
        unique_id = node.get("unique_id", "")
        kind = unique_id.split(".", 1)[0]
        status = str(node.get("status"))
        statuses.setdefault(kind, {})
        statuses[kind][status] = statuses[kind].get(status, 0) + 1
        timings.append((unique_id, float(node.get("execution_time") or 0.0)))
        if kind in ("test", "unit_test") and status not in ("pass", "success"):
            failing.append(f"{unique_id}: {status}")
        if kind == "model" and status != "success":
            failing.append(f"{unique_id}: {status}")
    timings.sort(key=lambda kv: -kv[1])
    by_kind: dict[str, float] = {}
    for unique_id, seconds in timings:
        kind = unique_id.split(".", 1)[0]
        by_kind[kind] = round(by_kind.get(kind, 0.0) + seconds, 3)
    return {
        "nodes_by_status": statuses,
        "execution_seconds_by_type": by_kind,
        "slowest_nodes": [{"node": u.split(".", 2)[-1] if u.startswith(("model.", "test.")) else u,
                           "seconds": round(s, 3)} for u, s in timings[:top]],
        "failing": failing,
        "all_tests_passed": not failing and sum(statuses.get("test", {}).values()) > 0,
    }


def build_label(decisions: int, dbt_peak_rss_mib: float | None) -> str:
    """The stage's label; it carries dbt's own peak RSS, since the table's peak RSS column is
    the stage process's (dbt runs in a child process)."""
    peak = f"{dbt_peak_rss_mib:,.0f} MiB" if dbt_peak_rss_mib else "not measured"
    return (f"`dbt build` (dbt CLI, dbt-duckdb, 1 thread) on {decisions:,} decisions; "
            f"dbt process peak RSS {peak} (the RSS columns are the stage process)")


def dbt_build(warehouse_path: str, work_dir: str, decisions: int) -> dict[str, Any]:
    """Stage: ``dbt build`` by dbt's CLI on the warehouse (an untimed ``dbt parse`` first)."""
    import duckdb

    work = Path(work_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    parse_cmd, env = _dbt_command("parse", warehouse_path, work)
    began = time.perf_counter()
    parsed = subprocess.run(parse_cmd, env=env, capture_output=True, text=True, check=False)
    parse_seconds = time.perf_counter() - began
    if parsed.returncode != 0:
        raise RuntimeError(f"dbt parse failed:\n{parsed.stdout[-3000:]}\n{parsed.stderr[-2000:]}")
    parse_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    build_cmd, env = _dbt_command("build", warehouse_path, work)
    began = time.perf_counter()
    built = subprocess.run(build_cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    # the largest child so far; the parse ran first, so this is the build's when it is larger
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    results = json.loads((work / "target" / "run_results.json").read_text(encoding="utf-8"))
    summary = summarise_run_results(results)
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        marts = {m: con.execute(f"select count(*) from {m}").fetchone()[0] for m in MARTS}
    elapsed = results.get("elapsed_time")
    return {
        "label": build_label(decisions, children_peak if children_peak > parse_peak else None),
        "rows": marts["fct_application_decisions"],
        "exit_code": built.returncode,
        "seconds": round(seconds, 3),
        "rows_per_second": round(marts["fct_application_decisions"] / seconds) if seconds > 0 else None,
        "dbt_elapsed_seconds": round(elapsed, 3) if elapsed is not None else None,
        "warm_parse_seconds_untimed": round(parse_seconds, 3),
        "dbt_peak_rss_mib": round(children_peak, 1) if children_peak > parse_peak else None,
        "dbt_parse_peak_rss_mib": round(parse_peak, 1),
        "mart_rows": marts,
        **summary,
        "stdout_tail": built.stdout[-1500:] if built.returncode != 0 else None,
    }


# ----------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------


def run_dbt_build(sizes: tuple[int, ...], work: Path) -> dict[str, Any]:
    from benchmarks.harness import load_average, run_stage

    stages: dict[str, dict[str, Any]] = {}
    setup: dict[str, dict[str, Any]] = {}
    for n in sizes:
        size_dir = work / f"n_{n}"
        _log(f"- building a warehouse of {n:,} decisions ...")
        built = run_stage("benchmarks.dbt_build:build_warehouse", {"work_dir": str(size_dir), "decisions": n})
        setup[f"warehouse_{n}"] = built
        _log(f"  {built['copies']:,} copies, {built['bytes'] / 2**20:,.0f} MiB in {built['seconds']} s "
             f"(peak {built['peak_rss_mib']:,.0f} MiB); load {load_average()}")
        _log(f"- dbt build on {n:,} decisions ...")
        result = run_stage("benchmarks.dbt_build:dbt_build",
                           {"warehouse_path": built["warehouse_path"], "work_dir": str(size_dir / "dbt"),
                            "decisions": n})
        result["load_average_after"] = load_average()
        stages[f"dbt_build_{n}"] = result
        (work / "stages.json").write_text(json.dumps({"stages": stages, "setup": setup}, indent=1, default=str))
        _log(f"  dbt build {result['seconds']} s (dbt elapsed {result['dbt_elapsed_seconds']} s), exit "
             f"{result['exit_code']}, tests passed: {result['all_tests_passed']}, dbt peak RSS "
             f"{result['dbt_peak_rss_mib']} MiB; slowest: {result['slowest_nodes'][:3]}")
        # the warehouse of this size is not needed any more: free the disk before the next one
        Path(built["warehouse_path"]).unlink(missing_ok=True)
    return {"stages": stages, "setup": setup}


def _notes(outcome: dict[str, Any]) -> list[str]:
    notes = [
        "Warehouse: the hand-made warehouse of tests/test_dbt_analytics.py (12 batch + 2 online applications, "
        "8 review cases, 11 human decisions, 30 review events, 8 matured outcomes) copied k times by DuckDB SQL "
        "(ids suffixed/offset per copy, dates shifted by k % 365 days); N = rows of fct_application_decisions "
        "(rounded up to a multiple of 14). The mix is review-heavy (57% referred), so the review marts are "
        "larger than in a real portfolio.",
        "dbt build by dbt's CLI from the venv (dbt-duckdb, threads: 1 as profiles.yml sets), after an untimed "
        "dbt parse into the same target folder; seconds = the build subprocess's wall time, dbt_elapsed_seconds "
        "= run_results.json elapsed_time; dbt peak RSS = getrusage(RUSAGE_CHILDREN) of the stage process.",
    ]
    for name, stage in outcome["stages"].items():
        slow = ", ".join(f"{s['node']} {s['seconds']:.1f} s" for s in stage["slowest_nodes"][:5])
        notes.append(
            f"{name}: {stage['seconds']} s wall, dbt elapsed {stage['dbt_elapsed_seconds']} s, exit code "
            f"{stage['exit_code']}, all tests passed: {stage['all_tests_passed']} "
            f"({stage['nodes_by_status']}); execution by type {stage['execution_seconds_by_type']}; "
            f"slowest: {slow}; dbt peak RSS {stage['dbt_peak_rss_mib']} MiB; marts {stage['mart_rows']}; "
            f"load average after {stage['load_average_after']}."
        )
        if stage["failing"]:
            notes.append(f"{name} failing nodes: {stage['failing'][:10]}")
    return notes


def record_dbt_build(machine: dict[str, Any], *, sizes: tuple[int, ...], keep: bool, results_dir: Path,
                     command: str) -> dict[str, Any]:
    from benchmarks.harness import load_average, make_work_dir, record_results

    _log(f"dbt build benchmark at {', '.join(f'{n:,}' for n in sizes)} decisions; {machine['cores']} cores, "
         f"load average {load_average()}")
    work = make_work_dir(BENCHMARK)
    before = load_average()
    started = dt.datetime.now().astimezone()
    key = BENCHMARK if tuple(sizes) == DEFAULT_SIZES else f"{BENCHMARK}_" + "_".join(str(n) for n in sizes)
    try:
        outcome = run_dbt_build(tuple(sizes), work)
        entry = {
            "benchmark": BENCHMARK,
            "recorded_at": started.isoformat(timespec="seconds"),
            "finished_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": command,
            "params": {"decisions": ", ".join(f"{n:,}" for n in sizes), "spread_days": SPREAD_DAYS,
                       "seed_decisions": SEED_DECISIONS},
            "machine": machine,
            "load_average": {"before": before, "after": load_average()},
            "stages": outcome["stages"],
            "setup": outcome["setup"],
            "notes": _notes(outcome),
        }
        json_path, md_path = record_results(key, entry, results_dir=results_dir, day=started.date())
        print(f"results: {json_path} and {md_path}", flush=True)
        return entry
    finally:
        if keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
