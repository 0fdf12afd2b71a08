"""The data contract: what columns a lender sends, their types, roles and valid values.

Everything downstream (ingestion, expectation suites, features, model constraints) reads
the contract instead of naming columns, so a lender with other column names writes its own
contract and runs the same pipeline.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

COLUMN_TYPES = ("string", "integer", "float", "timestamp", "date")
ROLES = ("id", "timestamp", "numeric", "categorical", "amount", "target")
MEANINGS = ("annual_income", "loan_amount", "term_months", "existing_debt")
RISK_DIRECTIONS = ("increasing", "decreasing")


class ContractError(ValueError):
    """The contract file itself is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str
    role: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed_values: tuple[Any, ...] | None = None
    meaning: str | None = None
    risk_direction: str | None = None
    references: str | None = None
    description: str = ""
    personal: bool = False  # the applicant's personal data: removed after the retention period

    @property
    def is_number(self) -> bool:
        return self.type in ("integer", "float")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    landing_folder: str
    columns: tuple[ColumnSpec, ...]
    description: str = ""
    performance_window_days: int | None = None

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    def by_role(self, *roles: str) -> list[ColumnSpec]:
        return [c for c in self.columns if c.role in roles]

    @property
    def personal_columns(self) -> list[str]:
        """The columns holding the applicant's personal data (``personal: true``)."""
        return [c.name for c in self.columns if c.personal]

    def by_meaning(self, meaning: str) -> ColumnSpec | None:
        for c in self.columns:
            if c.meaning == meaning:
                return c
        return None

    @property
    def id_column(self) -> ColumnSpec:
        ids = self.by_role("id")
        if len(ids) != 1:
            raise ContractError(f"dataset {self.name!r} must declare exactly one id column, found {len(ids)}")
        return ids[0]

    @property
    def timestamp_column(self) -> ColumnSpec:
        ts = self.by_role("timestamp")
        if len(ts) != 1:
            raise ContractError(
                f"dataset {self.name!r} must declare exactly one timestamp column, found {len(ts)}"
            )
        return ts[0]

    @property
    def target_column(self) -> ColumnSpec:
        targets = self.by_role("target")
        if len(targets) != 1:
            raise ContractError(f"dataset {self.name!r} must declare exactly one target column")
        return targets[0]


@dataclass(frozen=True)
class DataContract:
    name: str
    version: str
    applications: DatasetSpec
    outcomes: DatasetSpec
    source_path: Path | None = None
    fingerprint: str = field(default="", compare=False)

    @property
    def performance_window_days(self) -> int:
        return int(self.outcomes.performance_window_days or 0)

    def dataset(self, name: str) -> DatasetSpec:
        if name == "applications":
            return self.applications
        if name == "outcomes":
            return self.outcomes
        raise KeyError(name)


def _parse_column(raw: dict[str, Any], where: str) -> ColumnSpec:
    if not isinstance(raw, dict) or "name" not in raw:
        raise ContractError(f"{where}: every column needs a 'name'")
    name = str(raw["name"])
    here = f"{where}.{name}"
    col_type = raw.get("type")
    if col_type not in COLUMN_TYPES:
        raise ContractError(f"{here}: type must be one of {COLUMN_TYPES}, got {col_type!r}")
    role = raw.get("role")
    if role not in ROLES:
        raise ContractError(f"{here}: role must be one of {ROLES}, got {role!r}")
    meaning = raw.get("meaning")
    if meaning is not None and meaning not in MEANINGS:
        raise ContractError(f"{here}: meaning must be one of {MEANINGS}, got {meaning!r}")
    direction = raw.get("risk_direction")
    if direction is not None and direction not in RISK_DIRECTIONS:
        raise ContractError(f"{here}: risk_direction must be one of {RISK_DIRECTIONS}, got {direction!r}")
    allowed = raw.get("allowed_values")
    if allowed is not None and (not isinstance(allowed, list) or not allowed):
        raise ContractError(f"{here}: allowed_values must be a non-empty list")
    for bound in ("min", "max"):
        if raw.get(bound) is not None and not isinstance(raw[bound], (int, float)):
            raise ContractError(f"{here}: {bound} must be a number, got {raw[bound]!r}")
    personal = raw.get("personal", False)
    if not isinstance(personal, bool):
        raise ContractError(f"{here}: personal must be true or false, got {personal!r}")
    if personal and role in ("id", "timestamp"):
        raise ContractError(f"{here}: the {role} column cannot be personal: retention keeps it to find the "
                            "application and its age")
    unknown = set(raw) - {
        "name", "type", "role", "nullable", "min", "max", "allowed_values", "meaning",
        "risk_direction", "references", "description", "personal",
    }
    if unknown:
        raise ContractError(f"{here}: unknown field(s) {sorted(unknown)}")
    return ColumnSpec(
        name=name,
        type=col_type,
        role=role,
        nullable=bool(raw.get("nullable", False)),
        min=raw.get("min"),
        max=raw.get("max"),
        allowed_values=tuple(allowed) if allowed is not None else None,
        meaning=meaning,
        risk_direction=direction,
        references=raw.get("references"),
        description=str(raw.get("description", "")),
        personal=personal,
    )


def _parse_dataset(name: str, raw: Any, where: str) -> DatasetSpec:
    if not isinstance(raw, dict) or not isinstance(raw.get("columns"), list):
        raise ContractError(f"{where}: section {name!r} needs a 'columns' list")
    columns = tuple(_parse_column(c, f"{where}: {name}") for c in raw["columns"])
    names = [c.name for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ContractError(f"{where}: {name} declares column(s) twice: {duplicates}")
    spec = DatasetSpec(
        name=name,
        landing_folder=str(raw.get("landing_folder", name)),
        columns=columns,
        description=str(raw.get("description", "")),
        performance_window_days=raw.get("performance_window_days"),
    )
    try:
        spec.id_column  # noqa: B018 - validates exactly one id column
        spec.timestamp_column  # noqa: B018
    except ContractError as exc:
        raise ContractError(f"{where}: {exc}") from None
    return spec


def load_contract(path: str | Path) -> DataContract:
    """Read and validate a contract file; errors name the file and the offending field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ContractError(f"cannot read data contract {path}: {exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ContractError(f"{path}: expected a mapping at the top level")
    for section in ("name", "version", "applications", "outcomes"):
        if section not in raw:
            raise ContractError(f"{path}: missing top-level field {section!r}")
    applications = _parse_dataset("applications", raw["applications"], str(path))
    outcomes = _parse_dataset("outcomes", raw["outcomes"], str(path))
    try:
        outcomes.target_column  # noqa: B018
    except ContractError as exc:
        raise ContractError(f"{path}: {exc}") from None
    window = outcomes.performance_window_days
    if not isinstance(window, int) or window < 0:
        raise ContractError(f"{path}: outcomes.performance_window_days must be a non-negative integer")
    return DataContract(
        name=str(raw["name"]),
        version=str(raw["version"]),
        applications=applications,
        outcomes=outcomes,
        source_path=path,
        fingerprint=hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
    )
