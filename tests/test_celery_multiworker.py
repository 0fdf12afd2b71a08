"""Several workers on one machine, as a stand-in for several machines: the nightly path runs
with Dagster's Celery executor (dagster-celery), a Redis broker and two Celery workers as
separate processes on loopback, with the Dagster instance, the warehouse, the review store and
the MLflow registry on PostgreSQL; the same data through the embedded default (in-process
executor, DuckDB warehouse, SQLite review store and registry) gives the same results.

The test starts and stops every server and worker itself: the session's PostgreSQL
(tests/conftest.py), a Redis server (aios_pipelines/storage/redis_server.py) and two
``dagster-celery worker start`` processes, each in its own process group, stopped in
``finally`` blocks even when the test fails.

The world is small: 70 days of 150 applications (10 days of matured outcomes) ingested, a
champion trained on them, then one nightly day: ingest, score, publish to the review store,
simulated underwriters (the same decisions in both worlds), monitoring (drift, score stability),
the decisions copy and the dbt build. Compared: every warehouse table and dbt model (rows and
values; times, generated ids and run ids aside), the champion (metrics and data snapshot hash)
and the review stores' cases.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from aios_pipelines.celery_definitions import (
    BACKEND_ENV,
    BROKER_ENV,
    CELERY_CODE_LOCATION,
    worker_config_yaml,
)
from aios_pipelines.defs.instance import get_instance, postgres_instance_yaml
from aios_pipelines.defs.runner import run_job
from aios_pipelines.modeling.registry import ModelRegistry, RegistryConfig, default_registry_config
from aios_pipelines.review.store import ReviewStore
from aios_pipelines.settings import AiosPaths
from aios_pipelines.storage.postgres_server import HOST, PostgresServer
from aios_pipelines.storage.postgres_warehouse import PostgresWarehouse
from aios_pipelines.storage.redis_server import RedisServer, RedisUnavailable
from aios_pipelines.storage.warehouse import Warehouse
from aios_pipelines.synthetic.generator import write_landing
from aios_pipelines.synthetic.reviewers import simulate_reviews

PROJECT_ROOT = Path(__file__).resolve().parent.parent
START = date(2026, 3, 2)
DAYS = 70
PER_DAY = 150
WINDOW = 60  # the shipped contract's performance window
LAST = START + timedelta(days=DAYS - 1)
NIGHT = LAST + timedelta(days=1)
# small data: a short out-of-time window, small leaves, an AUC the small sample reaches
TRAINING = {"ops": {"credit_risk_model": {"config": {"oot_days": 5, "min_data_in_leaf": 20, "min_oot_auc": 0.6}}}}
# monitoring judges a day of 150 applications too (the product waits for 200 before judging drift)
MONITORING = {"ops": {"feature_drift_report": {"config": {"min_batch_rows": 50}},
                      "score_stability": {"config": {"min_batch_rows": 50}}}}
WORKERS = ("aios-w1", "aios-w2")
WORKER_READY_SECONDS = 240

# Columns that differ between two runs of the same data by nature: wall-clock times (loaded,
# published, decided, copied), the durations between them, ids and cursors the stores generate,
# run ids, and file paths under each world's own data directory.
# (audit hashes cover case ids and times, so they differ too; their counts must not)
VOLATILE = re.compile(r"(_at|_time|timestamp|_as_of|_seconds|_minutes|run_id|_cursor|source_file|_path"
                      r"|audit_hash|verified_hash)$|hours"
                      r"|^(at|event_id|decision_id|case_id)$|^(loaded|copied|published|created|updated)_")
# inside values: the pipeline's actor names carry the run id, event details carry times
RUN_ACTOR = re.compile(r"dagster:[0-9a-f]{8}")
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)?")
FLOAT_TOLERANCE = 1e-9
# The day a reviewer decided is the wall-clock day (UTC) of the decision, so the two worlds'
# days differ when the suite crosses midnight. Tables that count per decision day are compared
# with their counts summed over the day; the ratios of those counts are left to dbt's unit tests.
DECISION_DAY = "decision_date"
RATIO = re.compile(r"_rate$")
WAREHOUSE_URL_ENV = "AIOS_WAREHOUSE_URL"


def _quiet(_: str) -> None:
    return None


# ---------------------------------------------------------------------- the Celery code location


@pytest.mark.usefixtures("aios_paths")
def test_celery_code_location_runs_every_asset_job_on_celery_and_leaves_the_default_alone():
    from aios_pipelines.celery_definitions import defs as celery_defs
    from aios_pipelines.definitions import defs as product_defs

    product = product_defs().get_repository_def()
    celery = celery_defs().get_repository_def()
    executors = {job.name: job.executor_def.name for job in celery.get_all_jobs()}
    assert executors.pop("sweep_review_slas") == "in_process"  # one op on the review store
    # every asset job, and Dagster's implicit one for materializations from the UI
    assert set(executors.values()) == {"celery"} and {"score_applications", "__ASSET_JOB"} <= set(executors)
    assert {job.name: job.executor_def.name for job in product.get_all_jobs() if not job.name.startswith("__")} == {
        name: "in_process" for name in [*executors, "sweep_review_slas"] if not name.startswith("__")}
    # the schedules and sensors launch the Celery jobs of the same names
    assert {s.name: s.job_name for s in celery.schedule_defs} == {s.name: s.job_name for s in product.schedule_defs}
    for schedule in celery.schedule_defs:
        assert celery.get_job(schedule.job_name).executor_def.name == executors.get(schedule.job_name, "in_process")
    assert {s.name: sorted(t.job_name for t in s.targets) for s in celery.sensor_defs} == {
        s.name: sorted(t.job_name for t in s.targets) for s in product.sensor_defs}


# ---------------------------------------------------------------------- servers and workers


def test_redis_server_starts_on_loopback_and_is_removed(monkeypatch: pytest.MonkeyPatch):
    import socket

    from aios_pipelines.storage import redis_server

    with RedisServer() as server:
        root, port = server.root, server.port
        assert server.url(3) == f"redis://{HOST}:{port}/3" and server.ping()
        with socket.create_connection((HOST, port), timeout=5) as sock:
            sock.sendall(b"SET k v\r\nGET k\r\n")
            time.sleep(0.2)
            assert sock.recv(64) == b"+OK\r\n$1\r\nv\r\n"
    assert not root.exists() and not server.ping()
    monkeypatch.setattr(redis_server, "redis_server_binary", lambda: None)
    with pytest.raises(RedisUnavailable, match="make system-deps"):
        RedisServer().start()


@pytest.fixture()
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(prefix="aios_test_redis_")
    try:
        server.start()
    except RedisUnavailable as exc:
        pytest.fail(f"the Celery test needs a local Redis server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def _stop_group(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM to the worker's process group (the dagster-celery CLI and its celery child),
    SIGKILL if it is still there after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # the CLI has exited; its child may still be finishing
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def _children(pid: int) -> list[int]:
    """The pids of a process's children (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@contextlib.contextmanager
