"""The ``aios`` command: generate data, run the demo, and operate the platform."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
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
    paths.check_writable(extra=[home])
    contract = load_contract(contract_path())
    print(f"AIOS demo in {paths.home}")

    needed = contract.performance_window_days + 30
    if args.days < needed:
        print(
            f"error: the demo needs at least {needed} days: outcomes mature after "
            f"{contract.performance_window_days} days and the model needs matured days to train and to validate on",
            file=sys.stderr,
        )
        return 2
    if not _landing_span(paths.landing, contract.applications):
        print(f"[1/5] generating the synthetic lender: {args.days} days x {args.per_day} applications")
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
        print(f"[1/5] landing files already under {paths.landing}; using them")

    try:
        span = _landing_span(paths.landing, contract.applications)
        assert span is not None
        print(f"[2/5] ingesting applications and building features ({span[0]} .. {span[1]})")
        run_job("ingest_applications", first_day=span[0], last_day=span[1])
        outcome_span = _landing_span(paths.landing, contract.outcomes)
        if outcome_span:
            print(f"[3/5] ingesting matured loan outcomes ({outcome_span[0]} .. {outcome_span[1]})")
            run_job("ingest_loan_outcomes", first_day=outcome_span[0], last_day=outcome_span[1])
        print("[4/5] training the credit-risk model, registering it in MLflow, running the promotion gate")
        run_job("retrain_credit_model")
        print(f"[5/5] scoring every application with the champion and routing it through the policy")
        run_job("score_applications", first_day=span[0], last_day=span[1])
        _demo_review(paths, span)
        print("[analytics] dbt marts (decisions, override rates, time to decision, approval funnel, override "
              "outcomes, portfolio performance) and the workload, expected-loss and override forecasts")
        run_job("build_analytics")
        if args.drift_from:
            _demo_monitoring(paths, span, date.fromisoformat(args.drift_from), args, contract.performance_window_days)
    except JobFailedError as exc:
        print(f"\nDEMO FAILED: {exc}", file=sys.stderr)
        return 1

    print_summary(paths, home, time.perf_counter() - started)
    return 0


DEMO_SIMULATED_REVIEWS = 800


def _demo_review(paths, span: tuple[date, date]) -> None:
    """Publish referrals to the review store, let simulated underwriters work part of the
    queue, and copy their decisions back, so the analytics have human decisions to read."""
    from aios_pipelines.defs.runner import run_job
    from aios_pipelines.review.store import ReviewStore
    from aios_pipelines.synthetic.reviewers import simulate_reviews

    print(f"[review] publishing referrals to the review store ({paths.review_store})")
    run_job("publish_review_cases", first_day=span[0], last_day=span[1])
    done = simulate_reviews(ReviewStore.for_paths(paths).create_all(), max_cases=DEMO_SIMULATED_REVIEWS)
    print(
        f"  SIMULATION: demo underwriters decided {done['decided']} cases through the task API "
        f"({done['second_reviews']} second reviews, {done['info_requested']} waiting for information); "
        "the rest stay open in the inbox"
    )
    run_job("copy_review_decisions")
    run_job("record_audit_checkpoint")


def _demo_monitoring(paths, span: tuple[date, date], drift_from: date, args, window_days: int) -> None:
    """Monitoring sees the drift, a retraining trigger fires, the simulated clock runs until
    the drifted applications' outcomes have matured, and a challenger trained on them meets
    the promotion gate (see aios_pipelines/demo_drift.py)."""
    from aios_pipelines.demo_drift import demo_landing_writer, run_drift_scenario
    from aios_pipelines.synthetic.generator import DriftSpec

    writer = demo_landing_writer(
        paths.landing, start=DEMO_START, seed=DEMO_SEED, per_day=args.per_day,
        drift=DriftSpec(start=drift_from, kind=args.drift_kind), performance_window_days=window_days,
    )
    run_drift_scenario(paths, span, drift_from, window_days, writer)


def _print_monitoring_summary(warehouse, paths) -> None:
    from aios_pipelines.monitoring.snapshot import day_ranges, drift_by_day, drift_status

    days = drift_status(drift_by_day(warehouse))
    if days.is_empty():
        return
    red = days.filter(days["status"] == "error")["day"].to_list()
    amber = days.filter(days["status"] == "warn")["day"].to_list()
    print(f"  drift monitored on {days.height} days ({days['day'].min()} .. {days['day'].max()}); "
          f"turned red on {day_ranges(red)}" + (f"; amber on {day_ranges(amber)}" if amber else ""))
    print(f"  risk report: {paths.reports / 'risk_report.html'}  (drift reports per day in {paths.reports / 'drift'})")
    from aios_pipelines.demo_drift import retraining_story

    story = retraining_story(_registry(paths), first_drift_day=min(red) if red else None) if paths.mlflow_db.exists() else None
    for line in story.lines() if story else []:
        print(line)


def print_summary(paths, home: Path, seconds: float) -> None:
    from aios_pipelines.storage.warehouse import configured_warehouse

    warehouse = configured_warehouse(paths)
    print(f"\nSummary ({seconds:.0f}s)")
    tables = ["raw_applications", "quarantined_applications", "application_features", "raw_loan_outcomes",
              "quarantined_loan_outcomes", "training_set", "scored_applications"]
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
    _print_model_summary(paths)
    if warehouse.table_exists("scored_applications"):
        mix = warehouse.query(
            "select case when decision_source = 'fallback_rules' then 'fallback (' || action || ')' else action end "
            "as decision, count(*) as n from scored_applications group by 1 order by 2 desc"
        )
        total = max(sum(mix["n"]), 1)
        print("  decision mix: " + ", ".join(f"{d} {n:,} ({n / total:.0%})" for d, n in mix.iter_rows()))
    from aios_pipelines.analytics.summary import decision_flow_summary

    print(decision_flow_summary(warehouse), end="")
    _print_monitoring_summary(warehouse, paths)
    print("\nWhere to look")
    print(f"  Dagster UI:  DAGSTER_HOME={home} .venv/bin/dagster dev -w workspace.yaml   (or: make dev)")
    if warehouse.engine == "duckdb":
        print(f"  warehouse:   {paths.warehouse}   (duckdb -readonly, or notebooks/)")
    else:
        print(f"  warehouse:   {warehouse.path}   (PostgreSQL: psql, or any SQL client)")
    print(f"  landing:     {paths.landing}   (drop a file into a day folder; the sensor ingests it)")
    print(f"  reports:     {paths.reports}")
    print(f"  MLflow UI:   .venv/bin/mlflow ui --backend-store-uri {paths.mlflow_tracking_uri}")
    print("  a decision:  .venv/bin/aios explain <application_id>")
    if paths.review_store.exists():
        from aios_pipelines.review.store import ReviewStore

        counts = ReviewStore.for_paths(paths).status_counts()
        print(f"  review inbox: {counts.get('open', 0):,} open cases; `.venv/bin/aios users add me --role underwriter` "
              "prints a token, `make dev` serves the inbox on http://127.0.0.1:8000")


def _registry(paths):
    from aios_pipelines.modeling.registry import ModelRegistry, configured_registry_config

    return ModelRegistry(configured_registry_config(paths))


def _print_model_summary(paths) -> None:
    if not paths.mlflow_db.exists():
        return
    registry = _registry(paths)
    champion = registry.champion()
    versions = registry.list_versions()
    if not versions:
        return
    latest = versions[0]
    if champion is not None:
        print(
            f"  champion model: credit_risk_model v{champion.version}, out-of-time AUC "
            f"{champion.metrics.get('auc', float('nan')):.3f}, Gini {champion.metrics.get('gini', float('nan')):.3f}, "
            f"KS {champion.metrics.get('ks', float('nan')):.3f}"
        )
    if champion is None or latest.version != champion.version:
        print(f"  latest version v{latest.version}: {latest.tags.get('gate_decision', '')} {latest.tags.get('gate_reason', '')}")


def cmd_paths(args: argparse.Namespace) -> int:
    from aios_pipelines.defs.instance import dagster_home

    paths = _paths()
    for name in ("home", "landing", "warehouse", "review_store", "mlflow_db", "mlflow_artifacts", "reports"):
        print(f"{name:<17} {getattr(paths, name)}")
    print(f"{'dagster_home':<17} {dagster_home(paths)}")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    """Start the Dagster UI (webserver, daemon, code server) and the review service."""
    import signal
    import subprocess

    from aios_pipelines.review.serving import InsecureBindError, decide_bind

    try:
        decide_bind(args.host, allow_insecure=args.allow_insecure_bind)
    except InsecureBindError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from aios_pipelines.defs.instance import dagster_home
    from aios_pipelines.settings import PROJECT_ROOT

    paths = _paths()
    env = dict(os.environ, DAGSTER_HOME=str(dagster_home(paths)), AIOS_HOME=str(paths.home))
    bin_dir = Path(sys.executable).parent
    dagster = [str(bin_dir / "dagster"), "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", args.host,
               "-p", str(args.port)]
    review = [str(bin_dir / "aios"), "review", "serve", "--host", args.host, "--port", str(args.review_port)]
    if args.allow_insecure_bind:
        review.append("--allow-insecure-bind")
    print(f"Dagster UI      http://{args.host}:{args.port}   (DAGSTER_HOME={env['DAGSTER_HOME']})", flush=True)
    print(f"review service  http://{args.host}:{args.review_port}   (aios users add NAME --role underwriter)", flush=True)
    children = [
        subprocess.Popen(dagster, env=env, cwd=PROJECT_ROOT, start_new_session=True),
        subprocess.Popen(review, env=env, cwd=PROJECT_ROOT, start_new_session=True),
    ]
    try:
        while all(child.poll() is None for child in children):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
    return max((child.returncode or 0) for child in children)


def cmd_model(args: argparse.Namespace) -> int:
    from aios_pipelines.modeling.registry import RegistryError

    registry = _registry(_paths())
    actor = getattr(args, "actor", None) or os.environ.get("USER") or "operator"  # list and history take no --actor
    try:
        if args.model_command == "list":
            versions = registry.list_versions()
            if not versions:
                print("no model versions registered yet: run `aios demo` or the retrain_credit_model job")
                return 0
            print(f"{'version':>7}  {'aliases':<20} {'oot auc':>8} {'brier':>7}  {'created (UTC)':<19}  gate")
            for v in versions:
                print(
                    f"{v.version:>7}  {','.join(v.aliases) or '-':<20} {v.metrics.get('auc', float('nan')):>8.4f} "
                    f"{v.metrics.get('brier', float('nan')):>7.4f}  {v.created_at:%Y-%m-%d %H:%M:%S}  "
                    f"{v.status_note[:100]}"
                )
        elif args.model_command == "promote":
            info = registry.promote(args.version, actor=actor, reason=args.reason)
            print(f"credit_risk_model v{info.version} is now the champion ({actor}: {args.reason})")
        elif args.model_command == "rollback":
            info = registry.rollback(actor=actor, reason=args.reason)
            print(f"rolled back: credit_risk_model v{info.version} is the champion again ({actor}: {args.reason})")
        elif args.model_command == "history":
            for event in registry.alias_history():
                print(f"{event['at']}  {event['alias']:<10} {event['action']:<9} "
                      f"v{event['from_version']} -> v{event['to_version']}  {event['actor']}: {event['reason']}")
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_automation(args: argparse.Namespace) -> int:
    from aios_pipelines.policy import automation_switch

    paths = _paths()
    who = getattr(args, "who", None) or os.environ.get("USER") or ""
    try:
        if args.automation_command == "pause":
            state = automation_switch.pause(paths.control, who, args.reason)
        elif args.automation_command == "resume":
            state = automation_switch.resume(paths.control, who, args.reason)
        else:
            state = automation_switch.status(paths.control)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if state.paused:
        print(f"automation PAUSED by {state.changed_by} at {state.changed_at}: {state.reason}")
        print("every new application is routed to human review until `aios automation resume`")
    else:
        since = f" (resumed by {state.changed_by} at {state.changed_at}: {state.reason})" if state.changed_by else ""
        print(f"automation on{since}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from aios_pipelines.decision_record import DecisionRecordError, decision_record, format_decision_record, record_as_json

    paths = _paths()
    try:
        record = decision_record(paths, args.application_id)
    except DecisionRecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(record_as_json(record) if args.json else format_decision_record(record), end="")
    return 0


def _review_store(store_url: str | None):
    from aios_pipelines.review.store import ReviewStore

    store = ReviewStore(store_url) if store_url else ReviewStore.for_paths(_paths())
    return store.create_all()


def cmd_review(args: argparse.Namespace) -> int:
    from aios_pipelines.review.app import serve
    from aios_pipelines.review.serving import InsecureBindError, decide_bind

    try:
        bind = decide_bind(args.host, certfile=args.tls_certfile, keyfile=args.tls_keyfile,
                           allow_insecure=args.allow_insecure_bind)
    except InsecureBindError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if bind.warning:
        print(bind.warning, file=sys.stderr, flush=True)
    store = _review_store(args.store_url)
    print(f"AIOS review service on {bind.scheme}://{args.host}:{args.port}  (store: {store!r}; API reference at /docs)",
          flush=True)
    serve(store, host=args.host, port=args.port, ssl_certfile=bind.certfile, ssl_keyfile=bind.keyfile)
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    from aios_pipelines.review.store import ReviewError

    store = _review_store(args.store_url)
    actor = os.environ.get("USER") or "cli"
    try:
        user, token = store.add_user(args.name, args.role, actor=f"cli:{actor}")
    except ReviewError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(f"created {user.role} {user.name}. Token (shown once, only its hash is stored):")
    print(token)
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    from aios_pipelines.governance.retention import RetentionError, RetentionPolicy, apply_retention
    from aios_pipelines.ingestion.contract import load_contract
    from aios_pipelines.settings import contract_path
    from aios_pipelines.storage.warehouse import configured_warehouse

    try:
        policy = RetentionPolicy.from_settings(args.months, args.override_reason)
    except RetentionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = _paths()
    try:
        report = apply_retention(policy, load_contract(contract_path()), configured_warehouse(paths),
                                 _review_store(args.store_url), dry_run=args.dry_run,
                                 actor=f"cli:{os.environ.get('USER') or 'cli'}")
    except RetentionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0


def _recorded_checkpoints(paths):
    """Checkpoints from the warehouse table and from Dagster's event log, where they exist."""
    from aios_pipelines.review.checkpoints import Checkpoint
    from aios_pipelines.storage.warehouse import configured_warehouse

    found = []
    warehouse = configured_warehouse(paths)
    if warehouse.table_exists("audit_checkpoints"):
        for seq, head, at in warehouse.query(
            "select head_seq, head_hash, recorded_at from audit_checkpoints where chain_verified"
        ).iter_rows():
            found.append(Checkpoint(int(seq), str(head), str(at), "warehouse"))
    from aios_pipelines.defs.instance import dagster_home

    if (dagster_home(paths) / "history").exists():
        import dagster as dg

        from aios_pipelines.defs.instance import get_instance

        instance = get_instance(paths)
        records, cursor, more = [], None, True
        while more:  # Dagster serves at most 10,000 event records per call
            page = instance.fetch_materializations(dg.AssetKey("audit_checkpoint"), limit=10_000, cursor=cursor)
            records.extend(page.records)
            cursor, more = page.cursor, page.has_more
        for record in records:
            metadata = record.asset_materialization.metadata if record.asset_materialization else {}
            if "head_seq" in metadata and metadata.get("chain_verified") and metadata["chain_verified"].value:
                found.append(
                    Checkpoint(int(metadata["head_seq"].value), str(metadata["head_hash"].value),
                               f"{record.timestamp:.0f}", "dagster run " + record.run_id[:8])
                )
    return found


