"""The full record of one decision: inputs, quarantine history, features, PD, reasons,
model version (with its training data hash and MLflow run), policy version and rule, action.

Read-only: it opens the warehouse for reading and never changes anything.
"""

from __future__ import annotations

import json
from typing import Any

from aios_pipelines.features.build import APPLICATION_ID, feature_definition
from aios_pipelines.ingestion.contract import load_contract
from aios_pipelines.settings import AiosPaths, contract_path
from aios_pipelines.storage.warehouse import Warehouse


class DecisionRecordError(LookupError):
    pass


def _one(warehouse: Warehouse, table: str, column: str, value: str) -> dict[str, Any] | None:
    if not warehouse.table_exists(table):
        return None
    rows = warehouse.query(f'select * from "{table}" where "{column}" = ?', [value])
    return rows.row(0, named=True) if rows.height else None


def decision_record(paths: AiosPaths, application_id: str) -> dict[str, Any]:
    if not paths.warehouse.exists():
        raise DecisionRecordError(f"no warehouse at {paths.warehouse}: run `aios demo` first")
    contract = load_contract(contract_path())
    warehouse = Warehouse(paths.warehouse)
    id_column = contract.applications.id_column.name
    application = _one(warehouse, "raw_applications", id_column, application_id)
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
        raise DecisionRecordError(f"application {application_id!r} is not in the warehouse {paths.warehouse}")
    features = _one(warehouse, "application_features", APPLICATION_ID, application_id)
    scored = _one(warehouse, "scored_applications", APPLICATION_ID, application_id)
    definition = feature_definition(contract.applications)

    model: dict[str, Any] | None = None
    if scored and scored.get("model_version"):
        from aios_pipelines.modeling.registry import ModelRegistry, RegistryError, default_registry_config

        try:
            info = ModelRegistry(default_registry_config(paths)).get_version(int(scored["model_version"]))
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
        "inputs": application,
        "quarantine_history": quarantine,
        "features": {k: features[k] for k in definition.features} if features else None,
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
    return "\n".join(lines).rstrip() + "\n"


def record_as_json(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=2, default=str)