def celery_workers(env: dict[str, str], folder: Path, broker: str, backend: str) -> Iterator[dict[str, dict]]:
    """Two ``dagster-celery worker start`` processes, one task at a time each (solo pool: the
    step runs in the worker process itself), each in its own process group; yields, per
    worker name, its CLI process, its log and the pid of its celery process."""
    config = folder / "celery_worker.yaml"
    config.write_text(worker_config_yaml(broker, backend))
    workers: dict[str, dict] = {}
    try:
        for name in WORKERS:
            log = folder / f"{name}.log"
            with log.open("w") as out:
                process = subprocess.Popen(
                    [str(Path(sys.executable).with_name("dagster-celery")), "worker", "start",
                     "-A", "dagster_celery.app", "-y", str(config), "-n", name, "--loglevel", "INFO",
                     "--", "--pool=solo", "--without-gossip", "--without-mingle"],
                    env=env, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            workers[name] = {"process": process, "log": log}
        deadline = time.monotonic() + WORKER_READY_SECONDS
        for name, worker in workers.items():
            while " ready." not in worker["log"].read_text(errors="replace"):
                if worker["process"].poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"celery worker {name} did not start:\n{worker['log'].read_text()[-3000:]}")
                time.sleep(0.5)
            children = _children(worker["process"].pid)
            assert len(children) == 1, f"{name}: expected one celery process under the CLI, got {children}"
            worker["pid"] = children[0]
        yield workers
    finally:
        for worker in workers.values():
            _stop_group(worker["process"])