def cmd_audit(args: argparse.Namespace) -> int:
    from aios_pipelines.review.checkpoints import verify_audit

    paths = _paths()
    store = _review_store(args.store_url)
    checkpoints = _recorded_checkpoints(paths)
    report = verify_audit(store, [c for c in checkpoints])
    if report.ok:
        print(f"audit log verifies: {report.entries} entries, checked against {report.checkpoints_checked} checkpoint(s)")
        return 0
    print(f"AUDIT LOG DOES NOT VERIFY (first bad entry: {report.first_bad_seq})", file=sys.stderr)
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1


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
    dev.add_argument("--review-port", type=int, default=8000)
    dev.add_argument("--allow-insecure-bind", action="store_true",
                     help="let the review service serve plain HTTP on a non-loopback --host")
    dev.set_defaults(func=cmd_dev)

    model = sub.add_parser("model", help="the model registry: list, promote, rollback, history")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    model_sub.add_parser("list", help="every registered version with its metrics, aliases and gate decision")
    promote = model_sub.add_parser("promote", help="make VERSION the champion (recorded with who and why)")
    promote.add_argument("version", type=int)
    promote.add_argument("--reason", required=True)
    promote.add_argument("--actor")
    rollback = model_sub.add_parser("rollback", help="move the champion back to the previous champion")
    rollback.add_argument("--reason", required=True)
    rollback.add_argument("--actor")
    model_sub.add_parser("history", help="who moved the champion alias, when and why")
    model.set_defaults(func=cmd_model)

    automation = sub.add_parser("automation", help="the stop switch for automatic decisions")
    automation_sub = automation.add_subparsers(dest="automation_command", required=True)
    for name, text in (("pause", "route every new application to human review"), ("resume", "let the policy decide again")):
        cmd = automation_sub.add_parser(name, help=text)
        cmd.add_argument("--reason", required=True)
        cmd.add_argument("--who", help="who is switching (default: $USER)")
    automation_sub.add_parser("status", help="is automation paused, by whom and why")
    automation.set_defaults(func=cmd_automation)

    explain = sub.add_parser("explain", help="the full decision record of one application")
    explain.add_argument("application_id")
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.set_defaults(func=cmd_explain)

    review = sub.add_parser("review", help="the review service people and systems use")
    review_sub = review.add_subparsers(dest="review_command", required=True)
    serve = review_sub.add_parser("serve", help="run the review web app and task API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--store-url", help="SQLAlchemy URL of the review store (default: SQLite under $AIOS_HOME)")
    serve.add_argument("--tls-certfile", help="TLS certificate (PEM) to serve HTTPS; needed on a non-loopback --host")
    serve.add_argument("--tls-keyfile", help="the certificate's private key (PEM)")
    serve.add_argument("--allow-insecure-bind", action="store_true",
                       help="serve plain HTTP on a non-loopback --host (only behind a proxy that terminates TLS)")
    review.set_defaults(func=cmd_review)

    users = sub.add_parser("users", help="reviewer and system accounts of the review service")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="create a user and print its token once")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["underwriter", "senior_underwriter", "risk_analyst", "admin"])
    add.add_argument("--store-url", help="SQLAlchemy URL of the review store (default: SQLite under $AIOS_HOME)")
    users.set_defaults(func=cmd_users)

    audit = sub.add_parser("audit", help="the review store's tamper-evident audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="verify the hash chain and every recorded checkpoint")
    verify.add_argument("--store-url", help="SQLAlchemy URL of the review store (default: SQLite under $AIOS_HOME)")
    audit.set_defaults(func=cmd_audit)

    retention = sub.add_parser("retention", help="remove applicants' personal fields after the retention period")
    retention_sub = retention.add_subparsers(dest="retention_command", required=True)
    apply = retention_sub.add_parser(
        "apply", help="remove the personal fields of older applications from the warehouse and the review store")
    apply.add_argument("--dry-run", action="store_true", help="say what would be removed, change nothing")
    apply.add_argument("--months", type=int,
                       help="the retention period (default: $AIOS_RETENTION_MONTHS, else 25, the legal minimum)")
    apply.add_argument("--override-reason",
                       help="why a period below the legal minimums applies (recorded in the audit log)")
    apply.add_argument("--store-url", help="SQLAlchemy URL of the review store (default: SQLite under $AIOS_HOME)")
    retention.set_defaults(func=cmd_retention)

    paths = sub.add_parser("paths", help="print where this data directory keeps each store")
    paths.set_defaults(func=cmd_paths)
    return parser


def main(argv: list[str] | None = None) -> int:
    from aios_pipelines.settings import DataDirectoryError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DataDirectoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
