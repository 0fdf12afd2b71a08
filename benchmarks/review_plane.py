"""Review-plane benchmark: how many decisions per second the review service records, and how
long one takes, under concurrent clients on loopback, with the embedded SQLite store and with
PostgreSQL.

    .venv/bin/python benchmarks/run.py --only review_plane           # as part of make bench
    .venv/bin/python -m benchmarks.review_plane --backends sqlite    # this benchmark alone, with its options

For each backend (``sqlite``: a WAL file in the work directory; ``postgresql``: a throwaway
cluster started here on 127.0.0.1 in a temporary directory, stopped and removed afterwards):

1. **HTTP.** A fresh store gets ``cases`` published open cases (no four eyes, the model
   recommends approve, so approving needs no reason code or note) and one underwriter per
   client. The real service runs as a separate process, ``aios review serve --host 127.0.0.1
   --port P --store-url URL`` (uvicorn, one process, as shipped). A load stage (its own
   process, ``run_stage``) starts C client threads, each with its own ``httpx.Client``
   (keep-alive) and its own token, each approving its own distinct cases through
   ``POST /api/tasks/{id}/decision`` with an ``Idempotency-Key`` as fast as it can: a few
   warm-up decisions per client first (not timed), then ``decisions / C`` timed ones, bounded
   by a deadline. Recorded: decisions/s, latency percentiles of every timed request, errors
   (anything but 200; must be 0), the CPU seconds the server process used per decision.
   Then the **race**: C clients all approve the SAME ``race_cases`` cases in the same order;
   every case must have exactly one 200 and C-1 409s.
   Afterwards (server stopped) the store must hold exactly one decision per case a client got
   200 for, by that client's user, no other decision, every such case decided, no idempotency
   key left in progress, and an audit chain that verifies.
2. **Baselines, no HTTP**, each in a fresh process on a fresh store of the same size:
   ``store_decide`` (one thread calling ``ReviewStore.decide``), ``store_endpoint_calls``
   (one thread making the store calls the endpoint makes for one decision: ``authenticate``,
   ``idempotency_begin``, ``decide``, response encoding, ``idempotency_complete``) and the
   same with as many threads as the largest client count (the store's own write serialisation
   without HTTP). These stages also time how long each write transaction waited for the
   store's write lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL ``pg_advisory_xact_lock``).

Ratios are seconds per decision, HTTP / baseline, from the same run (above 1: HTTP is slower).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

if __package__ in (None, ""):
    # run as a script (benchmarks/review_plane.py): make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (  # noqa: E402
    PROJECT_ROOT,
    RESULTS_DIR,
    load_average,
    machine_info,
    make_work_dir,
    ratio,
    record_results,
    run_stage,
)
from aios_pipelines.storage.postgres_server import PostgresUnavailable, free_port  # noqa: E402
from aios_pipelines.storage.postgres_server import postgres_cluster as _postgres_cluster  # noqa: E402

BENCHMARK = "review_plane"
STAGE_MODULE = "benchmarks.review_plane"
BACKENDS = ("sqlite", "postgresql")
HOST = "127.0.0.1"  # loopback only: the service, PostgreSQL and every client
DEFAULT_CASES = 5_000
DEFAULT_DECISIONS = 1_200  # timed decisions per HTTP run and per baseline (divisible by 1, 4, 16)
DEFAULT_CLIENTS = (1, 4, 16)
DEFAULT_RACE_CASES = 100
DEFAULT_DEADLINE_SECONDS = 120.0  # per load stage: it stops by itself even on a slow machine
QUICK = {"cases": 1_000, "decisions": 160, "race_cases": 20}
WARMUP_PER_CLIENT = 3
SERVER_START_SECONDS = 90.0
DECIDE_BODY = {"decision": "approve", "reason_codes": [], "note": None}
USER_PREFIX = "bench-client-"
PG_SUPERUSER = "aios_bench"
OUTLIER_MS = 100.0
SERVICE_PACKAGES = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "httpx", "psycopg", "psycopg-binary")


class ReviewPlaneCheckFailed(RuntimeError):
    """A correctness check of the review-plane benchmark failed (the results were recorded)."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------


def case_rows(count: int, prefix: str = "BENCH") -> list[dict[str, Any]]:
    """Open cases an underwriter can approve with nothing else: the model recommends approve,
    amounts stay below the four-eyes threshold and four eyes is off."""
    return [
        {
            "application_id": f"{prefix}-{i:07d}",
            "application_date": "2026-06-01",
            "pd": round(0.03 + (i % 50) / 2000, 4),
            "amount": 5_000 + (i % 40) * 1_000,
            "score_band": "B",
            "model_recommendation": "approve",
            "requires_four_eyes": False,
            "blind_review": False,
            "priority": ("normal", "high", "low")[i % 3],
            "due_hours": 48,
            "model_version": "bench",
            "policy_version": "bench",
            "policy_rule": "review:grey_zone",
            "reasons": [
                {"code": "R07", "text": "Credit bureau score is low", "feature": "bureau_score"},
                {"code": "R04", "text": "Debt service is high relative to income", "feature": "dti"},
            ],
            "quality_flags": [],
            "applicant_summary": {"annual_income": 41_000 + i % 997, "purpose": "car", "employment_length_years": 4},
            "source": "batch",
        }
        for i in range(count)
    ]


def user_names(count: int) -> list[str]:
    return [f"{USER_PREFIX}{i:02d}" for i in range(1, count + 1)]


def prepare_store(url: str, cases: int, users: list[str]) -> tuple[dict[str, str], list[str]]:
    """Create the schema, the users (underwriters) and ``cases`` open cases in a fresh store;
    returns the tokens by user name and the case ids."""
    from aios_pipelines.review.store import ReviewStore

    store = ReviewStore(url).create_all()
    try:
        tokens = {name: store.add_user(name, "underwriter", actor="bench")[1] for name in users}
        published = store.publish_cases(case_rows(cases), actor="bench")
        if published != cases:
            raise RuntimeError(f"published {published} cases into {store!r}, expected {cases}: is the store fresh?")
        case_ids = [c["case_id"] for c in store.all_cases() if c["status"] == "open"]
    finally:
        store.dispose()
    if len(case_ids) != cases:
        raise RuntimeError(f"{len(case_ids)} open cases after publishing {cases}")
    return tokens, case_ids


