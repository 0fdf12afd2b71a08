"""The full record of one decision: inputs, quarantine history, features, PD, reasons,
model version (with its training data hash and MLflow run), policy version and rule, action,
and the review (who decided what, at which stage) when people were involved.

Read-only: it opens the warehouse and the review store for reading and never changes anything.
``aios explain --json`` prints :func:`jsonable_record` of it and the review service's
``GET /api/tasks/{case_id}/lineage`` answers with the same.
"""

from __future__ import annotations

import json
import math
from typing import Any

import polars as pl

from aios_pipelines.features.build import APPLICATION_ID, build_features, feature_definition
from aios_pipelines.ingestion.contract import load_contract
from aios_pipelines.settings import AiosPaths, contract_path
from aios_pipelines.storage.warehouse import Warehouse, configured_warehouse


class DecisionRecordError(LookupError):
    pass


def _one(warehouse: Warehouse, table: str, column: str, value: str) -> dict[str, Any] | None:
    if not warehouse.table_exists(table):
        return None
    rows = warehouse.query(f'select * from "{table}" where "{column}" = ?', [value])
    return rows.row(0, named=True) if rows.height else None


def _application_schema(warehouse: Warehouse, table: str, contract: Any) -> dict[str, Any]:
    """The contract columns' types as ``table`` stores them."""
    names = {c.name for c in contract.applications.columns}
    frame = warehouse.query(f'select * from "{table}" limit 0')
    return {name: dtype for name, dtype in frame.schema.items() if name in names}


def review_lineage(store: Any, application_id: str) -> dict[str, Any] | None:
    """The review case of an application and every reviewer's decision on it, oldest first."""
    case = store.get_case_by_application(application_id)
    if case is None:
        return None
    history = store.case_history(case["case_id"])
    return {
        "case_id": case["case_id"],
        "source": case["source"],
        "status": case["status"],
        "queue": case["queue"],
        "requires_four_eyes": case["requires_four_eyes"],
        "model_version_shown": case["model_version"],
        "policy_version_shown": case["policy_version"],
        "final_decision": case["final_decision"],
        "decided_at": case["decided_at"],
        "reviewers": [
            {
                "reviewer": d["reviewer"],
                "role": d["reviewer_role"],
                "stage": d["stage"],
                "decision": d["decision"],
                "reason_codes": d["reason_codes"],
                "is_override": d["is_override"],
                "override_direction": d["override_direction"],
                "decided_at": d["decided_at"],
            }
            for d in history["decisions"]
        ],
    }


def _review_of(paths: AiosPaths, application_id: str, review_store: Any) -> dict[str, Any] | None:
    if review_store is not None:
        return review_lineage(review_store, application_id)
    if not paths.review_store.exists():
        return None
    from aios_pipelines.review.store import ReviewStore

    store = ReviewStore.for_paths(paths)
    try:
        return review_lineage(store, application_id)
    finally:
        store.dispose()