# ---------------------------------------------------------------------- the two worlds


def _postgres_dagster_yaml(server: PostgresServer, db_name: str) -> str:
    return postgres_instance_yaml(username=server.superuser, hostname=HOST, port=server.port, db_name=db_name)


@pytest.fixture(scope="module")
def landing_template(tmp_path_factory) -> Path:
    """The generated lender's files, copied into each world's landing folder."""
    landing = tmp_path_factory.mktemp("celery_landing") / "landing"
    write_landing(landing, start=START, days=DAYS, per_day=PER_DAY, seed=11, file_format="csv",
                  performance_window_days=WINDOW)
    write_landing(landing, start=NIGHT, days=1, per_day=PER_DAY, seed=12, file_format="csv",
                  performance_window_days=WINDOW)
    return landing


def _world(root: Path, landing_template: Path) -> AiosPaths:
    paths = AiosPaths(root / "aios_home").ensure()
    shutil.copytree(landing_template, paths.landing, dirs_exist_ok=True)
    return paths


def run_nightly_path(paths: AiosPaths, instance: dg.DagsterInstance, review_store: ReviewStore,
                     code_location: str | None) -> list:
    """History (ingest, outcomes, a champion), then the night: ingest, score, publish,
    underwriters decide, monitor, copy the decisions, dbt. Returns the runs' results."""
    outcome_days = sorted(p.name for p in (paths.landing / "outcomes").iterdir())

    def run(job: str, first: date | None = None, last: date | None = None, **kw):
        return run_job(job, first_day=first, last_day=last, instance=instance, progress=_quiet,
                       code_location=code_location, **kw)

    results = [
        run("ingest_applications", START, LAST),
        run("ingest_loan_outcomes", date.fromisoformat(outcome_days[0]), date.fromisoformat(outcome_days[-1])),
        run("retrain_credit_model", run_config=TRAINING),
        run("ingest_applications", NIGHT),
        run("score_applications", NIGHT),
        run("publish_review_cases", NIGHT),
    ]
    done = same_underwriters(review_store)
    assert done["decided"] > 0 and done["refused"] == 0, done
    results += [
        run("monitor_applications", NIGHT, run_config=MONITORING),
        run("copy_review_decisions"),
        run("build_analytics"),
    ]
    return results


def same_underwriters(store: ReviewStore) -> dict[str, int]:
    """The demo's simulated underwriters on every open case, keyed by application id: they draw
    their decisions from the case id, which each review store generates at random, so each
    world would otherwise see other humans decide other cases."""
    from aios_pipelines.synthetic import reviewers

    application = {c["case_id"]: c["application_id"] for c in store.list_cases(limit=1_000_000)}
    rng, pick = reviewers._rng, reviewers._pick
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reviewers, "_rng", lambda seed, case_id: rng(seed, application[case_id]))
        patch.setattr(reviewers, "_pick", lambda case_id, team: pick(application[case_id], team))
        return simulate_reviews(store)


def _env(monkeypatch: pytest.MonkeyPatch, **values: str | None) -> None:
    for name, value in values.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


