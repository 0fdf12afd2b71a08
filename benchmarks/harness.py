"""Reusable pieces of the benchmark harness: stages in fresh subprocesses, machine facts,
and the dated results files.

A benchmark (data plane, scoring, training, drift, ...) is a list of stages; each stage is a
function ``module:function`` run by :func:`run_stage` in a new interpreter, so the peak RSS
it reports is that stage's own. A benchmark then stores one entry with
:func:`record_results`, which merges it into ``results/<YYYY-MM-DD>.json`` under its key
(other benchmarks' keys are kept) and re-renders ``results/<YYYY-MM-DD>.md`` from the whole
file. An entry looks like::

    {"benchmark": "data_plane", "params": {...}, "stages": {"<name>": {<stage result>}},
     "ratios": {"<name>": 1.23}, "notes": ["..."], ...}

and every ``stages`` table is rendered in the Markdown file with the same columns.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

BENCHMARKS_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCHMARKS_DIR.parent
RESULTS_DIR = BENCHMARKS_DIR / "results"
WORK_ROOT = BENCHMARKS_DIR / ".work"
MACHINE_KEY = "machine"
REPORTED_PACKAGES = ("polars", "duckdb", "pandas", "numpy", "pyarrow", "lightgbm")


class StageError(RuntimeError):
    """A stage subprocess failed; the message carries the end of its stderr."""


# ----------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------


def run_stage(
    stage: str,
    kwargs: dict[str, Any] | None = None,
    *,
    profile: Path | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``module:function`` with ``kwargs`` in a fresh interpreter and return its result.

    The result is the function's dict plus ``peak_rss_mib`` (the child's
    ``ru_maxrss``), ``rss_after_imports_mib``, ``call_seconds`` (the whole function call)
    and ``wall_seconds`` (the whole child, interpreter start-up and imports included).
    """
    with tempfile.TemporaryDirectory(prefix="aios_stage_") as scratch:
        result_file = Path(scratch) / "result.json"
        command = [
            sys.executable,
            "-m",
            "benchmarks.stages",
            stage,
            "--json-args",
            json.dumps(kwargs or {}, default=str),
            "--result-file",
            str(result_file),
        ]
        if profile is not None:
            command += ["--profile", str(profile)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        began = time.perf_counter()
        completed = subprocess.run(
            command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        wall = time.perf_counter() - began
        if completed.returncode != 0 or not result_file.exists():
            tail = "\n".join(completed.stderr.strip().splitlines()[-25:])
            raise StageError(f"stage {stage} failed with exit code {completed.returncode}:\n{tail}")
        result = json.loads(result_file.read_text(encoding="utf-8"))
    result["wall_seconds"] = round(wall, 3)
    return result


def run_stage_repeated(
    stage: str, kwargs: dict[str, Any] | None = None, repeat: int = 1, **options: Any
) -> dict[str, Any]:
    """Run a stage ``repeat`` times (a fresh process each) and keep the median run by
    ``seconds``; every run's seconds and peak RSS are kept alongside."""
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    return median_run([run_stage(stage, kwargs, **options) for _ in range(repeat)])


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median ``seconds`` (the lower middle of an even count), whole, so that
    its figures (steps, events, memory) stay those of one run; with several runs, every run's
    seconds and peak RSS in run order alongside."""
    if not runs:
        raise ValueError("median_run needs at least one run")
    ordered = sorted(runs, key=lambda r: r["seconds"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        chosen["runs_seconds"] = [r["seconds"] for r in runs]
        chosen["runs_peak_rss_mib"] = [r.get("peak_rss_mib") for r in runs]
    return chosen


def timed_median(function: Any, repeat: int) -> tuple[float, list[float], Any]:
    """Call ``function()`` ``repeat`` times inside one stage; (median seconds, all, last result)."""
    seconds: list[float] = []
    result = None
    for _ in range(max(1, repeat)):
        began = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds), seconds, result


def rate(rows: int | None, seconds: float | None) -> int | None:
    if not rows or not seconds or seconds <= 0:
        return None
    return round(rows / seconds)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


# ----------------------------------------------------------------------------------------
# The machine
# ----------------------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: how busy the machine was (other processes)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU model, Python and library versions of this machine."""
    cpu_model = None
    for line in _read("/proc/cpuinfo").splitlines():
        if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
            value = line.split(":", 1)[1].strip()
            if value and not value.isdigit():
                cpu_model = value
                break
    memory_mib = None
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            memory_mib = round(int(line.split()[1]) / 1024)
            break
    versions: dict[str, str | None] = {}
    for package in REPORTED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cores": os.cpu_count(),
        "memory_mib": memory_mib,
        "cpu_model": cpu_model or platform.processor() or None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        **versions,
    }


# ----------------------------------------------------------------------------------------
# Work directory
# ----------------------------------------------------------------------------------------


def make_work_dir(prefix: str) -> Path:
    """A new folder under ``benchmarks/.work`` (git-ignored) for one run."""
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}_", dir=WORK_ROOT))