def decision_record(paths: AiosPaths, application_id: str, *, review_store: Any = None) -> dict[str, Any]:
    """``review_store``: the review store to read the review from (default: the data
    directory's, when it exists)."""
    warehouse = configured_warehouse(paths)
    if not warehouse.exists():
        raise DecisionRecordError(f"no warehouse at {warehouse.path}: run `aios demo` first")
    contract = load_contract(contract_path())
    id_column = contract.applications.id_column.name
    application = _one(warehouse, "raw_applications", id_column, application_id)
    # decided online (POST /api/decisions): the copies of the service's decision and of the
    # application it was sent; a batch row of the same id wins, as in the dbt staging models
    online = _one(warehouse, "online_decisions", APPLICATION_ID, application_id)
    online_application = _one(warehouse, "online_applications", id_column, application_id) if online else None
    origin = "batch" if application is not None else ("online" if online_application is not None else None)
    if application is None:
        application = online_application
    quarantine = (
        warehouse.query(
            "select landing_date, source_file, source_row, column_name, reason from quarantined_applications "
            "where record_id = ? order by landing_date, source_file, source_row",
            [application_id],
        ).to_dicts()
        if warehouse.table_exists("quarantined_applications")
        else []
    )
    if application is None and not quarantine:
        raise DecisionRecordError(f"application {application_id!r} is not in the warehouse {warehouse.path}")
    features = _one(warehouse, "application_features", APPLICATION_ID, application_id)
    scored = _one(warehouse, "scored_applications", APPLICATION_ID, application_id)
    definition = feature_definition(contract.applications)
    features_source = "application_features" if features else None
    if origin == "online":
        scored = scored or online
        if features is None:
            # the service keeps no feature row: the same function on the same inputs gives
            # the features it scored (build_features is deterministic)
            schema = _application_schema(warehouse, "online_applications", contract)
            frame = pl.DataFrame([{name: application[name] for name in schema}], schema=schema, orient="row")
            features = build_features(frame, contract.applications).row(0, named=True)
            features_source = "recomputed with build_features from the online application"

    model: dict[str, Any] | None = None
    if scored and scored.get("model_version"):
        from aios_pipelines.modeling.registry import ModelRegistry, RegistryError, configured_registry_config

        try:
            info = ModelRegistry(configured_registry_config(paths)).get_version(int(scored["model_version"]))
            model = {
                "name": "credit_risk_model",
                "version": info.version,
                "aliases": info.aliases,
                "mlflow_run_id": info.run_id,
                "training_data_hash": info.tags.get("data_snapshot_hash"),
                "contract_fingerprint": info.tags.get("contract_fingerprint"),
                "trained_by_dagster_run": info.tags.get("dagster_run_id"),
                "oot_window": info.tags.get("oot_window"),
                "oot_auc": info.metrics.get("auc"),
            }
        except RegistryError as exc:
            model = {"version": scored["model_version"], "error": str(exc)}

    return {
        "application_id": application_id,
        "origin": origin,
        "online_decision": None
        if online is None or origin != "online"
        else {k: online.get(k) for k in ("decision_id", "decided_at", "requested_by", "case_id", "expert_queue")},
        "inputs": application,
        "quarantine_history": quarantine,
        "features": {k: features[k] for k in definition.features} if features else None,
        "features_source": features_source,
        "score": None
        if scored is None
        else {
            "pd": scored["pd"],
            "score_band": scored["score_band"],
            "confidence": scored["confidence"],
            "decision_source": scored["decision_source"],
            "fallback_reason": scored.get("fallback_reason"),
            "reasons": [
                {"code": c, "text": t, "feature": f}
                for c, t, f in zip(scored["reason_codes"], scored["reason_texts"], scored["reason_features"])
            ],
            "data_quality_flags": scored["quality_flags"],
        },
        "model": model,
        "policy": None
        if scored is None
        else {
            "version": scored["policy_version"],
            "fingerprint": scored.get("policy_fingerprint"),
            "rule": scored["policy_rule"],
            "hard_rule": scored.get("policy_hard_rule"),
            "automation_paused": scored.get("automation_paused"),
        },
        "action": None
        if scored is None
        else {
            "action": scored["action"],
            "requires_four_eyes": scored["requires_four_eyes"],
            "review_priority": scored["review_priority"],
            "review_due_hours": scored["review_due_hours"],
        },
        "review": _review_of(paths, application_id, review_store),
    }


def format_decision_record(record: dict[str, Any]) -> str:
    lines = [f"Decision record for application {record['application_id']}", ""]

    def section(title: str, body: dict[str, Any] | None) -> None:
        lines.append(title)
        if not body:
            lines.append("  (none)")
        else:
            width = max(len(str(k)) for k in body)
            for key, value in body.items():
                lines.append(f"  {key:<{width}}  {value}")
        lines.append("")

    if record.get("origin") == "online":
        online = record.get("online_decision") or {}
        lines.append(f"Decided online: decision {online.get('decision_id')} at {online.get('decided_at')}, "
                     f"requested by {online.get('requested_by')}")
        lines.append(f"  features: {record.get('features_source')}")
        lines.append("")
    section("Inputs (as loaded under the data contract)", record["inputs"])
    if record["quarantine_history"]:
        lines.append("Quarantine history")
        for q in record["quarantine_history"]:
            lines.append(f"  {q['landing_date']} {q['source_file']} row {q['source_row']}: {q['reason']}")
        lines.append("")
    section("Features", record["features"])
    score = record["score"]
    if score:
        lines.append("Score")
        lines.append(f"  PD {score['pd']:.4f}, band {score['score_band']}, confidence {score['confidence']:.2f}, "
                     f"source {score['decision_source']}")
        if score.get("fallback_reason"):
            lines.append(f"  fallback because: {score['fallback_reason']}")
        for i, reason in enumerate(score["reasons"], 1):
            lines.append(f"  reason {i}: {reason['code']} {reason['text']}  ({reason['feature']})")
        for flag in score["data_quality_flags"]:
            lines.append(f"  uncertain input: {flag}")
        lines.append("")
    section("Model", record["model"])
    section("Policy", record["policy"])
    section("Action", record["action"])
    review = record.get("review")
    if review:
        lines.append("Review")
        lines.append(f"  case {review['case_id']} ({review['source']}), {review['status']}, queue {review['queue']}, "
                     f"final decision {review['final_decision'] or '-'}")
        for r in review["reviewers"]:
            override = f", override {r['override_direction']}" if r["is_override"] else ""
            codes = ", ".join(r["reason_codes"]) or "no reason codes"
            lines.append(f"  {r['decided_at']}  {r['reviewer']} ({r['role']}, {r['stage']}): {r['decision']} "
                         f"[{codes}]{override}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or infinity
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def jsonable_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record as plain JSON values (dates and times as ISO text), as the CLI prints it."""
    return json.loads(json.dumps(_finite(record), default=_iso))


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def record_as_json(record: dict[str, Any]) -> str:
    return json.dumps(jsonable_record(record), indent=2)
