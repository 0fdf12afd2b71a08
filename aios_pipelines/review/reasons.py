"""Reason codes a reviewer can give: the model's catalogue (``reason_codes.yaml`` beside the
data contract) and the review codes below, for what a person sees that the model does not.
Any other well-formed code may be typed in as well."""

from __future__ import annotations

from pathlib import Path

import yaml

REVIEW_REASON_CODES: dict[str, str] = {
    "H01": "Income or employment could not be verified",
    "H02": "Information in the application is inconsistent",
    "H03": "Documents provided support the application",
    "H04": "Collateral or a guarantor mitigates the risk",
    "H05": "Recent credit events the bureau data does not show",
    "H06": "Affordability assessment fails",
    "H07": "Existing relationship with the lender supports the application",
    "H08": "Suspected fraud or identity mismatch",
    "H09": "Policy exception approved by credit management",
}


def model_reason_catalog(path: Path | None = None) -> dict[str, str]:
    """code -> text of the model's reason catalogue (empty if there is none)."""
    if path is None:
        from aios_pipelines.settings import contract_path

        path = contract_path().with_name("reason_codes.yaml")
    if not path.exists():
        return {}
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    catalog: dict[str, str] = {}
    for entry in raw.values():
        if isinstance(entry, dict) and entry.get("code"):
            catalog.setdefault(str(entry["code"]), str(entry.get("text", "")))
    return catalog


def reason_catalog(path: Path | None = None) -> dict[str, str]:
    """Every listed code a reviewer may pick: model codes first, then review codes."""
    return {**model_reason_catalog(path), **REVIEW_REASON_CODES}