# ----------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------


def latency_summary(seconds: list[float]) -> dict[str, Any]:
    """Nearest-rank percentiles, mean and max, in milliseconds."""
    if not seconds:
        return {"count": 0}
    ordered = sorted(seconds)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000

    return {
        "count": len(ordered),
        "p50": round(rank(0.50), 2),
        "p95": round(rank(0.95), 2),
        "p99": round(rank(0.99), 2),
        "mean": round(sum(ordered) / len(ordered) * 1000, 2),
        "max": round(ordered[-1] * 1000, 2),
        f"over_{OUTLIER_MS:g}ms": sum(1 for s in ordered if s * 1000 > OUTLIER_MS),
    }


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from "state" on (the name may hold spaces)


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process, all its threads (Linux /proc)."""
    if pid is None:
        return None
    fields = _proc_stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def process_tree_cpu_seconds(pid: int | None) -> float | None:
    """CPU seconds of a process and its children: the PostgreSQL postmaster and its backends,
    live ones from their own counters, ended ones from the postmaster's reaped-children
    counters (cutime, cstime), so backends that come and go are counted too."""
    if pid is None:
        return None
    fields = _proc_stat(pid)
    if fields is None:
        return None
    total = sum(int(x) for x in fields[11:15]) / _CLOCK_TICKS  # utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _proc_stat(int(entry.name))
        if fields is not None and fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return total


def process_peak_rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def count_connections(log_path: Path | None) -> int | None:
    """Connections PostgreSQL accepted so far (``log_connections`` lines in its log)."""
    if log_path is None:
        return None
    try:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            return sum(1 for line in handle if "connection authorized" in line)
    except OSError:
        return None


def fdatasync_ms(directory: Path, operations: int = 100) -> float:
    """Median milliseconds of one 8 KiB write + fdatasync in ``directory``: what a durable
    commit costs on this disk (PostgreSQL flushes its WAL once per commit by default; the
    SQLite store, WAL with synchronous=NORMAL, does not)."""
    path = Path(directory) / "fdatasync.probe"
    block = os.urandom(8192)
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(operations):
            began = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            times.append(time.perf_counter() - began)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    times.sort()
    return round(times[len(times) // 2] * 1000, 3)


def service_versions() -> dict[str, str | None]:
    """Versions of what the service and the clients run on (the machine block has the data stack)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for package in SERVICE_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else round(after - before, 3)


def _per_decision_ms(seconds: float | None, decisions: int) -> float | None:
    return None if seconds is None or decisions <= 0 else round(seconds / decisions * 1000, 3)


