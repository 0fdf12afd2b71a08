"""Entry point of one benchmark stage, run in a fresh interpreter by ``harness.run_stage``::

    python -m benchmarks.stages benchmarks.data_plane:ingest \\
        --json-args '{"landing_dir": "...", "warehouse_path": "..."}' --result-file out.json

The stage is any importable function ``module:function`` taking keyword arguments and
returning a JSON-serialisable dict (by convention with ``seconds``, the timed part, and
``rows``). To that dict this entry point adds the process's peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which belongs to this stage alone because
the process runs nothing else) and the resident size once the stage's module was imported,
which is the share of the peak taken by the interpreter and the libraries.

The result goes to ``--result-file`` rather than stdout, so whatever a library prints cannot
corrupt it. With ``--profile PATH`` the function runs under cProfile and the statistics are
written to PATH (for timing, run without it: the profiler adds overhead).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux's /proc VmHWM belongs to this process image alone; ``ru_maxrss`` can carry the
    high-water mark of the runner that forked it, so it is only the fallback."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mib() -> float | None:
    """Resident set size right now (Linux /proc), in MiB; None where unavailable."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def resolve(spec: str) -> Callable[..., dict[str, Any]]:
    """``package.module:function`` to the function."""
    module_name, sep, function_name = spec.partition(":")
    if not sep or not module_name or not function_name:
        raise ValueError(f"a stage is named 'module:function', got {spec!r}")
    function = getattr(importlib.import_module(module_name), function_name, None)
    if not callable(function):
        raise ValueError(f"{module_name} has no function {function_name!r}")
    return function


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", help="module:function to run")
    parser.add_argument("--json-args", default="{}", help="keyword arguments as one JSON object")
    parser.add_argument("--result-file", type=Path, required=True)
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile statistics here")
    args = parser.parse_args(argv)

    kwargs = json.loads(args.json_args)
    if not isinstance(kwargs, dict):
        parser.error("--json-args must be a JSON object")
    function = resolve(args.stage)
    rss_after_imports = current_rss_mib()

    began = time.perf_counter()
    if args.profile is not None:
        profiler = cProfile.Profile()
        result = profiler.runcall(function, **kwargs)
        profiler.dump_stats(str(args.profile))
    else:
        result = function(**kwargs)
    call_seconds = time.perf_counter() - began
    if not isinstance(result, dict):
        raise TypeError(f"stage {args.stage} returned {type(result).__name__}, expected a dict")

    result = dict(result)
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    if rss_after_imports is not None:
        result["rss_after_imports_mib"] = round(rss_after_imports, 1)
    result["call_seconds"] = round(call_seconds, 3)
    args.result_file.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
