"""Running the platform's jobs from the command line (``aios demo`` and friends).

Runs execute in this process against the persistent instance, so they appear in the Dagster
UI afterwards exactly as if launched from it.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date

import dagster as dg

from aios_pipelines.defs.instance import get_instance

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# Which process on which machine runs a run: lets the next run tell a killed one from a live one.
PID_TAG = "aios/pid"
HOST_TAG = "aios/host"
_UNFINISHED = (
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)
RECLAIM_INTERVAL_SECONDS = 5.0


class JobFailedError(RuntimeError):
    pass


def user_error_message(error) -> str:
    """The message of the user's exception, not of the Dagster errors wrapped around it."""
    while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    return error.message.strip()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def reclaim_abandoned_runs(
    instance: dg.DagsterInstance, progress: Callable[[str], None] = print
) -> list[str]:
    """Mark failed the runs started here whose process is gone (killed, out of memory, power
    cut) and free their concurrency slots.

    An in-process run holds its ``warehouse`` pool slot until it ends; a run that never ends
    holds it for ever, and every later run would wait for it (Dagster's run monitoring only
    frees slots of runs that reached an end state). Runs of live processes are left alone.
    """
    host = socket.gethostname()
    reclaimed = []
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=list(_UNFINISHED), tags={HOST_TAG: host}))
    for run in runs:
        try:
            pid = int(run.tags.get(PID_TAG, ""))
        except ValueError:
            continue
        if pid == os.getpid() or _process_alive(pid):
            continue
        instance.report_run_failed(
            run, message=f"interrupted: the process running it (pid {pid} on {host}) ended without finishing it"
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        progress(f"  run {run.run_id[:8]} of {run.job_name} was interrupted earlier: marked failed, its slots freed")
        reclaimed.append(run.run_id)
    return reclaimed


@contextmanager
def _reclaiming_while_running(instance: dg.DagsterInstance, progress: Callable[[str], None]) -> Iterator[None]:
    """While our run waits for a pool slot, a run queued before it may be killed: the slot
    then goes to the dead run's queued step and stays there. Look for such runs every few
    seconds until our run ends."""
    try:
        ref = instance.get_ref()
    except dg.DagsterInvariantViolationError:  # an ephemeral instance: no other process shares it
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        with dg.DagsterInstance.from_ref(ref) as own:
            while not stop.wait(RECLAIM_INTERVAL_SECONDS):
                try:
                    reclaim_abandoned_runs(own, progress)
                except Exception:  # noqa: BLE001 - best effort: never disturb the run itself
                    continue

    watcher = threading.Thread(target=watch, name="aios-reclaim-abandoned-runs", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(timeout=30)


def run_job(
    job_name: str,
    *,
    first_day: date | None = None,
    last_day: date | None = None,
    instance: dg.DagsterInstance | None = None,
    tags: dict[str, str] | None = None,
    run_config: dict | None = None,
    progress: Callable[[str], None] = print,
    code_location: str | None = None,
) -> dg.ExecuteInProcessResult | dg.ExecuteJobResult:
    """Run a job of the product for a day range and raise ``JobFailedError`` if it fails.

    By default the job runs in this process (the product's in-process executor). With
    ``code_location`` (a module with a ``defs`` function, e.g.
    ``aios_pipelines.celery_definitions``) the job is loaded from there and run with its own
    executor through ``dg.execute_job`` (a reconstructable job, which executors that run steps
    in other processes need, such as Celery's); the instance must then be a persistent one.
    Either way this process orchestrates the run and is the one its pid tag names: with Celery
    the steps run in the workers, but the run lives (and is reclaimed when it dies) with its
    orchestrator, so a run is never taken for dead while this process waits on its workers.
    """
    if code_location is None:
        # imported here: a Definitions object at module level would be loaded again by the defs folder loader
        from aios_pipelines.definitions import defs as load_defs

        job = load_defs().resolve_job_def(job_name)
    else:
        from dagster._core.definitions.reconstruct import ReconstructableRepository

        job = ReconstructableRepository.for_module(code_location, "defs").get_reconstructable_job(job_name)
    run_tags = dict(tags or {})
    run_tags.update({PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()})
    if first_day is not None:
        run_tags[RANGE_START_TAG] = first_day.isoformat()
        run_tags[RANGE_END_TAG] = (last_day or first_day).isoformat()
    span = f" {first_day} .. {last_day or first_day}" if first_day else ""
    progress(f"  running {job_name}{span}")
    # The full event log is in the Dagster UI; the terminal shows progress and warnings.
    config = dict(run_config or {})
    config.setdefault("loggers", {"console": {"config": {"log_level": os.environ.get("AIOS_LOG_LEVEL", "WARNING")}}})
    instance = instance or get_instance()
    reclaim_abandoned_runs(instance, progress)
    with _reclaiming_while_running(instance, progress):
        if code_location is None:
            result = job.execute_in_process(
                instance=instance,
                tags=run_tags,
                run_config=config,
                raise_on_error=False,
            )
        else:
            result = dg.execute_job(job, instance=instance, tags=run_tags, run_config=config, raise_on_error=False)
    if not result.success:
        message = "see the run in the Dagster UI"
        for event in result.all_events:
            if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
                message = user_error_message(event.step_failure_data.error)
                break
        raise JobFailedError(f"{job_name} failed (run {result.run_id}): {message}")
    checks = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    failed = [c for c in checks if not c.passed]
    progress(
        f"    ok: run {result.run_id[:8]}, {len(checks)} checks, "
        f"{len(failed)} not passing{': ' + ', '.join(sorted({c.check_name for c in failed})) if failed else ''}"
    )
    return result
