"""The end-to-end benchmark's arithmetic: step timing read from a real Dagster event log, and
the ratios built from stage results (benchmarks/end_to_end.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the benchmarks package beside tests/

from benchmarks.end_to_end import (  # noqa: E402
    TRIVIAL_STEPS,
    compare,
    dagster_overhead,
    event_log_timing,
    trivial_job_in_process,
)


def test_event_log_timing_reads_every_step_of_a_real_run():
    instance = dg.DagsterInstance.ephemeral()
    result = trivial_job_in_process().execute_in_process(instance=instance, partition_key="2026-03-02")
    assert result.success
    timing = event_log_timing(instance.all_logs(result.run_id))

    assert list(timing["steps"]) == [f"bench_trivial_{i}" for i in range(TRIVIAL_STEPS)]  # run order
    for key, step in timing["steps"].items():
        assert step["status"] == "STEP_SUCCESS"
        assert step["assets"] == [key]
        assert 0 <= step["after_outputs_seconds"] <= step["seconds"]
    assert timing["run_seconds"] > 0
    # the run is its steps plus the time outside them, which is the gaps before each step and after the last
    assert timing["steps_seconds"] + timing["outside_steps_seconds"] == pytest.approx(timing["run_seconds"], abs=1e-3)
    assert sum(timing["before_each_step_seconds"]) + timing["after_last_step_seconds"] == pytest.approx(
        timing["outside_steps_seconds"], abs=1e-3
    )


def _job(job: str, seconds: float, steps: dict[str, tuple[float, list[str]]]) -> dict:
    return {
        "job": job,
        "seconds": seconds,
        "wall_seconds": seconds + 10.0,
        "call_seconds": seconds + 4.0,
        "executor": "in_process",
        "import_seconds": 3.0,
        "definitions_load_seconds": 1.0,
        "definitions_reload_seconds": 0.1,
        "run_job_outside_run_seconds": 0.5,
        "event_log": {
            "steps": {k: {"seconds": s, "after_outputs_seconds": 0.0, "assets": a} for k, (s, a) in steps.items()},
            "run_seconds": seconds - 0.5,
            "steps_seconds": sum(s for s, _ in steps.values()),
            "outside_steps_seconds": seconds - 0.5 - sum(s for s, _ in steps.values()),
        },
    }


def _baseline(seconds: float, compute: float) -> dict:
    return {"seconds": seconds, "compute_seconds": compute}


def test_compare_splits_the_ingest_job_and_divides_by_the_sum_of_baselines():
    stages = {
        "job_ingest_applications": _job("ingest_applications", 10.0, {
            "raw_applications": (5.0, ["quarantined_applications", "raw_applications"]),
            "application_features": (2.0, ["application_features"]),
            "application_features_check": (1.0, ["application_features"]),
        }),
        "job_score_applications": _job("score_applications", 6.0, {"scored_applications": (5.0, ["scored_applications"])}),
        "job_monitor_applications": _job("monitor_applications", 8.0, {
            "feature_drift_report": (3.0, ["feature_drift_report"]),
            "risk_report": (4.0, ["risk_report"]),
        }),
        "job_copy_review_decisions": _job("copy_review_decisions", 2.0, {"review_copies": (1.5, ["review_cases"])}),
        "job_build_analytics": _job("build_analytics", 14.0, {
            "analytics_dbt_models": (9.0, ["approval_funnel"]),
            "workload_forecast": (4.0, ["workload_forecast"]),
        }),
        "baseline_ingest_duckdb_read_csv": _baseline(1.0, 1.0),
        "baseline_features_pandas": _baseline(1.0, 0.5),
        "baseline_score_booster_predict": _baseline(2.0, 1.0),
        "baseline_drift_evidently": _baseline(2.0, 1.5),
        "baseline_copy_sqlite_to_duckdb": _baseline(1.0, 1.0),
        "baseline_dbt_build_cli": _baseline(8.0, 7.0),
    }
    ratios, per_stage = compare(stages)

    assert per_stage["features"]["product_seconds"] == 3.0  # the features step and its check
    assert per_stage["ingest"]["product_seconds"] == 7.0  # the rest of the ingest job
    assert ratios["end_to_end_seconds"] == 40.0  # the five jobs
    assert ratios["baselines_seconds"] == 15.0
    assert ratios["end_to_end_vs_baselines_ratio"] == round(40 / 15, 2)
    assert ratios["end_to_end_vs_compute_only_baselines_ratio"] == round(40 / 12, 2)
    assert ratios["end_to_end_fresh_processes_vs_baselines_ratio"] == round(90 / 15, 2)
    # only the drift and dbt steps of their jobs: 7 + 3 + 6 + 3 + 2 + 9
    assert ratios["matched_steps_vs_baselines_ratio"] == round(30 / 15, 2)
    assert ratios["drift_vs_baseline"] == 4.0 and ratios["drift_step_vs_baseline"] == 1.5
    assert ratios["ingest_vs_baseline"] == 7.0

    overhead = dagster_overhead(stages)["product_runs"]
    assert overhead["monitor_applications"]["steps"] == 2
    assert overhead["monitor_applications"]["outside_steps_seconds"] == pytest.approx(0.5)
    assert overhead["monitor_applications"]["process_start_and_imports_seconds"] == 6.0


def test_median_run_keeps_one_whole_run_and_every_runs_seconds():
    from benchmarks.harness import median_run

    runs = [{"seconds": 9.0, "steps": "slow", "peak_rss_mib": 3}, {"seconds": 5.0, "steps": "fast", "peak_rss_mib": 1},
            {"seconds": 7.0, "steps": "middle", "peak_rss_mib": 2}]
    chosen = median_run(runs)
    assert chosen["seconds"] == 7.0 and chosen["steps"] == "middle"  # the figures of one run, not a blend
    assert chosen["runs_seconds"] == [9.0, 5.0, 7.0] and chosen["runs_peak_rss_mib"] == [3, 1, 2]
    assert median_run(runs[:2])["steps"] == "fast"  # the lower middle of an even count
    assert "runs_seconds" not in median_run(runs[:1])
    with pytest.raises(ValueError):
        median_run([])


def test_a_repeated_copy_round_starts_from_the_same_warehouse(tmp_path):
    import duckdb

    from benchmarks.end_to_end import _checkpointed_copy

    warehouse, snapshot = tmp_path / "aios.duckdb", tmp_path / "before_copy.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create table review_copy_state as select 0 as verified_seq")
    _checkpointed_copy(str(warehouse), str(snapshot))
    with duckdb.connect(str(warehouse)) as con:  # the first round's copy moves the state on
        con.execute("update review_copy_state set verified_seq = 553000")
        con.execute("create table review_events as select range as event_id from range(10)")
    (tmp_path / "aios.duckdb.wal").write_bytes(b"stale")  # a WAL left by a writer must not survive
    _checkpointed_copy(str(snapshot), str(warehouse))
    assert not (tmp_path / "aios.duckdb.wal").exists()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select verified_seq from review_copy_state").fetchall() == [(0,)]
        assert [t for (t,) in con.execute("show tables").fetchall()] == ["review_copy_state"]


@pytest.mark.parametrize(("argv", "end_to_end_rounds", "stage_runs"), [
    ([], 3, 1),  # `make bench`: the end-to-end path as the median of three rounds, other stages once
    (["--repeat", "1"], 1, 1),
    (["--repeat", "2"], 2, 2),
])
def test_make_bench_runs_the_end_to_end_path_three_rounds_unless_told(monkeypatch, argv, end_to_end_rounds, stage_runs):
    import benchmarks.dbt_build
    import benchmarks.end_to_end
    import benchmarks.online
    from benchmarks import run

    seen = {}
    monkeypatch.setattr(run, "machine_info", lambda: {})
    monkeypatch.setattr(run, "_record_data_plane", lambda args, *_: seen.setdefault("data_plane", args.repeat))
    monkeypatch.setattr(run, "_record_model_plane", lambda args, *_: seen.setdefault("model_plane", args.repeat))
    monkeypatch.setattr(run, "_record_review_plane", lambda args, *_: seen.setdefault("review_plane", args.repeat))
    monkeypatch.setattr(benchmarks.online, "record_online", lambda *a, **k: None)
    monkeypatch.setattr(benchmarks.end_to_end, "record_end_to_end",
                        lambda *a, repeat, **k: seen.setdefault("end_to_end", repeat))
    monkeypatch.setattr(benchmarks.dbt_build, "record_dbt_build", lambda *a, **k: None)

    assert run.main(argv) == 0
    assert seen == {"data_plane": stage_runs, "model_plane": stage_runs, "review_plane": stage_runs,
                    "end_to_end": end_to_end_rounds}
