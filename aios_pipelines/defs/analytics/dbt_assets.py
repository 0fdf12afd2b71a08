"""The dbt project's models as Dagster assets, and its tests as asset checks.

Sources carry the keys of the Python assets that write them (``meta.dagster.asset_key`` in
``dbt_project/models/staging/_sources.yml``), so staging and marts hang off
``raw_applications``, ``scored_applications``, the review plane's tables and the online
decisions' copies (``online_decisions``, ``online_applications``) in one lineage graph.
Tests on sources are checks on those Python assets.
"""

import contextlib
import io
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, dbt_assets

from aios_pipelines.analytics.sources import (
    contract_dbt_vars,
    create_missing_online_tables,
    create_missing_review_tables,
)
from aios_pipelines.defs.analytics.dbt_project import dbt_project, ensure_manifest
from aios_pipelines.defs.analytics.resources import WarehouseDbtResource
from aios_pipelines.defs.resources import LandingResource, WarehouseResource
from aios_pipelines.storage.postgres_warehouse import PostgresWarehouse
from aios_pipelines.storage.warehouse import Warehouse, quote_identifier

ANALYTICS_GROUP = "analytics"
# artifacts folders of past dbt invocations kept in dbt_project/target
KEEP_RUN_ARTIFACTS = 10


class AnalyticsDbtTranslator(DagsterDbtTranslator):
    """Models: key = model name, group ``analytics``. Sources: the key in their meta (the
    Python asset that writes the table), else the table name."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            meta = (dbt_resource_props.get("config") or {}).get("meta") or dbt_resource_props.get("meta") or {}
            if meta.get("dagster", {}).get("asset_key"):
                return super().get_asset_key(dbt_resource_props)
        return dg.AssetKey([dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_group_name(dbt_resource_props)
        return ANALYTICS_GROUP


def project_vars() -> dict[str, Any]:
    """The ``vars`` declared in dbt_project.yml (the shipped contract's column names)."""
    text = (dbt_project.project_dir / "dbt_project.yml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text).get("vars") or {})


translator = AnalyticsDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_source_tests_as_checks=True))


def _with_row_counts(
    events: Iterable[Any], warehouse: Warehouse | PostgresWarehouse, keys_by_output: Mapping[str, dg.AssetKey]
) -> Iterator[Any]:
    """dbt's events, each model's output with its row count. Counted after dbt has finished
    (on the DuckDB file, dbt holds the one write lock while it runs and no other process may
    read), in one query through the warehouse's own methods, so on either engine."""
    events = list(events)
    outputs = [e for e in events if isinstance(e, dg.Output) and e.output_name in keys_by_output]
    counts: dict[str, int] = {}
    if outputs:
        names = [e.output_name for e in outputs]
        sql = " union all ".join(
            f"select {i} as n, count(*) as row_count from {quote_identifier(keys_by_output[name].path[-1])}"
            for i, name in enumerate(names)
        )
        for i, row_count in warehouse.query(sql).iter_rows():
            counts[names[i]] = int(row_count)
    for event in events:
        if isinstance(event, dg.Output) and event.output_name in counts:
            event = event.with_metadata({**event.metadata, "dagster/row_count": counts[event.output_name]})
        yield event


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=translator,
    name="analytics_dbt_models",
    pool="warehouse",
)
def analytics_dbt_models(
    context: dg.AssetExecutionContext,
    dbt: WarehouseDbtResource,
    warehouse: WarehouseResource,
    landing: LandingResource,
):
    """``dbt build`` of the selected models and tests, on the warehouse (the DuckDB file, or
    PostgreSQL), with the column names of the data contract in force."""
    store = warehouse.get()
    if dbt.warehouse_location != (warehouse.url or str(Path(warehouse.path).expanduser().resolve())):
        raise ValueError(
            f"the dbt resource points at {dbt.warehouse.get().path} but the warehouse resource at {store.path}"
        )
    # (a run of source tests alone, inside another plane's job, builds no model)
    created = create_missing_review_tables(store) if context.selected_asset_keys else []
    if created:
        context.log.info(
            f"created empty review tables {', '.join(created)}: the review plane has not copied any cases yet, "
            "so every referred application is pending"
        )
    created = create_missing_online_tables(store, landing.contract().applications) if context.selected_asset_keys else []
    if created:
        context.log.info(
            f"created empty tables {', '.join(created)}: no online decision has been copied yet, "
            "so the marts hold the batch decisions only"
        )
    # only the names that differ from the project's defaults: unchanged vars let dbt reuse
    # the prepared manifest's parse instead of parsing the project again
    defaults = project_vars()
    overrides = {k: v for k, v in contract_dbt_vars(landing.contract()).items() if defaults.get(k) != v}
    args = ["build", *(["--vars", json.dumps(overrides)] if overrides else [])]
    invocation = dbt.cli(args, context=context, raise_on_error=False)
    # dagster-dbt echoes dbt's log to stdout. dbt.log in the artifacts folder keeps all of it;
    # the run's log gets only dbt's warnings and errors: every line sent there is its own
    # event-log write (about 400 per build, a third of the step's time at 100k decisions)
    with contextlib.redirect_stdout(_LogLines(context.log.warning, keep=_is_dbt_problem)):
        events = list(invocation.stream())
    yield from _with_row_counts(events, store, context.assets_def.keys_by_output_name)
    _hand_on_partial_parse(invocation.target_path)
    _prune_run_artifacts(invocation.target_path)
    error = invocation.get_error()
    if error is not None:
        raise error
    context.log.info(f"dbt build: {_dbt_summary(events)}; log {invocation.target_path / 'dbt.log'}")


