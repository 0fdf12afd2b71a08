"""The Dagster instance on PostgreSQL (dagster-postgres), as docs/DEPLOYMENT.md configures it:
a real job of the project runs against it, and its run, materializations, check evaluations
and concurrency slots are stored in the PostgreSQL database, not in local SQLite files.

The server is the session's throwaway one (tests/conftest.py). The review store and the MLflow
registry on PostgreSQL are tested beside their SQLite tests (test_review_store.py,
test_review_api.py, test_registry.py)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from aios_pipelines.defs.instance import get_instance, postgres_instance_yaml
from aios_pipelines.defs.runner import run_job
from aios_pipelines.settings import AiosPaths
from aios_pipelines.storage.postgres_server import HOST, PostgresServer
from aios_pipelines.storage.warehouse import Warehouse
from aios_pipelines.synthetic.generator import write_landing

DAY = date(2026, 3, 2)
PER_DAY = 40


def postgres_dagster_yaml(server: PostgresServer, db_name: str) -> str:
    return postgres_instance_yaml(username=server.superuser, hostname=HOST, port=server.port, db_name=db_name)


@pytest.fixture()
def pg_instance(aios_paths: AiosPaths, postgres_server: PostgresServer, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch):
    postgres_server.create_database("aios_test_dagster")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(postgres_dagster_yaml(postgres_server, "aios_test_dagster"))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = get_instance(aios_paths)
    yield instance
    instance.dispose()


def test_ingestion_job_runs_on_a_postgres_dagster_instance(aios_paths: AiosPaths, pg_instance: dg.DagsterInstance,
                                                          postgres_server: PostgresServer):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    assert isinstance(pg_instance.run_storage, PostgresRunStorage)
    assert isinstance(pg_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(pg_instance.schedule_storage, PostgresScheduleStorage)
    write_landing(aios_paths.landing, start=DAY, days=1, per_day=PER_DAY, seed=11, bad_row_rate=0.1)

    result = run_job("ingest_applications", first_day=DAY, instance=pg_instance, progress=lambda _: None)

    # the run, as the UI and the daemon read it back from the instance
    [record] = pg_instance.get_run_records(filters=dg.RunsFilter(run_ids=[result.run_id]))
    assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    assert record.dagster_run.job_name == "ingest_applications"
    assert record.dagster_run.tags["dagster/asset_partition_range_start"] == DAY.isoformat()

    # materializations per partition, with the metadata the asset reported
    loaded = Warehouse(aios_paths.warehouse).query(
        "select count(*) as n from raw_applications where landing_date = ?", [DAY]).item()
    event = pg_instance.get_latest_materialization_event(dg.AssetKey("raw_applications"))
    assert event is not None and event.run_id == result.run_id
    materialization = event.asset_materialization
    assert materialization.partition == DAY.isoformat()
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta["rows_loaded"] == loaded > 0
    assert meta["rows_read"] == meta["rows_loaded"] + meta["rows_quarantined"] == PER_DAY
    assert meta["rows_quarantined"] > 0
    for key in ("quarantined_applications", "application_features"):
        latest = pg_instance.get_latest_materialization_event(dg.AssetKey(key))
        assert latest is not None and latest.run_id == result.run_id, key

    # the warehouse pool's slot lives in the instance: one slot, free again after the run
    info = pg_instance.event_log_storage.get_concurrency_info("warehouse")
    assert info.slot_count == 1 and info.active_slot_count == 0 and info.pending_step_count == 0

    # and all of it is in PostgreSQL itself, not in SQLite files under DAGSTER_HOME
    checks = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    with postgres_server.connect("aios_test_dagster") as conn:
        assert conn.execute("select status from runs where run_id = %s", [result.run_id]).fetchone() == ("SUCCESS",)
        stored = dict(conn.execute(
            "select dagster_event_type, count(*) from event_logs where run_id = %s group by dagster_event_type",
            [result.run_id]).fetchall())
        partitions = {row[0] for row in conn.execute(
            "select partition from event_logs where run_id = %s and dagster_event_type = 'ASSET_MATERIALIZATION'",
            [result.run_id]).fetchall()}
    assert stored["ASSET_MATERIALIZATION"] == 3 and partitions == {DAY.isoformat()}
    assert stored["ASSET_CHECK_EVALUATION"] == len(checks) > 0
    assert stored["PIPELINE_SUCCESS"] == 1  # Dagster stores RUN_SUCCESS under its old name
    assert not list(Path(pg_instance.root_directory).rglob("*.db"))