@pytest.mark.slow
def test_nightly_path_on_two_celery_workers_equals_the_embedded_run(
        tmp_path: Path, landing_template: Path, postgres_server: PostgresServer, redis_server: RedisServer,
        monkeypatch: pytest.MonkeyPatch):
    started = time.perf_counter()
    # ---------------- the embedded default: in-process executor, DuckDB, SQLite, MLflow on SQLite
    embedded = _world(tmp_path / "embedded", landing_template)
    _env(monkeypatch, AIOS_HOME=str(embedded.home), DAGSTER_HOME=None, AIOS_REVIEW_STORE_URL=None,
         AIOS_MLFLOW_TRACKING_URI=None, **{WAREHOUSE_URL_ENV: None, BROKER_ENV: None, BACKEND_ENV: None})
    instance = get_instance(embedded)
    try:
        embedded_results = run_nightly_path(embedded, instance, ReviewStore.for_paths(embedded).create_all(), None)
    finally:
        instance.dispose()
    embedded_seconds = time.perf_counter() - started

    # ---------------- the Celery world: PostgreSQL for every store, Redis, two workers
    celery = _world(tmp_path / "celery", landing_template)
    postgres_server.create_database("aios_celery_dagster")
    review_url = postgres_server.create_database("aios_celery_review")
    mlflow_url = postgres_server.create_database("aios_celery_mlflow")
    warehouse_url = postgres_server.create_database("aios_celery_warehouse")
    dagster_home = tmp_path / "celery" / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(_postgres_dagster_yaml(postgres_server, "aios_celery_dagster"))
    broker, backend = redis_server.url(0), redis_server.url(1)
    _env(monkeypatch, AIOS_HOME=str(celery.home), DAGSTER_HOME=str(dagster_home), AIOS_REVIEW_STORE_URL=review_url,
         AIOS_MLFLOW_TRACKING_URI=mlflow_url, **{WAREHOUSE_URL_ENV: warehouse_url,
                                                 BROKER_ENV: broker, BACKEND_ENV: backend})
    review_store = ReviewStore(review_url).create_all()
    # MLflow migrates a fresh database on first use: once, here, before two workers could race
    celery_registry = ModelRegistry(RegistryConfig(tracking_uri=mlflow_url, artifact_location=celery.mlflow_artifact_uri))
    assert celery_registry.champion() is None
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    celery_started = time.perf_counter()
    # the instance's schema first: each worker's CLI opens the instance as it starts, and two
    # processes creating the schema of a fresh database at once collide
    instance = get_instance(celery)
    try:
        with celery_workers(env, tmp_path / "celery", broker, backend) as workers:
            celery_results = run_nightly_path(celery, instance, review_store, CELERY_CODE_LOCATION)
    finally:
        instance.dispose()
    celery_seconds = time.perf_counter() - celery_started
    # no step handed a value to another through the io manager's files under DAGSTER_HOME (the
    # assets meet in the stores), so workers on other machines need no shared Dagster storage
    handed = [p for p in (dagster_home / "storage").rglob("*") if p.is_file() and "compute_logs" not in p.parts]
    assert not handed, handed
    print(f"embedded {embedded_seconds:.1f} s, celery {celery_seconds:.1f} s")

    # ---------------- the steps ran in the two workers, not here
    step_pids, worker_names, step_keys = set(), set(), 0
    for result in celery_results:
        for event in result.all_events:
            if event.event_type_value == "STEP_START":
                step_pids.add(event.pid)
                step_keys += 1
            elif event.event_type_value == "ENGINE_EVENT" and event.event_specific_data is not None:
                meta = getattr(event.event_specific_data, "metadata", None) or {}
                if "Celery worker" in meta:
                    worker_names.add(meta["Celery worker"].value.split("@")[0])
    assert os.getpid() not in step_pids
    assert step_pids == {w["pid"] for w in workers.values()}, (step_pids, workers)
    assert worker_names == set(WORKERS)
    embedded_steps = sum(1 for r in embedded_results for e in r.all_events if e.event_type_value == "STEP_START")
    assert step_keys == embedded_steps > 10
    for result in embedded_results:
        assert {e.pid for e in result.all_events if e.event_type_value == "STEP_START"} == {os.getpid()}

    # ---------------- the same results
    # the champion: the same model from the same training data (MLflow on PostgreSQL vs SQLite)
    mine, theirs = celery_registry.champion(), ModelRegistry(default_registry_config(embedded)).champion()
    assert mine is not None and theirs is not None
    assert mine.version == theirs.version == 1
    assert mine.metrics == pytest.approx(theirs.metrics, abs=FLOAT_TOLERANCE)
    hashes = {k: v for k, v in theirs.tags.items() if "hash" in k}
    assert hashes
    hash_problem = {k: (v, mine.tags.get(k)) for k, v in hashes.items() if mine.tags.get(k) != v}

    # the review stores (PostgreSQL vs SQLite): the same cases in the same states
    def cases(store: ReviewStore) -> dict:
        return dict(sorted(store.status_counts().items()))

    embedded_store = ReviewStore.for_paths(embedded)
    try:
        assert cases(review_store) == cases(embedded_store) and cases(review_store).get("decided", 0) > 0
    finally:
        embedded_store.dispose()
        review_store.dispose()

    rows, retyped = compare_worlds(embedded, celery, warehouse_url)
    print(f"rows per table: {rows}\ncolumn types that differ between DuckDB and PostgreSQL: {retyped}")
    # the warehouse hands each table back with the types it was written with, on either engine,
    # so the training data's snapshot hash (which names column types) is the same
    assert not hash_problem, (hash_problem, retyped.get("training_set"))
    for table in ("raw_applications", "application_features", "training_set", "scored_applications", "feature_drift",
                  "score_stability", "review_cases", "human_decisions", "review_events", "fct_application_decisions",
                  "fct_review_decisions", "override_rates", "approval_funnel", "time_to_decision",
                  "portfolio_performance", "review_workload_forecast"):
        assert rows.get(table, 0) > 0, (table, rows)


