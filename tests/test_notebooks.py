"""The analyst notebooks in notebooks/ run top to bottom, read-only, on a small warehouse.

The warehouse is tests/test_dbt_analytics.py's hand-made one (twelve applications, every
route through the policy, overrides both ways, blind reviews) with a few quarantined rows
added, and the dbt marts built from it by the same dagster-dbt assets (models only: their
tests are that module's business). Each notebook is executed with nbclient in the ipykernel
kernel ``python3`` from the venv, with AIOS_HOME pointing at this warehouse, while the test
process holds a read-only connection: a notebook opening the file for writing could not get
its lock and would fail.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import dagster as dg
import duckdb
import nbformat
import polars as pl
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from test_dbt_analytics import analytics_resources, dbt_manifest, write_fixture_warehouse  # noqa: F401 (fixture)

from aios_pipelines.ingestion.validation import QUARANTINE_SCHEMA
from aios_pipelines.settings import PROJECT_ROOT, AiosPaths
from aios_pipelines.storage.warehouse import Warehouse

NOTEBOOKS = PROJECT_ROOT / "notebooks"
KERNEL = "python3"
CELL_TIMEOUT = 300


def quarantined_rows() -> pl.DataFrame:
    rows = [
        ("2026-03-02", "applications/2026-03-02/applications.csv", 14, "A90", "loan_amount",
         "loan_amount: 250.0 outside valid range [500, 250000]"),
        ("2026-03-03", "applications/2026-03-03/applications.csv", 9, "A91", "channel",
         "channel: 'fax' not among allowed values ['branch', 'web', 'mobile', 'broker']"),
    ]
    return pl.DataFrame(
        [{"landing_date": day, "source_file": file, "source_row": row, "record_id": rid, "column_name": column,
          "reason": reason, "all_reasons": [reason], "raw_record": "{}"}
         for day, file, row, rid, column, reason in rows],
    ).with_columns(pl.col("landing_date").str.to_date()).cast(QUARANTINE_SCHEMA)


@pytest.fixture(scope="module")
def home(dbt_manifest, tmp_path_factory, contract) -> AiosPaths:  # noqa: F811
    from aios_pipelines.defs.analytics.dbt_assets import analytics_dbt_models

    paths = AiosPaths(tmp_path_factory.mktemp("notebooks") / "home").ensure()
    warehouse = Warehouse(paths.warehouse)
    write_fixture_warehouse(warehouse, contract)
    warehouse.replace_table("quarantined_applications", quarantined_rows())
    with dg.instance_for_test() as instance:
        result = dg.materialize([analytics_dbt_models], resources=analytics_resources(paths), instance=instance,
                                selection=dg.AssetSelection.all().without_checks())
    assert result.success
    return paths


def test_the_python3_kernel_is_this_venv():
    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    # ipykernel's own spec: jupyter_client starts "python" as the interpreter running the client
    assert spec.argv[0] in ("python", sys.executable), spec.argv
    assert Path(spec.resource_dir).is_relative_to(Path(sys.prefix)), spec.resource_dir


def fingerprint(path: Path) -> tuple[int, int, str]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def run_notebook(name: str, paths: AiosPaths, monkeypatch) -> dict[str, str]:
    """Execute notebooks/<name> as committed; return its printed output by code cell number,
    with the kernel's interpreter under "sys.executable"."""
    monkeypatch.setenv("AIOS_HOME", str(paths.home))
    source = NOTEBOOKS / name
    nb = nbformat.read(source, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"), (
        f"{name} is committed with outputs: clear them before committing")
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    before = fingerprint(paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True):  # a writer in the kernel would fail to lock
        NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT,
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    assert fingerprint(paths.warehouse) == before, f"{name} changed the warehouse"
    code = [c for c in nb.cells if c.cell_type == "code"]
    printed = {str(i): "".join(o.get("text", "") for o in c.outputs if o.output_type == "stream" and o.name == "stdout")
               for i, c in enumerate(code)}
    printed["sys.executable"] = printed.pop(str(len(code) - 1)).strip()
    printed["all"] = "\n".join(printed.values())
    return printed


def check_kernel(printed: dict[str, str]) -> None:
    assert Path(printed["sys.executable"]) == Path(sys.executable), printed["sys.executable"]


def test_applications_and_quarantine(home, monkeypatch):
    printed = run_notebook("01_applications_and_quarantine.ipynb", home, monkeypatch)
    check_kernel(printed)
    warehouse = Warehouse(home.warehouse)
    assert f"warehouse: {home.warehouse} " in printed["0"]
    loaded = warehouse.scalar("select count(*) from raw_applications")
    assert loaded == 12
    assert f"applications loaded: {loaded}\n" in printed["all"]
    assert "applications quarantined: 2 (14.29% of 14 rows read)" in printed["all"]
    # reasons grouped with the offending values masked, so one kind of fault is one line
    assert "loan_amount: … outside valid range …" in printed["all"]
    assert "channel: … not among allowed values …" in printed["all"]


def test_model_performance_and_reasons(home, monkeypatch):
    printed = run_notebook("02_model_performance_and_reasons.ipynb", home, monkeypatch)
    check_kernel(printed)
    assert "no champion in the registry" in printed["all"]  # this warehouse has no MLflow store beside it
    assert "scored applications: 12\n" in printed["all"]
    # A01..A08 have matured outcomes, all in the week of 2026-03-02
    assert "vintages with matured outcomes: 1\n" in printed["all"]
    assert "matured loans: 8, defaults: 2," in printed["all"]
    # every decline and referral carries R01 in the fixture; the fallback row too
    assert "distinct reason codes given: 1\n" in printed["all"]


def test_override_analysis(home, monkeypatch):
    printed = run_notebook("03_override_analysis.ipynb", home, monkeypatch)
    check_kernel(printed)
    verdicts = Warehouse(home.warehouse).scalar("select sum(verdicts) from override_rates")
    assert verdicts == 9
    assert f"reviewer verdicts: {verdicts}\n" in printed["all"]
