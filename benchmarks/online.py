"""Online decisions benchmark: ``POST /api/decisions`` over loopback against the bare cost of
the same work in one process.

    .venv/bin/python benchmarks/run.py --only online
    .venv/bin/python -m benchmarks.online --requests 600 --keep

Set-up (not timed): a synthetic lender's applications, a LightGBM champion trained on them
and registered in a fresh MLflow registry under ``benchmarks/.work/online_*``, a SQLite
review store with one API user, and a pool of new applications (one per request, each id
used once: an application is decided online only once).

Measured:

* ``http_<c>_clients``: the review service under uvicorn in its own process on 127.0.0.1
  (one worker, as ``aios review serve`` runs it); ``c`` client threads in this process, each
  with its own keep-alive ``httpx.Client``, send one application per request until the
  level's requests are done. Per request: the round trip; per level: decisions/s (requests
  / wall seconds), p50 and p99 latency. The service does all of its work per request:
  bearer-token check, contract validation (``validate_rows``), ``build_features``,
  ``score_applications`` with the champion (reasons where the policy needs them), the
  policy, and one SQLite write transaction storing the decision, its audit entry and, for a
  referral, the review case.
* ``inprocess_decide``: ``OnlineDecisions.decide`` in this process (validation, features,
  scoring, policy: the batch path's functions on one row), no HTTP, no store.
* ``bare_one_row``: the floor: ``build_features`` on one typed row + ``Booster.predict`` on
  its one-row matrix + ``evaluate`` (the one-application policy function). No validation,
  no reasons, no storage.

Ratios: p50 latency at each level / ``bare_one_row`` median, p50 at one client /
``inprocess_decide`` median, and (bare decisions per second) / (HTTP decisions per second).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import load_average, machine_info, make_work_dir, record_results  # noqa: E402

BENCHMARK = "online"
LEVELS = (1, 4, 16)
DEFAULT_REQUESTS = 1_500  # per concurrency level
QUICK_REQUESTS = 300
WARMUP_REQUESTS = 40
BARE_REPEAT = 1_000
TRAIN_START = dt.date(2026, 4, 1)
TRAIN_DAYS = 30
TRAIN_PER_DAY = 100
POOL_START = dt.date(2026, 6, 1)
USER = "los-bench"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- set-up


def _registry(work: Path):
    from aios_pipelines.modeling.registry import ModelRegistry, RegistryConfig

    return ModelRegistry(RegistryConfig(
        tracking_uri=f"sqlite:///{(work.resolve() / 'mlflow' / 'mlflow.db').as_posix()}",
        artifact_location=(work.resolve() / "mlflow" / "artifacts").as_uri(),
    ))


def prepare(work: Path, pool_size: int, seed: int = 42) -> dict[str, Any]:
    """Train and register the champion, create the review store and its user, write the
    request pool (``pool.jsonl``); returns what the run needs."""
    import polars as pl

    from aios_pipelines.features.build import build_features, feature_definition
    from aios_pipelines.ingestion.contract import load_contract
    from aios_pipelines.modeling.training import FeatureSpec, TrainingConfig, train_credit_model
    from aios_pipelines.policy.policy import load_policy
    from aios_pipelines.review.store import ReviewStore
    from aios_pipelines.settings import DEFAULT_CONTRACT_PATH
    from aios_pipelines.synthetic.generator import generate_applications

    contract = load_contract(DEFAULT_CONTRACT_PATH)
    policy = load_policy()
    frames, truths = [], []
    for i in range(TRAIN_DAYS):
        apps, truth = generate_applications(TRAIN_START + dt.timedelta(days=i), TRAIN_PER_DAY, seed=seed + i)
        frames.append(apps)
        truths.append(truth)
    training = build_features(pl.concat(frames), contract.applications).join(
        pl.concat(truths).select("application_id", "defaulted"), on="application_id")
    definition = feature_definition(contract.applications)
    spec = FeatureSpec(features=list(definition.features), categorical=list(definition.categorical),
                       monotone=dict(definition.monotone))
    trained = train_credit_model(training, spec, TrainingConfig(oot_days=5))
    registry = _registry(work)
    info = registry.log_and_register(
        trained.booster, metrics={"auc": 0.7}, params={"best_iteration": trained.best_iteration},
        feature_spec=spec.as_dict(), feature_ranges={k: list(v) for k, v in trained.feature_ranges.items()},
        contract_fingerprint=contract.fingerprint, policy_version=policy.version,
        data_snapshot_hash=trained.data_hash, dagster_run_id=None, artifacts={},
        oot_window=(trained.oot_start.isoformat(), trained.oot_end.isoformat()),
    )
    registry.promote(info.version, actor="benchmark", reason="benchmark champion")

    store = ReviewStore(f"sqlite:///{(work / 'review.sqlite').as_posix()}").create_all()
    _, token = store.add_user(USER, "underwriter", actor="benchmark")
    store.dispose()

    per_day = 1_000
    pool = []
    for i in range((pool_size + per_day - 1) // per_day):
        apps, _ = generate_applications(POOL_START + dt.timedelta(days=i), per_day, seed=seed + 1000 + i)
        pool.extend(apps.to_dicts())
    with (work / "pool.jsonl").open("w", encoding="utf-8") as out:
        for row in pool[:pool_size]:
            out.write(json.dumps({k: (v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v)
                                  for k, v in row.items()}) + "\n")
    return {"token": token, "model_version": info.version, "policy_version": policy.version,
            "best_iteration": trained.best_iteration}


def _online(work: Path, check_interval_seconds: float = 5.0):
    from aios_pipelines.decisioning.online import ChampionHolder, OnlineDecisions, load_reason_catalog
    from aios_pipelines.ingestion.contract import load_contract
    from aios_pipelines.policy.policy import load_policy
    from aios_pipelines.settings import DEFAULT_CONTRACT_PATH

    control = work / "control"
    control.mkdir(exist_ok=True)
    return OnlineDecisions(load_contract(DEFAULT_CONTRACT_PATH), load_policy(), load_reason_catalog(DEFAULT_CONTRACT_PATH),
                           ChampionHolder(_registry(work), check_interval_seconds=check_interval_seconds),
                           control_dir=control)


def serve(work: Path, port: int) -> None:
    """The service as ``aios review serve`` runs it (one uvicorn worker), over the work folder."""
    from aios_pipelines.review.app import serve as serve_app
    from aios_pipelines.review.store import ReviewStore

    store = ReviewStore(f"sqlite:///{(work / 'review.sqlite').as_posix()}")
    serve_app(store, host="127.0.0.1", port=port, online=_online(work))


# ---------------------------------------------------------------------------- measuring


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[index]


def _load(base: str, token: str, bodies: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    """Send every body once, from ``clients`` threads; latencies and wall time."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    lock = threading.Lock()
    queue = iter(bodies)
    latencies: list[float] = []
    failures: list[str] = []
    actions: dict[str, int] = {}

    def worker() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=60.0) as client:
            while True:
                with lock:
                    body = next(queue, None)
                if body is None:
                    return
                began = time.perf_counter()
                response = client.post("/api/decisions", json=body)
                elapsed = time.perf_counter() - began
                with lock:
                    if response.status_code == 201:
                        latencies.append(elapsed)
                        action = response.json()["action"]
                        actions[action] = actions.get(action, 0) + 1
                    else:
                        failures.append(f"{response.status_code}: {response.text[:200]}")

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return {
        "label": f"POST /api/decisions, {clients} concurrent client(s) on 127.0.0.1",
        "rows": len(latencies),
        "seconds": round(wall, 3),
        "rows_per_second": round(len(latencies) / wall, 1),
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
        "actions": actions,
    }