class LockWaits:
    """Times every write-lock acquisition of a store's engine: the ``BEGIN IMMEDIATE`` the
    SQLite store issues and the ``pg_advisory_xact_lock`` the PostgreSQL store takes, both in
    ``ReviewStore._write`` (``aios_pipelines/review/store.py``)."""

    def __init__(self, engine: Any):
        from sqlalchemy import event

        self._local = threading.local()
        self._lock = threading.Lock()
        self.waits: list[float] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    @staticmethod
    def _is_lock(statement: str) -> bool:
        return statement.startswith("BEGIN IMMEDIATE") or "pg_advisory_xact_lock" in statement

    def _before(self, conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if self._is_lock(statement):
            self._local.began = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if self._is_lock(statement):
            waited = time.perf_counter() - self._local.began
            with self._lock:
                self.waits.append(waited)

    def reset(self) -> None:
        with self._lock:
            self.waits = []

    def summary(self) -> dict[str, Any]:
        with self._lock:
            waits = list(self.waits)
        result = latency_summary(waits)
        result["total_seconds"] = round(sum(waits), 3)
        return result


# ----------------------------------------------------------------------------------------
# Stages (each runs in its own process through harness.run_stage)
# ----------------------------------------------------------------------------------------


def http_load(
    base_url: str,
    plan_file: str,
    deadline_seconds: float,
    server_pid: int | None = None,
    database_pid: int | None = None,
    idempotency_keys: bool = True,
) -> dict[str, Any]:
    """C client threads against the running service; the plan file says which cases each
    decides (``mode`` ``load``: its own cases; ``race``: all the same cases)."""
    import httpx

    plan = json.loads(Path(plan_file).read_text(encoding="utf-8"))
    mode = plan["mode"]
    specs = plan["clients"]
    count = len(specs)
    outcomes: list[dict[str, Any]] = [{} for _ in specs]
    deadline_box: list[float] = [0.0]
    window: dict[str, float | None] = {}

    def start() -> None:
        """Run once, when every client is warm, before any is released: the timed window opens."""
        window["server_cpu"] = process_cpu_seconds(server_pid)
        window["database_cpu"] = process_tree_cpu_seconds(database_pid)
        window["client_cpu"] = time.process_time()
        window["began"] = time.perf_counter()
        deadline_box[0] = window["began"] + deadline_seconds

    barrier = threading.Barrier(count + 1, action=start)

    def worker(index: int) -> None:
        spec = specs[index]
        out = outcomes[index]
        out.update(latencies=[], statuses=Counter(), by_status_latencies={}, successes={}, errors=[],
                   per_case={}, stopped_by_deadline=False, warmup_successes={}, end=None)
        headers = {"Authorization": f"Bearer {spec['token']}"}
        client = httpx.Client(base_url=base_url, headers=headers, timeout=60.0)

        def decide(case_id: str) -> tuple[float, int | None, str | None]:
            extra = {"Idempotency-Key": f"{spec['user']}:{case_id}"} if idempotency_keys else None
            began = time.perf_counter()
            try:
                response = client.post(f"/api/tasks/{case_id}/decision", json=DECIDE_BODY, headers=extra)
            except httpx.HTTPError as exc:
                return time.perf_counter() - began, None, f"{type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - began
            return elapsed, response.status_code, None if response.status_code == 200 else response.text[:300]

        try:
            try:
                if mode == "race":
                    me = client.get("/api/me")  # opens the connection and checks the token, untimed
                    if me.status_code != 200:
                        out["errors"].append(f"GET /api/me: {me.status_code} {me.text[:200]}")
                for case_id in spec["cases"][: spec["warmup"]]:
                    _, status, error = decide(case_id)
                    if status == 200:
                        out["warmup_successes"][case_id] = spec["user"]
                    else:
                        out["errors"].append(f"warm-up {case_id}: {status} {error}")
            finally:
                barrier.wait(timeout=600)
            for case_id in spec["cases"][spec["warmup"] :]:
                if time.perf_counter() >= deadline_box[0]:
                    out["stopped_by_deadline"] = True
                    break
                elapsed, status, error = decide(case_id)
                out["latencies"].append(elapsed)
                out["statuses"][str(status)] += 1
                out["by_status_latencies"].setdefault(str(status), []).append(elapsed)
                out["per_case"][case_id] = status
                if status == 200:
                    out["successes"][case_id] = spec["user"]
                elif not (mode == "race" and status == 409):
                    out["errors"].append(f"{case_id}: {status} {error}")
        except threading.BrokenBarrierError:
            out["errors"].append("the start barrier broke")
        except Exception as exc:  # noqa: BLE001 - counted as an error of the run
            out["errors"].append(f"client {spec['user']}: {type(exc).__name__}: {exc}")
        finally:
            out["end"] = time.perf_counter()
            client.close()

    threads = [threading.Thread(target=worker, args=(i,), name=f"client-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=600)
    for thread in threads:
        thread.join()
    ended = max(o["end"] for o in outcomes)
    server_cpu = _delta(process_cpu_seconds(server_pid), window["server_cpu"])
    database_cpu = _delta(process_tree_cpu_seconds(database_pid), window["database_cpu"])
    client_cpu = round(time.process_time() - window["client_cpu"], 3)
    seconds = ended - window["began"]

    latencies = [x for o in outcomes for x in o["latencies"]]
    statuses: Counter[str] = Counter()
    by_status: dict[str, list[float]] = {}
    for o in outcomes:
        statuses.update(o["statuses"])
        for status, values in o["by_status_latencies"].items():
            by_status.setdefault(status, []).extend(values)
    successes: dict[str, str] = {}
    for o in outcomes:
        successes.update(o["warmup_successes"])
        successes.update(o["successes"])
    errors = [e for o in outcomes for e in o["errors"]]
    decided = statuses.get("200", 0)
    requests = len(latencies)
    result: dict[str, Any] = {
        "mode": mode,
        "clients": count,
        "idempotency_keys": idempotency_keys,
        "seconds": round(seconds, 3),
        "requests": requests,
        "decisions": decided,
        "decisions_per_second": round(decided / seconds, 1) if seconds > 0 else None,
        "requests_per_second": round(requests / seconds, 1) if seconds > 0 else None,
        "latency_ms": latency_summary(latencies),
        "latency_ms_by_status": {s: latency_summary(v) for s, v in sorted(by_status.items())},
        "status_counts": dict(sorted(statuses.items())),
        "errors": len(errors),
        "error_samples": errors[:5],
        "stopped_by_deadline": any(o["stopped_by_deadline"] for o in outcomes),
        "warmup_decisions": sum(len(o["warmup_successes"]) for o in outcomes),
        "server_cpu_seconds": server_cpu,
        "server_cpu_ms_per_request": _per_decision_ms(server_cpu, requests),
        "database_cpu_seconds": database_cpu,
        "database_cpu_ms_per_request": _per_decision_ms(database_cpu, requests),
        "client_cpu_seconds": client_cpu,
        "client_cpu_ms_per_request": _per_decision_ms(client_cpu, requests),
        "server_peak_rss_mib": process_peak_rss_mib(server_pid),
        "own_peak_rss_mib": process_peak_rss_mib(os.getpid()),
        "successes": successes,  # case id -> user; the runner checks them against the store, then drops them
    }
    if mode == "race":
        per_case: dict[str, Counter[str]] = {}
        for o in outcomes:
            for case_id, status in o["per_case"].items():
                per_case.setdefault(case_id, Counter())[str(status)] += 1
        race_cases = plan["race_cases"]
        exactly_one = sum(1 for c in race_cases if per_case.get(c, Counter()).get("200", 0) == 1)
        all_answered = sum(1 for c in race_cases if sum(per_case.get(c, Counter()).values()) == count)
        result["race"] = {
            "cases": len(race_cases),
            "clients": count,
            "cases_with_exactly_one_200": exactly_one,
            "cases_answered_by_every_client": all_answered,
            "ok": exactly_one == len(race_cases) == all_answered
            and statuses.get("409", 0) == len(race_cases) * (count - 1)
            and set(statuses) <= {"200", "409"},
        }
        result["rows"] = requests
        result["rows_per_second"] = round(requests / seconds) if seconds > 0 else None
    else:
        result["rows"] = decided
        result["rows_per_second"] = round(decided / seconds) if seconds > 0 else None
    return result


def store_direct(
    store_url: str,
    cases: int,
    decisions: int,
    mode: str = "decide",
    threads: int = 1,
    database_pid: int | None = None,
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
) -> dict[str, Any]:
    """The baseline: decisions through ``ReviewStore`` in this process, no HTTP.

    ``mode="decide"``: ``store.decide`` only. ``mode="endpoint_calls"``: what the decide
    endpoint asks of the store for one request with an Idempotency-Key (``authenticate``,
    ``idempotency_begin``, ``decide``, the response encoded as the endpoint encodes it,
    ``idempotency_complete``). ``threads`` workers decide distinct cases concurrently.
    """
    from fastapi.encoders import jsonable_encoder

    from aios_pipelines.review.audit import canonical_json
    from aios_pipelines.review.store import ReviewStore

    if mode not in ("decide", "endpoint_calls"):
        raise ValueError(f"mode must be decide or endpoint_calls, got {mode!r}")
    names = user_names(threads)
    tokens, case_ids = prepare_store(store_url, cases, names)
    per_thread = decisions // threads
    needed = threads * (per_thread + WARMUP_PER_CLIENT)
    if needed > len(case_ids):
        raise ValueError(f"{needed} cases needed, {len(case_ids)} published")
    slices = [case_ids[i * (per_thread + WARMUP_PER_CLIENT) : (i + 1) * (per_thread + WARMUP_PER_CLIENT)]
              for i in range(threads)]
    store = ReviewStore(store_url)
    waits = LockWaits(store.engine)
    body_json = canonical_json(DECIDE_BODY)

    def one(name: str, case_id: str) -> None:
        if mode == "decide":
            store.decide(case_id, name, "approve", [], None)
            return
        user = store.authenticate(tokens[name])
        if user is None:
            raise RuntimeError(f"token of {name} not accepted")
        path = f"/api/tasks/{case_id}/decision"
        request_hash = hashlib.sha256(f"POST {path}\n{body_json}".encode("utf-8")).hexdigest()
        state = store.idempotency_begin(user.name, f"{name}:{case_id}", "POST", path, request_hash)
        if state.kind != "new":
            raise RuntimeError(f"idempotency key of {case_id} is {state.kind}")
        outcome = store.decide(case_id, user, "approve", [], None)
        body = jsonable_encoder({"task": outcome.case, "decision": outcome.decision})
        store.idempotency_complete(user.name, f"{name}:{case_id}", 200, json.dumps(body))

    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []
    stopped = threading.Event()
    window: dict[str, Any] = {}

    def start() -> None:
        """Run once, when every worker is warm, before any is released: the timed window opens."""
        waits.reset()
        window["database_cpu"] = process_tree_cpu_seconds(database_pid)
        window["cpu"] = time.process_time()
        window["began"] = time.perf_counter()
        window["deadline"] = window["began"] + deadline_seconds

    barrier = threading.Barrier(threads + 1, action=start)

    def worker(index: int) -> None:
        name = names[index]
        try:
            try:
                for case_id in slices[index][:WARMUP_PER_CLIENT]:
                    one(name, case_id)
            finally:
                barrier.wait(timeout=600)
            for case_id in slices[index][WARMUP_PER_CLIENT:]:
                if time.perf_counter() >= window["deadline"]:
                    stopped.set()
                    break
                began = time.perf_counter()
                one(name, case_id)
                latencies[index].append(time.perf_counter() - began)
        except Exception as exc:  # noqa: BLE001 - reported as an error of the stage
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    barrier.wait(timeout=600)
    for thread in workers:
        thread.join()
    seconds = time.perf_counter() - window["began"]
    cpu = round(time.process_time() - window["cpu"], 3)
    database_cpu = _delta(process_tree_cpu_seconds(database_pid), window["database_cpu"])
    lock_waits = waits.summary()
    flat = [x for values in latencies for x in values]

    # verify: one decision per decided case, nothing else, and the audit chain
    from sqlalchemy import func, select

    from aios_pipelines.review.schema import decisions as decisions_table

    with store.engine.connect() as conn:
        per_case = dict(conn.execute(
            select(decisions_table.c.case_id, func.count()).group_by(decisions_table.c.case_id)).all())
    done_ids = {c for index, part in enumerate(slices)
                for c in part[: WARMUP_PER_CLIENT + len(latencies[index])]}
    chain_ok, first_bad = store.verify_audit_chain()
    store.dispose()
    checks = {
        "errors": len(errors),
        "decisions_stored": sum(per_case.values()),
        "one_decision_per_decided_case": set(per_case) == done_ids and all(n == 1 for n in per_case.values()),
        "audit_chain_ok": chain_ok,
        "audit_first_bad_seq": first_bad,
    }
    done = len(flat)
    return {
        "mode": mode,
        "threads": threads,
        "seconds": round(seconds, 3),
        "rows": done,
        "decisions": done,
        "rows_per_second": round(done / seconds) if seconds > 0 else None,
        "decisions_per_second": round(done / seconds, 1) if seconds > 0 else None,
        "latency_ms": latency_summary(flat),
        "lock_wait_ms": lock_waits,
        "lock_wait_share": round(lock_waits["total_seconds"] / (seconds * threads), 3) if seconds > 0 else None,
        "cpu_seconds": cpu,
        "cpu_ms_per_decision": _per_decision_ms(cpu, done),
        "database_cpu_seconds": database_cpu,
        "database_cpu_ms_per_decision": _per_decision_ms(database_cpu, done),
        "errors": len(errors),
        "error_samples": errors[:5],
        "stopped_by_deadline": stopped.is_set(),
        "own_peak_rss_mib": process_peak_rss_mib(os.getpid()),
        "checks": checks,
    }


# ----------------------------------------------------------------------------------------
# The service and PostgreSQL, as processes of this run
# ----------------------------------------------------------------------------------------


def _aios_command() -> list[str]:
    script = Path(sys.executable).with_name("aios")
    if script.exists():
        return [str(script)]
    found = shutil.which("aios")
    if found:
        return [found]
    return [sys.executable, "-m", "aios_pipelines.cli"]


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def review_service(store_url: str, log_path: Path) -> Iterator[dict[str, Any]]:
    """``aios review serve`` on 127.0.0.1 and a free port, until the block ends."""
    import httpx

    port = free_port()
    command = [*_aios_command(), "review", "serve", "--host", HOST, "--port", str(port), "--store-url", store_url]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=PROJECT_ROOT, env=env)
    url = f"http://{HOST}:{port}"
    try:
        give_up = time.monotonic() + SERVER_START_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the review service exited with {process.returncode}:\n{_tail(log_path)}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > give_up:
                raise RuntimeError(f"the review service did not answer within {SERVER_START_SECONDS:.0f} s:\n"
                                   f"{_tail(log_path)}")
            time.sleep(0.2)
        yield {"url": url, "pid": process.pid, "port": port,
               "command": " ".join(shlex.quote(c) for c in command)}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully on SIGTERM
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


@contextlib.contextmanager
def postgres_cluster(database_names: list[str]) -> Iterator[dict[str, Any]]:
    """A throwaway PostgreSQL cluster (``aios_pipelines.storage.postgres_server``) on 127.0.0.1
    and a free port, with initdb's durability defaults (fsync and synchronous commit on, as a
    production server would run) and every connection logged (counted per stage); the
    databases are created empty. Stopped and removed when the block ends."""
    with _postgres_cluster(database_names, superuser=PG_SUPERUSER, log_connections=True,
                           prefix="aios_bench_pg_") as cluster:
        yield cluster


# ----------------------------------------------------------------------------------------
# One backend
# ----------------------------------------------------------------------------------------


def verify_store(url: str, expected: dict[str, str]) -> dict[str, Any]:
    """The store after the HTTP runs: exactly the decisions the clients were told about."""
    from sqlalchemy import func, select

    from aios_pipelines.review.schema import audit_log, cases, decisions, idempotency_keys
    from aios_pipelines.review.store import ReviewStore

    store = ReviewStore(url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(select(decisions.c.case_id, decisions.c.reviewer, decisions.c.decision)).all()
            decided = dict(conn.execute(
                select(cases.c.case_id, cases.c.final_decision).where(cases.c.status == "decided")).all())
            recorded = conn.execute(
                select(func.count()).select_from(audit_log).where(audit_log.c.action == "decision.recorded")).scalar()
            in_progress = conn.execute(
                select(func.count()).select_from(idempotency_keys).where(idempotency_keys.c.response_status.is_(None))
            ).scalar()
        chain_ok, first_bad = store.verify_audit_chain()
    finally:
        store.dispose()
    per_case = Counter(r.case_id for r in rows)
    stored = {r.case_id: r.reviewer for r in rows}
    return {
        "decisions_expected": len(expected),
        "decisions_stored": len(rows),
        "cases_with_more_than_one_decision": sum(1 for n in per_case.values() if n > 1),
        "decided_without_a_200": len(set(stored) - set(expected)),
        "200_without_a_decision": len(set(expected) - set(stored)),
        "decided_by_another_user": sum(1 for c, u in expected.items() if c in stored and stored[c] != u),
        "cases_decided_approve": sum(1 for c in expected if decided.get(c) == "approve"),
        "audit_decision_entries": int(recorded or 0),
        "idempotency_keys_in_progress": int(in_progress or 0),
        "audit_chain_ok": chain_ok,
        "audit_first_bad_seq": first_bad,
        "ok": (
            len(rows) == len(expected) == len(per_case)
            and set(stored) == set(expected)
            and all(stored[c] == u for c, u in expected.items())
            and sum(1 for c in expected if decided.get(c) == "approve") == len(expected)
            and len(decided) == len(expected)
            and int(recorded or 0) == len(rows)
            and int(in_progress or 0) == 0
            and chain_ok
        ),
    }


def _label(what: str, backend: str, result: dict[str, Any]) -> str:
    lat = result.get("latency_ms") or {}
    text = f"{what} ({backend})"
    if lat.get("count"):
        text += f"; latency p50/p95/p99 {lat['p50']:.1f}/{lat['p95']:.1f}/{lat['p99']:.1f} ms"
    return text


def run_backend(
    backend: str,
    urls: dict[str, str],
    params: dict[str, Any],
    work: Path,
    database_pid: int | None,
    database_log: Path | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every stage of one backend; returns (stages by name, verification)."""
    cases, decisions = params["cases"], params["decisions"]
    clients, race_cases, race_clients = params["clients"], params["race_cases"], params["race_clients"]
    deadline = params["deadline_seconds"]
    stage_timeout = deadline + 900
    stages: dict[str, dict[str, Any]] = {}

    def record(name: str, what: str, result: dict[str, Any], connections_before: int | None) -> None:
        after = count_connections(database_log)
        if after is not None and connections_before is not None:
            result["database_connections_opened"] = after - connections_before
        result["backend"] = backend
        result["label"] = _label(what, backend, result)
        stages[f"{backend}_{name}"] = result
        lat = result.get("latency_ms") or {}
        _log(f"  {backend}_{name:<26} {result.get('decisions', 0):>6} decisions {result['seconds']:>8.2f} s "
             f"{result.get('decisions_per_second') or 0:>8.1f}/s  p50 {lat.get('p50', 0):>7.2f} "
             f"p99 {lat.get('p99', 0):>8.2f} ms  errors {result.get('errors')}")

    # baselines first: nothing else is running on the store's files or the cluster then
    direct = (("store_decide", "decide", 1, "store.decide, 1 thread, no HTTP"),
              ("store_endpoint_calls", "endpoint_calls", 1,
               "store calls of one decide request (auth + idempotency + decide), 1 thread, no HTTP"),
              (f"store_endpoint_calls_{max(clients)}_threads", "endpoint_calls", max(clients),
               f"store calls of one decide request, {max(clients)} threads, no HTTP"))
    for name, mode, threads, what in direct:
        _log(f"- {backend}: {name} ...")
        connections = count_connections(database_log)
        result = run_stage(f"{STAGE_MODULE}:store_direct",
                           {"store_url": urls[name], "cases": cases, "decisions": decisions, "mode": mode,
                            "threads": threads, "database_pid": database_pid, "deadline_seconds": deadline},
                           timeout=stage_timeout)
        record(name, what, result, connections)

    # HTTP
    tokens, case_ids = prepare_store(urls["http"], cases, user_names(max(max(clients), race_clients)))
    cursor = 0

    def take(n: int) -> list[str]:
        nonlocal cursor
        if cursor + n > len(case_ids):
            raise ValueError(f"{cases} cases are too few for this plan (need more than {cursor + n})")
        chosen = case_ids[cursor : cursor + n]
        cursor += n
        return chosen

    plans: list[tuple[str, str, Path]] = []
    for count in clients:
        per_client = decisions // count
        spec = [{"user": u, "token": tokens[u], "cases": take(per_client + WARMUP_PER_CLIENT),
                 "warmup": WARMUP_PER_CLIENT} for u in user_names(count)]
        path = work / f"{backend}_plan_http_{count}.json"
        path.write_text(json.dumps({"mode": "load", "clients": spec}), encoding="utf-8")
        plans.append((f"http_{count}_client{'s' if count > 1 else ''}",
                      f"HTTP decide, {count} client{'s' if count > 1 else ''}, distinct cases", path))
    shared = take(race_cases)
    spec = [{"user": u, "token": tokens[u], "cases": shared, "warmup": 0} for u in user_names(race_clients)]
    race_path = work / f"{backend}_plan_race.json"
    race_path.write_text(json.dumps({"mode": "race", "clients": spec, "race_cases": shared}), encoding="utf-8")
    plans.append((f"http_race_{race_clients}_clients",
                  f"race: {race_clients} clients approve the same {race_cases} cases; rows = requests", race_path))

    expected: dict[str, str] = {}
    overlap = 0
    with review_service(urls["http"], work / f"{backend}_service.log") as service:
        _log(f"- {backend}: review service {service['url']} (pid {service['pid']})")
        for name, what, path in plans:
            _log(f"- {backend}: {name} ...")
            connections = count_connections(database_log)
            result = run_stage(f"{STAGE_MODULE}:http_load",
                               {"base_url": service["url"], "plan_file": str(path), "deadline_seconds": deadline,
                                "server_pid": service["pid"], "database_pid": database_pid},
                               timeout=stage_timeout)
            successes = result.pop("successes")
            overlap += len(set(successes) & set(expected))
            expected.update(successes)
            record(name, what, result, connections)
        service_command = service["command"]
    verification = verify_store(urls["http"], expected)
    verification["cases_decided_in_two_stages"] = overlap
    verification["ok"] = verification["ok"] and overlap == 0
    verification["service_command"] = service_command
    return stages, verification


# ----------------------------------------------------------------------------------------
# The whole benchmark
# ----------------------------------------------------------------------------------------


def _stage_names(clients: tuple[int, ...]) -> dict[str, str]:
    top = max(clients)
    names = {"store_decide": "store_decide", "store_endpoint_calls": "store_endpoint_calls",
             "store_threads": f"store_endpoint_calls_{top}_threads"}
    for count in clients:
        names[f"http_{count}"] = f"http_{count}_client{'s' if count > 1 else ''}"
    return names


def _ratios(stages: dict[str, dict[str, Any]], backends: list[str], clients: tuple[int, ...]) -> dict[str, float | None]:
    """Seconds per decision, HTTP / baseline (above 1: HTTP is slower)."""

    def per_decision(key: str) -> float | None:
        stage = stages.get(key)
        if not stage or not stage.get("decisions"):
            return None
        return stage["seconds"] / stage["decisions"]

    names = _stage_names(clients)
    top = max(clients)
    out: dict[str, float | None] = {}
    for backend in backends:
        b = f"{backend}_"
        if b + names["store_decide"] not in stages:
            continue
        for count in clients:
            out[f"{b}http_{count}_vs_store_decide_ratio"] = ratio(per_decision(b + names[f"http_{count}"]),
                                                                 per_decision(b + names["store_decide"]))
        low = min(clients)
        out[f"{b}http_{low}_vs_store_endpoint_calls_ratio"] = ratio(per_decision(b + names[f"http_{low}"]),
                                                                    per_decision(b + names["store_endpoint_calls"]))
        out[f"{b}http_{top}_vs_store_endpoint_calls_{top}_threads_ratio"] = ratio(
            per_decision(b + names[f"http_{top}"]), per_decision(b + names["store_threads"]))
        out[f"{b}store_endpoint_calls_vs_store_decide_ratio"] = ratio(per_decision(b + names["store_endpoint_calls"]),
                                                                      per_decision(b + names["store_decide"]))
    if all(f"{b}_{names['store_decide']}" in stages for b in ("sqlite", "postgresql")):
        for count in clients:
            out[f"postgresql_vs_sqlite_http_{count}_ratio"] = ratio(
                per_decision(f"postgresql_{names[f'http_{count}']}"), per_decision(f"sqlite_{names[f'http_{count}']}"))
    return out


def _notes(stages: dict[str, dict[str, Any]], verification: dict[str, Any], postgres: dict[str, Any],
           params: dict[str, Any], disk: dict[str, Any]) -> list[str]:
    notes = [
        "HTTP runs: the real service (`aios review serve --host 127.0.0.1 --store-url URL`, uvicorn, one process) "
        "and a separate client process with one thread and one keep-alive httpx.Client per client; every request "
        "carries an Idempotency-Key, so one decision is 4 store transactions (authenticate, idempotency_begin, "
        "decide, idempotency_complete; the last three are write transactions serialised by the store's write lock).",
        f"Every HTTP run times {params['decisions']:,} decisions split over its clients after "
        f"{WARMUP_PER_CLIENT} untimed warm-up decisions per client; latency is per request as the client sees it. "
        "Peak RSS in the table is the client process (load stages) or the baseline process as ru_maxrss reports "
        "it, which on Linux keeps the high-water mark of the process that forked it (the runner) across exec; "
        "the stage's own peak (VmHWM) is own_peak_rss_mib in the JSON, the service's server_peak_rss_mib.",
        "Ratios: seconds per decision, HTTP / baseline from the same run (above 1: HTTP is slower). "
        "store_decide is ReviewStore.decide alone; store_endpoint_calls adds the store calls the endpoint makes "
        "for authentication and idempotency plus the response encoding, so http_1_vs_store_endpoint_calls is the "
        "cost of HTTP, ASGI, request validation and the threadpool alone.",
        "SQLite runs with the store's settings: WAL, synchronous=NORMAL (no fsync per commit), BEGIN IMMEDIATE. "
        "PostgreSQL runs with initdb defaults (fsync on, synchronous_commit on: one WAL flush per commit); "
        f"one 8 KiB write + fdatasync took {disk['fdatasync_ms_median']} ms (median of 100) on this disk.",
    ]
    for key, stage in stages.items():
        lat = stage.get("latency_ms") or {}
        cpu = stage.get("server_cpu_ms_per_request", stage.get("cpu_ms_per_decision"))
        line = (f"{key}: {stage.get('decisions', 0):,} decisions in {stage['seconds']:.2f} s = "
                f"{stage.get('decisions_per_second')} decisions/s; latency ms p50 {lat.get('p50')}, p95 {lat.get('p95')}, "
                f"p99 {lat.get('p99')}, max {lat.get('max')} ({lat.get(f'over_{OUTLIER_MS:g}ms', 0)} over "
                f"{OUTLIER_MS:g} ms); errors {stage.get('errors')}")
        if cpu is not None:
            line += f"; {'service' if 'server_cpu_ms_per_request' in stage else 'process'} CPU {cpu} ms per request"
        if stage.get("database_cpu_ms_per_request") is not None or stage.get("database_cpu_ms_per_decision") is not None:
            line += (f", PostgreSQL CPU "
                     f"{stage.get('database_cpu_ms_per_request', stage.get('database_cpu_ms_per_decision'))} ms")
        if stage.get("database_connections_opened") is not None:
            line += f", {stage['database_connections_opened']:,} PostgreSQL connections opened"
        if stage.get("lock_wait_ms", {}).get("count"):
            waits = stage["lock_wait_ms"]
            line += (f"; write-lock waits p50 {waits['p50']} / p99 {waits['p99']} / max {waits['max']} ms, "
                     f"{stage.get('lock_wait_share', 0):.0%} of thread time")
        if stage.get("race"):
            race = stage["race"]
            line += (f"; race: {race['cases_with_exactly_one_200']}/{race['cases']} cases with exactly one 200, "
                     f"status counts {stage.get('status_counts')}")
        if stage.get("stopped_by_deadline"):
            line += "; STOPPED BY THE DEADLINE"
        notes.append(line)
    for backend, check in verification.items():
        if "ok" not in check:
            continue
        notes.append(
            f"{backend} store after the HTTP runs: {check['decisions_stored']:,} decisions stored for "
            f"{check['decisions_expected']:,} 200 answers, {check['cases_with_more_than_one_decision']} cases with "
            f"more than one, {check['decided_by_another_user']} by another user, "
            f"{check['idempotency_keys_in_progress']} idempotency keys in progress, audit chain "
            f"{'verifies' if check['audit_chain_ok'] else 'BROKEN at seq ' + str(check['audit_first_bad_seq'])}: "
            f"{'ok' if check['ok'] else 'FAILED'}.")
    if postgres.get("skipped"):
        notes.append(f"PostgreSQL not measured: {postgres['skipped']}")
    elif postgres.get("failed"):
        notes.append(f"PostgreSQL run failed: {postgres['failed']}")
    elif postgres.get("version"):
        notes.append(f"PostgreSQL {postgres['version']} ({postgres.get('settings')}), a throwaway cluster on "
                     f"{HOST} started and removed by this run.")
    return notes


def _failures(stages: dict[str, dict[str, Any]], verification: dict[str, Any]) -> list[str]:
    problems = []
    for key, stage in stages.items():
        if stage.get("errors"):
            problems.append(f"{key}: {stage['errors']} errors, e.g. {stage.get('error_samples')}")
        if "race" in stage and not stage["race"]["ok"]:
            problems.append(f"{key}: the race did not end one 200 and the rest 409 per case: {stage['race']}, "
                            f"{stage.get('status_counts')}")
        checks = stage.get("checks")
        if checks and not (checks["one_decision_per_decided_case"] and checks["audit_chain_ok"]):
            problems.append(f"{key}: store checks failed: {checks}")
    for backend, check in verification.items():
        if "ok" in check and not check["ok"]:
            problems.append(f"{backend}: store verification failed: {check}")
    return problems


def run_review_plane(
    *,
    quick: bool = False,
    cases: int | None = None,
    decisions: int | None = None,
    clients: tuple[int, ...] = DEFAULT_CLIENTS,
    race_cases: int | None = None,
    race_clients: int | None = None,
    backends: tuple[str, ...] = BACKENDS,
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
    keep: bool = False,
    results_dir: Path = RESULTS_DIR,
    command: str | None = None,
    machine: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the benchmark, record it under ``review_plane`` (another key for other sizes or
    backends) and return the entry. Raises :class:`ReviewPlaneCheckFailed` after recording
    when a correctness check failed."""
    defaults = QUICK if quick else {"cases": DEFAULT_CASES, "decisions": DEFAULT_DECISIONS,
                                    "race_cases": DEFAULT_RACE_CASES}
    clients = tuple(sorted(set(clients)))
    params = {
        "cases": cases or defaults["cases"],
        "decisions": decisions or defaults["decisions"],
        "clients": list(clients),
        "race_cases": race_cases or defaults["race_cases"],
        "race_clients": race_clients or max(clients),
        "backends": list(backends),
        "deadline_seconds": deadline_seconds,
        "warmup_per_client": WARMUP_PER_CLIENT,
        "idempotency_keys": True,
    }
    if min(clients) < 1 or params["decisions"] < max(clients) or params["race_clients"] < 2:
        raise ValueError("clients must be at least 1, decisions at least the largest client count, "
                         "race clients at least 2")
    needed = sum((params["decisions"] // c + WARMUP_PER_CLIENT) * c for c in clients) + params["race_cases"]
    needed_direct = (params["decisions"] // max(clients) + WARMUP_PER_CLIENT) * max(clients)
    if params["cases"] < max(needed, needed_direct, params["decisions"] + WARMUP_PER_CLIENT):
        raise ValueError(f"--cases {params['cases']} is too few: the HTTP runs need {needed}")
    machine = machine or machine_info()
    _log(f"review-plane benchmark: {params['cases']:,} cases, {params['decisions']:,} decisions per run, "
         f"clients {clients}, race {params['race_clients']} x {params['race_cases']}, backends {list(backends)}; "
         f"{machine['cores']} cores, load average {load_average()}")
    work = make_work_dir(BENCHMARK)
    _log(f"work directory: {work}")
    disk = {"fdatasync_ms_median": fdatasync_ms(work), "directory": str(work.parent)}
    _log(f"one 8 KiB write + fdatasync: {disk['fdatasync_ms_median']} ms (median of 100)")
    before = load_average()
    started = dt.datetime.now().astimezone()
    stages: dict[str, dict[str, Any]] = {}
    verification: dict[str, Any] = {}
    postgres: dict[str, Any] = {}
    stage_names = ["store_decide", "store_endpoint_calls", f"store_endpoint_calls_{max(clients)}_threads"]
    try:
        if "sqlite" in backends:
            urls = {name: f"sqlite:///{(work / f'sqlite_{name}.sqlite').as_posix()}" for name in [*stage_names, "http"]}
            backend_stages, verification["sqlite"] = run_backend("sqlite", urls, params, work, None)
            stages.update(backend_stages)
        if "postgresql" in backends:
            databases = {name: f"aios_bench_{i}_{name}"[:63] for i, name in enumerate([*stage_names, "http"])}
            try:
                with postgres_cluster(list(databases.values())) as cluster:
                    postgres.update(version=cluster["version"], settings=cluster["settings"],
                                    run_as=cluster["run_as"], bin_dir=cluster["bin_dir"])
                    _log(f"- postgresql {cluster['version']} on {HOST}:{cluster['port']} (pid {cluster['pid']})")
                    urls = {name: cluster["urls"][db] for name, db in databases.items()}
                    backend_stages, verification["postgresql"] = run_backend(
                        "postgresql", urls, params, work, cluster["pid"], cluster["log_path"])
                    stages.update(backend_stages)
            except PostgresUnavailable as exc:
                postgres["skipped"] = str(exc)
                _log(f"PostgreSQL skipped: {exc}")
            except Exception as exc:  # noqa: BLE001 - SQLite's figures are still recorded, then this is raised
                postgres["failed"] = f"{type(exc).__name__}: {exc}"
                _log(f"PostgreSQL failed: {postgres['failed']}")
    finally:
        if keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    after = load_average()

    key = BENCHMARK
    if (params["cases"], params["decisions"]) != (DEFAULT_CASES, DEFAULT_DECISIONS):
        key += f"_decisions_{params['decisions']}"
    if set(backends) != set(BACKENDS):
        key += "_" + "_".join(backends)
    entry = {
        "benchmark": BENCHMARK,
        "recorded_at": started.isoformat(timespec="seconds"),
        "command": command or "benchmarks/review_plane.py",
        "params": params,
        "machine": machine,
        "load_average": {"before": before, "after": after},
        "stages": stages,
        "ratios": _ratios(stages, [b for b in BACKENDS if b in backends], clients),
        "verification": verification,
        "postgresql": postgres,
        "disk": disk,
        "versions": service_versions(),
        "notes": _notes(stages, verification, postgres, params, disk),
    }
    entry["notes"].append("Versions: " + ", ".join(f"{k} {v}" for k, v in entry["versions"].items() if v) + ".")
    json_path, md_path = record_results(key, entry, results_dir=results_dir, day=started.date())
    print(f"review plane ({key}):")
    for name, stage in stages.items():
        lat = stage.get("latency_ms") or {}
        print(f"  {name:<42} {stage.get('decisions_per_second') or 0:>8.1f} decisions/s  p50 {lat.get('p50', 0):>7.2f}"
              f"  p95 {lat.get('p95', 0):>7.2f}  p99 {lat.get('p99', 0):>8.2f} ms  errors {stage.get('errors')}")
    for name, value in entry["ratios"].items():
        print(f"  {name} = {value}")
    print(f"results: {json_path} and {md_path}")
    problems = _failures(stages, verification)
    if postgres.get("failed"):
        problems.append(f"postgresql: {postgres['failed']}")
    if problems:
        raise ReviewPlaneCheckFailed("review-plane checks failed (results recorded):\n" + "\n".join(problems))
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['cases']:,} cases, {QUICK['decisions']} decisions per run: a smoke test")
    parser.add_argument("--cases", type=int, default=None, help=f"open cases per store (default {DEFAULT_CASES:,})")
    parser.add_argument("--decisions", type=int, default=None,
                        help=f"timed decisions per run (default {DEFAULT_DECISIONS:,})")
    parser.add_argument("--clients", default=",".join(map(str, DEFAULT_CLIENTS)),
                        help="client counts of the HTTP runs, comma-separated (default 1,4,16)")
    parser.add_argument("--race-cases", type=int, default=None, help=f"cases of the race (default {DEFAULT_RACE_CASES})")
    parser.add_argument("--race-clients", type=int, default=None, help="clients of the race (default: the most clients)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="sqlite, postgresql or both (default)")
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_SECONDS,
                        help="seconds a load stage may run before its clients stop")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (stores, plans, service logs)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    try:
        clients = tuple(int(c) for c in args.clients.split(",") if c.strip())
    except ValueError:
        parser.error(f"--clients must be integers separated by commas, got {args.clients!r}")
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    if not clients or not backends or set(backends) - set(BACKENDS):
        parser.error(f"--clients needs at least one count and --backends is a subset of {list(BACKENDS)}")
    command = " ".join(["benchmarks/review_plane.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    try:
        run_review_plane(quick=args.quick, cases=args.cases, decisions=args.decisions, clients=clients,
                         race_cases=args.race_cases, race_clients=args.race_clients, backends=backends,
                         deadline_seconds=args.deadline, keep=args.keep, results_dir=args.results_dir,
                         command=command)
    except ReviewPlaneCheckFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
