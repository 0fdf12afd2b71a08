"""The benchmark harness behind ``make bench``: the data plane and the model plane against
plain baselines.

    .venv/bin/python benchmarks/run.py                     # both, at 1,000,000 applications
    .venv/bin/python benchmarks/run.py --only data_plane   # generate, ingest, features
    .venv/bin/python benchmarks/run.py --only model_plane  # training, scoring
    .venv/bin/python benchmarks/run.py --quick             # 100,000: a smoke test
    .venv/bin/python benchmarks/run.py --repeat 3 --profile --keep

Every stage runs in a fresh subprocess (``benchmarks.harness.run_stage``) so its peak RSS is
its own. Results are merged into ``benchmarks/results/<YYYY-MM-DD>.json`` under the keys
``data_plane`` and ``model_plane`` (``<key>_rows_<n>`` for another size) and the day's
Markdown table is rewritten. Ratios are ours / baseline from the same run: below 1 means
ours is faster.
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
from aios_pipelines.modeling.training import MIN_TRAINING_DAYS, TrainingConfig  # noqa: E402

BENCHMARK = "data_plane"
DEFAULT_ROWS = 1_000_000
QUICK_ROWS = 100_000
STAGE_MODULE = "benchmarks.data_plane"
FORMATS = ("csv", "parquet")

MODEL_BENCHMARK = "model_plane"
MODEL_STAGE_MODULE = "benchmarks.model_plane"
BENCHMARKS = (BENCHMARK, MODEL_BENCHMARK)
DEFAULT_TRAIN_DAYS = 40  # enough application days for the 14-day OOT window and early stopping
SCORING_STAGES = (
    # (stage name, function in benchmarks.model_plane)
    ("predict_bare", "predict_bare"),
    ("predict_pd", "predict_pd_stage"),
    ("score_without_reasons", "score_without_reasons"),
    ("score_with_reasons", "score_with_reasons"),
    ("contrib_all_rows", "contrib_all_rows"),
)
PROFILED_SCORING_STAGES = ("score_without_reasons", "score_with_reasons")

# benchmarks/review_plane.py: decisions/s and latency of the review service (SQLite and PostgreSQL)
REVIEW_BENCHMARK = "review_plane"
BENCHMARKS = (*BENCHMARKS, REVIEW_BENCHMARK)

# benchmarks/online.py: POST /api/decisions at 1, 4 and 16 clients against the bare in-process cost
ONLINE_BENCHMARK = "online"
BENCHMARKS = (*BENCHMARKS, ONLINE_BENCHMARK)

# benchmarks/end_to_end.py: the nightly path for one day of --rows applications (Dagster jobs) against bare baselines
END_TO_END_BENCHMARK = "end_to_end"
# rounds per timed job: on 2 shared cores one round's end-to-end ratio moved from 1.33 to 1.66
# on the same code (benchmarks/README.md, runs 16-18); the median of three is what is compared
END_TO_END_DEFAULT_REPEAT = 3
BENCHMARKS = (*BENCHMARKS, END_TO_END_BENCHMARK)

# benchmarks/dbt_build.py: `dbt build` on a warehouse of 1M and 10M decisions (--decisions: other sizes)
DBT_BUILD_BENCHMARK = "dbt_build"
BENCHMARKS = (*BENCHMARKS, DBT_BUILD_BENCHMARK)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _summary(name: str, result: dict[str, Any]) -> str:
    rows_per_second = result.get("rows_per_second")
    return (
        f"  {name:<22} {result.get('seconds', 0):>9.3f} s  "
        f"{(f'{rows_per_second:,}' if rows_per_second else '-'):>12} rows/s  "
        f"{result.get('peak_rss_mib', 0):>8.1f} MiB peak"
    )


def _profile_text(profile_path: Path, title: str, limit: int = 30, callers_of: tuple[str, ...] = ()) -> str:
    stream = io.StringIO()
    stats = pstats.Stats(str(profile_path), stream=stream)
    stats.strip_dirs()
    stream.write(f"===== {title}: by cumulative time =====\n")
    stats.sort_stats("cumulative").print_stats(limit)
    stream.write(f"===== {title}: by own time =====\n")
    stats.sort_stats("tottime").print_stats(limit)
    for pattern in callers_of:
        stream.write(f"===== {title}: callers of {pattern} =====\n")
        stats.sort_stats("cumulative").print_callers(pattern)
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


def model_plane_train_sizes(rows: int) -> list[int]:
    """Training-set sizes of the model plane: a tenth of ``--rows`` and all of it."""
    return sorted({max(1, rows // 10), rows})


def run_model_plane(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    train_sizes = model_plane_train_sizes(args.rows)
    score_rows = args.rows
    score_days = args.days
    # scoring applications are new ones: the days right after the (largest) training period
    score_start = (dt.date.fromisoformat(args.start) + dt.timedelta(days=args.train_days)).isoformat()
    stages: dict[str, dict[str, Any]] = {}
    ratios: dict[str, Any] = {}

    def stage(name: str, function: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        _log(f"- {name} ...")
        result = run_stage_repeated(f"{MODEL_STAGE_MODULE}:{function}", kwargs, repeat=args.repeat)
        stages[name] = result
        _log(_summary(name, result))
        return result

    # Training: ours then the bare LightGBM baseline, back to back at each size.
    models: dict[int, str] = {}
    for rows in train_sizes:
        models[rows] = str(work / f"model_rows_{rows}.txt")
        common = {"rows": rows, "days": args.train_days, "seed": args.seed, "start": args.start}
        ours = stage(f"train_rows_{rows}", "train", {**common, "model_path": models[rows]})
        bare = stage(
            f"train_bare_rows_{rows}",
            "train_bare",
            {**common, "early_stopping_start": ours["early_stopping_start"], "rounds": ours["rounds_grown"]},
        )
        if bare["fit_rows"] != ours["fit_rows"]:
            raise RuntimeError(f"bare training saw {bare['fit_rows']} fit rows, ours {ours['fit_rows']}")
        ratios[f"train_vs_bare_lightgbm_rows_{rows}"] = ratio(ours["seconds"], bare["seconds"])
        ratios[f"train_vs_bare_lightgbm_rows_{rows}_cpu"] = ratio(ours["cpu_seconds"], bare["cpu_seconds"])

    # Scoring, with the model trained on the most rows (production-sized trees).
    model_rows = max(train_sizes)
    scoring = {
        "model_path": models[model_rows],
        "rows": score_rows,
        "days": score_days,
        "start": score_start,
        "seed": args.seed,
        "repeat": args.score_repeat,
    }
    for name, function in SCORING_STAGES:
        stage(name, function, scoring)

    scoring_ratios = {
        "predict_pd_vs_bare": "predict_pd",
        "scoring_without_reasons_vs_bare": "score_without_reasons",
        "scoring_with_reasons_vs_bare": "score_with_reasons",
        "contrib_all_rows_vs_bare": "contrib_all_rows",
    }
    for measure, suffix in (("seconds", ""), ("cpu_seconds", "_cpu")):
        for name, stage_name in scoring_ratios.items():
            ratios[name + suffix] = ratio(stages[stage_name][measure], stages["predict_bare"][measure])
    with_reasons = stages["score_with_reasons"]
    ratios["share_of_rows_needing_reasons"] = with_reasons["share_needing_reasons_shipped_policy"]

    notes = [
        "Ratios are ours / baseline seconds from this run (below 1: ours is faster); *_cpu ratios are of CPU "
        "seconds (time.process_time of the stage process over the timed part, all threads), which a busy shared "
        "machine disturbs less than wall seconds."
    ]
    for rows in train_sizes:
        ours, bare = stages[f"train_rows_{rows}"], stages[f"train_bare_rows_{rows}"]
        notes.append(
            f"train at {rows:,} rows over {args.train_days} days: fit {ours['fit_rows']:,}, early stopping "
            f"{ours['early_stopping_rows']:,}, out-of-time {ours['oot_rows']:,} rows; best_iteration "
            f"{ours['best_iteration']} of {ours['rounds_grown']} rounds grown (early stopping after "
            f"{TrainingConfig().early_stopping_rounds} rounds without gain), OOT AUC {ours['oot_auc']}. "
            f"train_credit_model {ours['seconds']} s vs bare lightgbm.train {bare['seconds']} s for the same "
            f"{ours['rounds_grown']} rounds on the same {bare['fit_rows']:,} rows; the data-snapshot hash alone "
            f"took {ours['data_hash_seconds_measured_apart']} s measured apart. rows/s of train_* is over all rows "
            "in the training frame (hashed, sorted, split, OOT-scored); of train_bare_* over the fit rows."
        )
    notes.append(
        f"scoring: {score_rows:,} new applications over {score_days} days from {score_start}, one call, with the "
        f"model trained at {model_rows:,} rows ({stages['predict_bare'].get('trees')} trees, "
        f"{TrainingConfig().num_leaves} leaves each); median of {args.score_repeat} calls inside one process. "
        "Every path's PDs were checked equal to the bare predict."
    )
    notes.append(
        f"reasons: the shipped policy requires them for {', '.join(with_reasons['reasons_required_for'])}; "
        f"{with_reasons['rows_needing_reasons_shipped_policy']:,} of {score_rows:,} rows "
        f"({100 * with_reasons['share_needing_reasons_shipped_policy']:.1f}%) needed them "
        f"(action mix {with_reasons['action_mix']}). explain_rows alone on those rows took "
        f"{with_reasons['explain_rows_seconds_measured_apart']} s measured apart."
    )
    without = stages["score_without_reasons"]
    notes.append(
        "score_without_reasons uses a copy of the shipped policy with reasons.required_for: [] so no row is "
        f"explained by the model; its {without['hard_rule_declines']:,} hard-rule declines still get the rule's "
        "own conditions as reasons (score_applications always does that for a decline without reasons)."
    )
    notes.append(
        "peak RSS is the stage process's ru_maxrss and includes the interpreter, the libraries and the inputs "
        "generated before timing (the rss_before_timed_mib field in the JSON)."
    )

    params = {
        "train_rows": train_sizes,
        "train_days": args.train_days,
        "score_rows": score_rows,
        "score_days": score_days,
        "score_start": score_start,
        "scoring_model_rows": model_rows,
        "seed": args.seed,
        "start": args.start,
        "repeat": args.repeat,
        "score_repeat": args.score_repeat,
        "training_config": "TrainingConfig() defaults",
    }
    return {"stages": stages, "ratios": ratios, "notes": notes, "params": params, "scoring_kwargs": scoring}


def profile_model_plane(work: Path, scoring: dict[str, Any]) -> dict[str, str]:
    """Each scoring stage of PROFILED_SCORING_STAGES once more, one call under cProfile (after
    one timed call, which is discarded); the statistics as text, by stage name."""
    profiles: dict[str, str] = {}
    for name, function in SCORING_STAGES:
        if name not in PROFILED_SCORING_STAGES:
            continue
        path = work / f"{name}.prof"
        _log(f"- profiling {name} under cProfile ...")
        run_stage(f"{MODEL_STAGE_MODULE}:{function}", {**scoring, "repeat": 1, "profile_path": str(path)})
        # who builds the polars Series (from Python lists) and who calls explain_rows
        profiles[name] = _profile_text(path, name, callers_of=(r"series.py:\d+\(__init__\)", "explain_rows"))
    return profiles


def _command(argv: list[str] | None) -> str:
    return " ".join(["benchmarks/run.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])


def _print_outcome(title: str, outcome: dict[str, Any]) -> None:
    print(title)
    for name, result in outcome["stages"].items():
        print(_summary(name, result))
    for name, value in outcome["ratios"].items():
        print(f"  {name} = {value}")


def _record_data_plane(args: argparse.Namespace, argv: list[str] | None, machine: dict[str, Any]) -> None:
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
        "command": _command(argv),
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

    _print_outcome(f"data plane, {args.rows:,} rows ({key}):", outcome)
    print(f"results: {json_path} and {md_path}")
    for path in profile_paths:
        print(f"profile: {path}")


def _record_model_plane(args: argparse.Namespace, argv: list[str] | None, machine: dict[str, Any]) -> None:
    train_sizes = model_plane_train_sizes(args.rows)
    _log(
        f"model-plane benchmark: training at {', '.join(f'{n:,}' for n in train_sizes)} rows over "
        f"{args.train_days} days, scoring {args.rows:,} rows, repeat {args.repeat}, score-repeat {args.score_repeat}; "
        f"{machine['cores']} cores, {machine['cpu_model']}, load average {load_average()}"
    )
    work = make_work_dir(MODEL_BENCHMARK)
    _log(f"work directory: {work}")
    before = load_average()
    started = dt.datetime.now().astimezone()
    key = MODEL_BENCHMARK if args.rows == DEFAULT_ROWS else f"{MODEL_BENCHMARK}_rows_{args.rows}"
    day = started.date()
    try:
        outcome = run_model_plane(args, work)
        after = load_average()
        entry = {
            "benchmark": MODEL_BENCHMARK,
            "recorded_at": started.isoformat(timespec="seconds"),
            "command": _command(argv),
            "params": outcome["params"],
            "machine": machine,
            "load_average": {"before": before, "after": after},
            "stages": outcome["stages"],
            "ratios": outcome["ratios"],
            "notes": outcome["notes"],
        }
        # recorded before profiling, so a long profile run cannot lose the figures
        json_path, md_path = record_results(key, entry, results_dir=args.results_dir, day=day)
        _print_outcome(f"model plane, scoring {args.rows:,} rows ({key}):", outcome)
        print(f"results: {json_path} and {md_path}", flush=True)
        if args.profile:
            for name, text in profile_model_plane(work, outcome["scoring_kwargs"]).items():
                path = args.results_dir / f"{day.isoformat()}-{key}-{name}-profile.txt"
                path.write_text(text, encoding="utf-8")
                print(f"profile: {path}", flush=True)
    finally:
        if args.keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _record_review_plane(args: argparse.Namespace, argv: list[str] | None, machine: dict[str, Any]) -> None:
    """The review plane has its own sizes (cases, decisions, clients); ``--quick`` shrinks
    them. More options: ``python -m benchmarks.review_plane --help``."""
    from benchmarks.review_plane import ReviewPlaneCheckFailed, run_review_plane

    try:
        run_review_plane(quick=args.quick, keep=args.keep, results_dir=args.results_dir, command=_command(argv),
                         machine=machine)
    except ReviewPlaneCheckFailed as exc:
        raise SystemExit(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only",
        choices=BENCHMARKS,
        default=None,
        help=f"run one benchmark (default: all of them, in this order: {', '.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help=f"applications in total (default {DEFAULT_ROWS:,}); the model plane scores this many and "
        "trains at a tenth of it and at all of it",
    )
    parser.add_argument("--days", type=int, default=10, help="days the rows are spread over (default 10): landing days of the data plane, scoring days of the model plane")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows: a smoke test")
    parser.add_argument("--repeat", type=int, default=None,
                        help="fresh processes per stage; the median is kept (default 1). end_to_end: rounds of each "
                        f"timed job and its baselines, alternating (default {END_TO_END_DEFAULT_REPEAT}: one round's "
                        "ratio scatters by up to 0.3 on this machine)")
    parser.add_argument("--inner-repeat", type=int, default=5, help="timed calls inside a features stage")
    parser.add_argument(
        "--score-repeat", type=int, default=3, help="timed calls inside a model-plane scoring stage (default 3)"
    )
    parser.add_argument(
        "--train-days",
        type=int,
        default=DEFAULT_TRAIN_DAYS,
        help=f"application days of a model-plane training set (default {DEFAULT_TRAIN_DAYS})",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start", default="2026-01-01", help="first landing day (ISO date)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run ingest (data plane) and scoring (model plane) under cProfile and save the stats",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (landing files, DuckDB files)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--decisions", type=int, nargs="+", default=None,
                        help="dbt_build only: warehouse sizes in application decisions (default 1,000,000 10,000,000)")
    args = parser.parse_args(argv)

    if args.quick and args.rows is not None:
        parser.error("--quick and --rows are exclusive")
    args.rows = QUICK_ROWS if args.quick else (args.rows or DEFAULT_ROWS)
    if args.days < 1 or args.rows < args.days:
        parser.error("--days must be at least 1 and --rows at least --days")
    end_to_end_repeat = END_TO_END_DEFAULT_REPEAT if args.repeat is None else args.repeat
    args.repeat = 1 if args.repeat is None else args.repeat
    if args.repeat < 1 or args.inner_repeat < 1 or args.score_repeat < 1:
        parser.error("--repeat, --inner-repeat and --score-repeat must be at least 1")
    selected = [args.only] if args.only else list(BENCHMARKS)
    if "model_plane" in selected:
        minimum = TrainingConfig().oot_days + MIN_TRAINING_DAYS + 1
        if args.train_days < minimum:
            parser.error(f"--train-days must be at least {minimum} (the out-of-time window and two training days)")
        if min(model_plane_train_sizes(args.rows)) < args.train_days:
            parser.error("--rows / 10 must be at least --train-days")
    try:
        dt.date.fromisoformat(args.start)
    except ValueError:
        parser.error(f"--start must be an ISO date, got {args.start!r}")

    machine = machine_info()
    if "data_plane" in selected:
        _record_data_plane(args, argv, machine)
    if "model_plane" in selected:
        _record_model_plane(args, argv, machine)
    if REVIEW_BENCHMARK in selected:
        _record_review_plane(args, argv, machine)
    if ONLINE_BENCHMARK in selected:
        from benchmarks.online import record_online

        record_online(argv, machine, quick=args.quick, results_dir=args.results_dir, keep=args.keep)
    if END_TO_END_BENCHMARK in selected:
        from benchmarks.end_to_end import record_end_to_end

        record_end_to_end(argv, machine, rows=args.rows, seed=args.seed, keep=args.keep, profile=args.profile,
                          results_dir=args.results_dir, command=_command(argv), default_rows=DEFAULT_ROWS,
                          repeat=end_to_end_repeat)
    if DBT_BUILD_BENCHMARK in selected:
        from benchmarks.dbt_build import DEFAULT_SIZES, QUICK_SIZES, record_dbt_build

        sizes = QUICK_SIZES if args.quick else tuple(args.decisions or DEFAULT_SIZES)
        record_dbt_build(machine, sizes=sizes, keep=args.keep, results_dir=args.results_dir, command=_command(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