def _inprocess(work: Path, bodies: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    """``OnlineDecisions.decide`` and the bare floor, one application at a time, in this process."""
    import polars as pl

    from aios_pipelines.features.build import build_features
    from aios_pipelines.modeling.training import feature_matrix
    from aios_pipelines.policy.evaluate import evaluate

    online = _online(work)
    snapshot = online.champion.current()
    model = snapshot.model
    assert model is not None, snapshot.fallback_reason
    sample = bodies[:repeat]
    typed = [online.validate(b, now=dt.datetime.now(dt.timezone.utc)) for b in sample[:200]]  # inputs, untimed

    decide_seconds = []
    for body in sample:
        began = time.perf_counter()
        online.decide(body)
        decide_seconds.append(time.perf_counter() - began)

    bare_seconds = []
    dataset, policy, booster, spec = online.dataset, online.policy, model.booster, model.feature_spec
    for i in range(repeat):
        row: pl.DataFrame = typed[i % len(typed)]
        application = row.to_dicts()[0]
        began = time.perf_counter()
        features = build_features(row, dataset)
        pd = float(booster.predict(feature_matrix(features, spec))[0])
        evaluate(policy, application, pd)
        bare_seconds.append(time.perf_counter() - began)

    def stage(label: str, seconds: list[float]) -> dict[str, Any]:
        median = statistics.median(seconds)
        return {"label": label, "rows": len(seconds), "seconds": round(sum(seconds), 3),
                "rows_per_second": round(1 / median, 1), "p50_ms": round(median * 1000, 3),
                "p99_ms": round(_percentile(seconds, 0.99) * 1000, 3)}

    return {
        "inprocess_decide": stage("OnlineDecisions.decide on one application (validate, features, "
                                  "score_applications, policy), no HTTP, no store", decide_seconds),
        "bare_one_row": stage("build_features on one row + Booster.predict on one row + evaluate (policy)",
                              bare_seconds),
    }


def run(requests: int, work: Path) -> dict[str, Any]:
    total = (requests + WARMUP_REQUESTS) * len(LEVELS)
    _log(f"preparing: training the champion, review store, {total:,} applications in the pool ...")
    facts = prepare(work, total)
    bodies = [json.loads(line) for line in (work / "pool.jsonl").read_text(encoding="utf-8").splitlines()]

    port = _free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")) if p)
    server_log = (work / "server.log").open("w", encoding="utf-8")
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.online", "serve", "--work", str(work), "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=server_log, text=True)
    stages: dict[str, dict[str, Any]] = {}
    try:
        import httpx

        base = f"http://127.0.0.1:{port}"
        for _ in range(1200):  # up to 2 minutes for the server to start and load the champion
            if server.poll() is not None:
                raise RuntimeError(f"the service exited: {(work / 'server.log').read_text(encoding='utf-8')[-2000:]}")
            try:
                if httpx.get(base + "/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the service did not start")
        offset = 0
        for clients in LEVELS:
            _load(base, facts["token"], bodies[offset:offset + WARMUP_REQUESTS], clients)
            offset += WARMUP_REQUESTS
            _log(f"  {clients:>2} client(s): {requests:,} requests ...")
            stages[f"http_{clients}_clients"] = _load(base, facts["token"], bodies[offset:offset + requests], clients)
            offset += requests
            result = stages[f"http_{clients}_clients"]
            _log(f"     {result['rows_per_second']:,} decisions/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        server_log.close()
    _log("in-process: OnlineDecisions.decide and the bare floor ...")
    stages.update(_inprocess(work, bodies, BARE_REPEAT))

    bare_ms = stages["bare_one_row"]["p50_ms"]
    ratios = {f"p50_{c}_clients_vs_bare": round(stages[f"http_{c}_clients"]["p50_ms"] / bare_ms, 1) for c in LEVELS}
    ratios["p50_1_client_vs_inprocess_decide"] = round(stages["http_1_clients"]["p50_ms"] / stages["inprocess_decide"]["p50_ms"], 2)
    ratios["inprocess_decide_vs_bare"] = round(stages["inprocess_decide"]["p50_ms"] / bare_ms, 1)
    for c in LEVELS:
        ratios[f"bare_rate_vs_http_{c}_clients_rate"] = round(stages["bare_one_row"]["rows_per_second"]
                                                                / stages[f"http_{c}_clients"]["rows_per_second"], 1)
    notes = [
        f"{name}: {s['rows_per_second']:,} decisions/s, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms"
        for name, s in stages.items()
    ] + [
        "Ratios are ours / the bare floor (above 1: slower than the floor). The floor skips what the service "
        "must do: contract validation, reasons (TreeSHAP for declines and referrals), data-quality flags, the "
        "token check, JSON, HTTP and the SQLite write of the decision, its audit entry and its review case.",
        f"Champion v{facts['model_version']} ({facts['best_iteration']} trees), policy {facts['policy_version']}; "
        "the server and the client threads share the machine's cores.",
    ]
    params = {"requests_per_level": requests, "warmup_per_level": WARMUP_REQUESTS, "levels": list(LEVELS),
              "bare_repeat": BARE_REPEAT, "uvicorn_workers": 1}
    return {"stages": stages, "ratios": ratios, "notes": notes, "params": params}


def record_online(argv: list[str] | None, machine: dict[str, Any] | None = None, *, quick: bool = False,
                  requests: int | None = None, results_dir: Path | None = None, keep: bool = False) -> None:
    """Run the benchmark and merge its entry into the day's results (key ``online``)."""
    requests = requests or (QUICK_REQUESTS if quick else DEFAULT_REQUESTS)
    machine = machine or machine_info()
    _log(f"online benchmark: {requests:,} requests at each of {LEVELS} concurrent clients; {machine['cores']} cores, "
         f"load average {load_average()}")
    work = make_work_dir(BENCHMARK)
    before = load_average()
    started = dt.datetime.now().astimezone()
    try:
        outcome = run(requests, work)
    finally:
        if keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    key = BENCHMARK if requests == DEFAULT_REQUESTS else f"{BENCHMARK}_requests_{requests}"
    entry = {
        "benchmark": BENCHMARK,
        "recorded_at": started.isoformat(timespec="seconds"),
        "command": " ".join(["benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "params": outcome["params"],
        "machine": machine,
        "load_average": {"before": before, "after": load_average()},
        "stages": outcome["stages"],
        "ratios": outcome["ratios"],
        "notes": outcome["notes"],
    }
    kwargs = {"results_dir": results_dir} if results_dir is not None else {}
    json_path, md_path = record_results(key, entry, day=started.date(), **kwargs)
    print(f"online decisions ({key}):")
    for note in outcome["notes"][: len(outcome["stages"])]:
        print(f"  {note}")
    for name, value in outcome["ratios"].items():
        print(f"  {name}: {value}")
    print(f"results: {json_path} and {md_path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    serve_cmd = sub.add_parser("serve", help="(internal) run the service over a prepared work folder")
    serve_cmd.add_argument("--work", type=Path, required=True)
    serve_cmd.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", type=int, default=None, help=f"requests per level (default {DEFAULT_REQUESTS:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_REQUESTS} requests per level")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.work, args.port)
        return 0
    record_online(argv, quick=args.quick, requests=args.requests, keep=args.keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