def disk_bytes(paths: Iterable[Path]) -> int:
    return sum(Path(p).stat().st_size for p in paths)


# ----------------------------------------------------------------------------------------
# Results files
# ----------------------------------------------------------------------------------------


def results_paths(results_dir: Path, day: dt.date) -> tuple[Path, Path]:
    stem = day.isoformat()
    return results_dir / f"{stem}.json", results_dir / f"{stem}.md"


def record_results(
    key: str, entry: dict[str, Any], results_dir: Path = RESULTS_DIR, day: dt.date | None = None
) -> tuple[Path, Path]:
    """Merge ``entry`` under ``key`` into the day's JSON (keeping other keys), refresh its
    ``machine`` block, and rewrite the day's Markdown from the whole JSON."""
    if key == MACHINE_KEY:
        raise ValueError(f"{MACHINE_KEY!r} is reserved for the machine block")
    day = day or dt.date.today()
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = results_paths(results_dir, day)
    data: dict[str, Any] = {}
    if json_path.exists():
        loaded = json.loads(json_path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            data = loaded
    data[MACHINE_KEY] = machine_info()
    data[key] = entry
    ordered = {MACHINE_KEY: data.pop(MACHINE_KEY), **data}
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(ordered, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, json_path)
    md_path.write_text(render_markdown(ordered, day), encoding="utf-8")
    return json_path, md_path


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def machine_markdown(machine: dict[str, Any]) -> str:
    rows = [
        ("CPU", machine.get("cpu_model")),
        ("cores (os.cpu_count)", machine.get("cores")),
        ("memory", f"{machine['memory_mib'] / 1024:.1f} GiB" if machine.get("memory_mib") else None),
        ("platform", machine.get("platform")),
        ("python", machine.get("python")),
    ] + [(package, machine.get(package)) for package in REPORTED_PACKAGES]
    lines = ["| machine | |", "| --- | --- |"]
    lines += [f"| {label} | {_fmt(value)} |" for label, value in rows]
    return "\n".join(lines)


def stages_markdown(stages: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| stage | what | rows | seconds | rows/s | peak RSS MiB | RSS after imports MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, stage in stages.items():
        seconds = stage.get("seconds")
        runs = stage.get("runs_seconds")
        shown = _fmt(seconds, 3)
        if runs and len(runs) > 1:
            shown += f" (median of {len(runs)})"
        lines.append(
            f"| {name} | {stage.get('label', '')} | {_fmt(stage.get('rows'))} | {shown} | "
            f"{_fmt(stage.get('rows_per_second'))} | {_fmt(stage.get('peak_rss_mib'), 1)} | "
            f"{_fmt(stage.get('rss_after_imports_mib'), 1)} |"
        )
    return "\n".join(lines)


def render_markdown(data: dict[str, Any], day: dt.date) -> str:
    out = [f"# Benchmark results, {day.isoformat()}", ""]
    machine = data.get(MACHINE_KEY) or {}
    out += [machine_markdown(machine), ""]
    for key, entry in data.items():
        if key == MACHINE_KEY or not isinstance(entry, dict):
            continue
        out += [f"## {key}", ""]
        if entry.get("recorded_at"):
            out.append(f"Recorded {entry['recorded_at']}" + (f" with `{entry['command']}`" if entry.get("command") else ""))
            out.append("")
        params = entry.get("params") or {}
        if params:
            out.append("Parameters: " + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()))
            out.append("")
        if entry.get("load_average"):
            load = entry["load_average"]
            out.append(
                f"Load average (1/5/15 min) before: {load.get('before')}, after: {load.get('after')} "
                f"({_fmt(machine.get('cores'))} cores; other processes share the machine)."
            )
            out.append("")
        if isinstance(entry.get("stages"), dict):
            out += [stages_markdown(entry["stages"]), ""]
        ratios = entry.get("ratios") or {}
        if ratios:
            out += ["| ratio | value |", "| --- | ---: |"]
            out += [f"| {name} | {_fmt(value)} |" for name, value in ratios.items()]
            out.append("")
        for note in entry.get("notes") or []:
            out.append(f"- {note}")
        if entry.get("notes"):
            out.append("")
    return "\n".join(out).rstrip() + "\n"