# ---------------------------------------------------------------------- comparing the worlds


def _tables(warehouse, schema: str) -> set[str]:
    return set(warehouse.query(
        "select table_name from information_schema.tables where table_schema = ?", [schema])["table_name"])


def _comparable(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The columns in a form both engines agree on: numbers as Float64 rounded far below the
    tolerance, lists joined, everything else as text; rows sorted."""
    out = []
    for name in columns:
        col = frame[name]
        if col.dtype.is_numeric():
            out.append(col.cast(pl.Float64).round(12))
        elif isinstance(col.dtype, pl.List):
            out.append(col.cast(pl.List(pl.Utf8)).list.join("|"))
        else:
            text = col.cast(pl.Utf8)
            if text.dtype == pl.Utf8:
                text = text.str.replace_all(RUN_ACTOR.pattern, "dagster:<run>").str.replace_all(ISO_TIME.pattern, "<time>")
            out.append(text)
    table = pl.DataFrame(out)
    return table.sort(table.columns, nulls_last=True) if table.width else table


def _summed_over_decision_day(frame: pl.DataFrame) -> pl.DataFrame:
    """A table without its decision day: one row per decision as it is; a count per day and
    group summed over the days, its ratios and volatile figures dropped."""
    if DECISION_DAY not in frame.columns:
        return frame
    rest = frame.drop(DECISION_DAY)
    numbers = [c for c in rest.columns if rest[c].dtype.is_numeric()]
    if not numbers or "decision_id" in rest.columns:
        return rest
    keys = [c for c in rest.columns if c not in numbers and not VOLATILE.search(c)]
    counts = [c for c in numbers if not VOLATILE.search(c) and not RATIO.search(c)]
    return rest.group_by(keys).agg([pl.col(c).sum() for c in counts])


def test_a_run_that_crosses_midnight_compares_equal_and_a_changed_count_does_not():
    before_midnight = pl.DataFrame({
        DECISION_DAY: [date(2026, 11, 27)] * 3, "reviewer": ["ben", "cleo", "cleo"],
        "policy_rule": ["review:grey_zone"] * 3, "verdicts": [1, 2, 1], "overrides": [1, 0, 0],
        "override_rate": [1.0, 0.0, 0.0], "p50_hours": [0.1, 0.2, 0.3]})
    # the same decisions, cleo's first two after midnight: three rows grouped differently
    across_midnight = pl.DataFrame({
        DECISION_DAY: [date(2026, 11, 27), date(2026, 11, 28), date(2026, 11, 28)],
        "reviewer": ["ben", "cleo", "cleo"], "policy_rule": ["review:grey_zone"] * 3,
        "verdicts": [1, 1, 2], "overrides": [1, 0, 0], "override_rate": [1.0, 0.0, 0.0],
        "p50_hours": [0.4, 0.5, 0.6]})

    def comparable(frame: pl.DataFrame) -> pl.DataFrame:
        summed = _summed_over_decision_day(frame)
        return _comparable(summed, summed.columns)

    assert comparable(before_midnight).equals(comparable(across_midnight))
    assert comparable(before_midnight).columns == ["reviewer", "policy_rule", "verdicts", "overrides"]
    one_more_override = across_midnight.with_columns(overrides=pl.Series([1, 1, 0]))
    assert not comparable(before_midnight).equals(comparable(one_more_override))
    # one row per decision keeps its rows; only the day goes
    per_decision = before_midnight.with_columns(decision_id=pl.Series(["d1", "d2", "d3"]))
    assert _summed_over_decision_day(per_decision).height == 3


def compare_worlds(embedded: AiosPaths, celery: AiosPaths, warehouse_url: str) -> tuple[dict[str, int], dict]:
    """Every table and view of the two warehouses: the same names, the same rows, the same
    values in every column but the volatile ones. Returns rows per table and the columns
    whose types differ between the engines (table -> column -> (DuckDB, PostgreSQL))."""
    left, right = Warehouse(embedded.warehouse), PostgresWarehouse(warehouse_url)
    assert not celery.warehouse.exists(), "the Celery world wrote a DuckDB file"
    names = _tables(left, "main")
    assert names == _tables(right, "public")
    problems, rows, retyped = [], {}, {}
    for name in sorted(names):
        a, b = left.read_table(name), right.read_table(name)
        rows[name] = a.height
        a, b = _summed_over_decision_day(a), _summed_over_decision_day(b)
        if a.height != b.height:
            problems.append(f"{name}: {a.height} rows embedded, {b.height} on Celery")
            continue
        if set(a.columns) != set(b.columns):
            problems.append(f"{name}: columns {sorted(set(a.columns) ^ set(b.columns))} in one world only")
        types = {c: (str(a.schema[c]), str(b.schema[c])) for c in a.columns if c in b.columns and a.schema[c] != b.schema[c]}
        if types:
            retyped[name] = types
        columns = [c for c in a.columns if c in b.columns and not VOLATILE.search(c)]
        ca, cb = _comparable(a, columns), _comparable(b, columns)
        for column in columns:
            x, y = ca[column], cb[column]
            if x.dtype == pl.Float64 and y.dtype == pl.Float64:
                same = ((x - y).abs() <= FLOAT_TOLERANCE) | (x.is_null() & y.is_null())
            else:
                same = (x == y) | (x.is_null() & y.is_null())
            if not same.fill_null(False).all():
                first = (~same.fill_null(False)).arg_true()[0]
                problems.append(f"{name}.{column}: {x[first]!r} embedded vs {y[first]!r} on Celery")
    assert not problems, "\n".join(problems)
    return rows, retyped