class _LogLines(io.TextIOBase):
    """A text stream that hands each complete line to ``emit``."""

    def __init__(self, emit, keep=lambda line: True):
        self._emit = emit
        self._keep = keep
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.strip() and self._keep(line):
                self._emit(line)
        return len(text)


# not the closing tally "PASS=10 WARN=0 ERROR=0"
_DBT_PROBLEM = re.compile(r"\b(WARN(ING)?|Warning|ERROR|Error|FAIL|Failure)\b(?!=)")


def _is_dbt_problem(line: str) -> bool:
    """dbt's own warnings and errors (its per-model ``OK`` / ``PASS`` lines are not)."""
    return bool(_DBT_PROBLEM.search(line))


def _dbt_summary(events: list[Any]) -> str:
    outputs = sum(1 for e in events if isinstance(e, dg.Output))
    checks = [e for e in events if isinstance(e, dg.AssetCheckResult)]
    failing = sum(1 for c in checks if not c.passed)
    return f"{outputs} models built, {len(checks)} tests, {failing} not passing"


def _hand_on_partial_parse(run_target: Path) -> bool:
    """Leave this build's parse where the next build starts from.

    dagster-dbt copies ``target/partial_parse.msgpack`` into each invocation's own folder.
    dbt throws it away when the profile's connection details differ from the parse's (the
    DuckDB file's path is one of them) and parses the whole project again, about 3 s: a
    warehouse anywhere but where ``prepare`` pointed paid that on every build. dbt checks the
    file before using it, so a stale or foreign one only costs that parse again."""
    fresh = run_target / "partial_parse.msgpack"
    shared = run_target.parent / "partial_parse.msgpack"
    if not fresh.is_file():
        return False
    partial = shared.with_name(f".{shared.name}.{os.getpid()}.partial")
    try:
        shutil.copyfile(fresh, partial)
        os.replace(partial, shared)  # readers see the old file or the new one, never half
    except OSError:
        partial.unlink(missing_ok=True)
        return False  # a read-only project folder: builds still work, each one parses
    return True


def _prune_run_artifacts(current: Path, keep: int = KEEP_RUN_ARTIFACTS) -> None:
    """dagster-dbt gives every invocation its own artifacts folder (manifest, run results,
    compiled SQL, log: a few MB); keep the newest few of this asset's, this run's included."""
    prefix = current.name.split("-")[0] + "-"
    runs = sorted(
        (p for p in current.parent.glob(f"{prefix}*") if p.is_dir() and p != current),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for stale in runs[max(keep - 1, 0):]:
        shutil.rmtree(stale, ignore_errors=True)


def dbt_source_check_keys() -> list[dg.AssetCheckKey]:
    """The checks dbt's source tests become: they target the Python assets, not dbt's own."""
    return [k for k in analytics_dbt_models.check_keys if k.asset_key not in analytics_dbt_models.keys]
