"""The model registry: LightGBM models in MLflow, and the ``champion`` alias that scores.

Every registered version carries its metrics, parameters, a ``model_card.json`` (feature
spec, feature ranges, data snapshot hash, contract fingerprint, policy version, the Dagster
run, the out-of-time window and a checksum of every model file) and version tags for the
hashes, so a version can be traced back to the data and the run that made it.

Aliases, not stages (deprecated in MLflow 3): ``champion`` is what scores, ``challenger`` a
refused candidate kept for comparison. Every alias move is recorded as a registered-model
tag (one small JSON event per tag, so the history has no size limit), which is how
``rollback`` knows the previous champions: promotions push onto a stack, rollbacks pop it.

All MLflow access goes through an ``MlflowClient`` bound to this registry's URIs, so two
registries in two data directories never see each other. The one exception is
``mlflow.lightgbm.log_model``, which only takes the process-global tracking URI: it runs
inside a short, locked window where the global URI points at this registry and is then
restored.

Nothing here imports Dagster.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

# MLflow reads these when it is imported or first used: no usage telemetry from a credit
# platform, no GitPython warning on hosts without git, no progress bars in run logs when
# model files are copied. Explicit settings win.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import lightgbm  # noqa: E402
import mlflow  # noqa: E402
import mlflow.artifacts  # noqa: E402
import mlflow.lightgbm  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric, Param, RunStatus  # noqa: E402
from mlflow.entities.model_registry import ModelVersion  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from aios_pipelines.settings import AiosPaths, mlflow_tracking_uri  # noqa: E402

REGISTERED_MODEL_NAME = "credit_risk_model"
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
MODEL_CARD_FILE = "model_card.json"
MODEL_CARD_SCHEMA_VERSION = 1
LOGGED_MODEL_NAME = "model"

# Version tags written by the registry and by the promotion gate.
TAG_DATA_SNAPSHOT_HASH = "data_snapshot_hash"
TAG_CONTRACT_FINGERPRINT = "contract_fingerprint"
TAG_DAGSTER_RUN_ID = "dagster_run_id"
TAG_OOT_WINDOW = "oot_window"
TAG_POLICY_VERSION = "policy_version"
TAG_MODEL_SHA256 = "model_sha256"
TAG_GATE_DECISION = "gate_decision"
TAG_GATE_REASON = "gate_reason"
# Written by the credit_risk_model asset: the application days trained on (first/last, the
# out-of-time window included), the first early-stopping day, and what launched the run.
TAG_TRAINING_WINDOW = "training_window"
TAG_EARLY_STOPPING_START = "early_stopping_start"
TAG_TRIGGER = "retrain_trigger"
TAG_TRIGGER_EVIDENCE = "retrain_trigger_evidence"

# Registered-model tags holding the alias history, one event per tag.
_ALIAS_EVENT_PREFIX = "aios.alias_event."
_PUSHING_ACTIONS = ("set", "promote")

# ``log_model`` reads the process-global tracking URI; serialize the window that moves it.
_GLOBAL_URI_LOCK = threading.Lock()


class RegistryError(RuntimeError):
    """The registry cannot do what was asked; the message says why."""


class ModelVersionNotFoundError(RegistryError, LookupError):
    """No such registered model version."""


class ModelUnavailableError(RegistryError):
    """A model version cannot be loaded: missing alias or version, missing or corrupt files."""


class RollbackError(RegistryError):
    """There is no previous champion to go back to, or the alias history disagrees."""


@dataclass(frozen=True)
class RegistryConfig:
    """Where the registry lives.

    ``tracking_uri`` is a database URI (``sqlite:////absolute/path/mlflow.db``, four
    slashes, or ``postgresql+psycopg://...``) or a tracking server (``http://`` or
    ``https://``).

    ``artifact_location`` is a URI (``file:///...``, ``s3://...``) used when the registry
    creates a missing experiment on a database URI. On a tracking server it is not used at
    all: a missing experiment is created without a client-side location, so it gets the
    server's default (``mlflow-artifacts:/<id>`` when the server runs with
    ``--serve-artifacts``), which every machine reads through the server; no local folder
    is created. An existing experiment on a server whose artifacts are in a local folder
    (``file:`` or a bare path) is refused with ``RegistryError``, because other machines
    could not load its models.
    """

    tracking_uri: str
    artifact_location: str
    experiment_name: str = "credit_risk"
    model_name: str = REGISTERED_MODEL_NAME

    def __post_init__(self) -> None:
        if self.tracking_uri.startswith("sqlite:///") and not self.tracking_uri.startswith(
            "sqlite:////"
        ):
            raise ValueError(
                f"tracking_uri {self.tracking_uri!r} is a relative SQLite path, which depends "
                "on the working directory; use sqlite:////absolute/path/mlflow.db (four slashes)"
            )
        if self.tracking_uri.startswith("file:") or "://" not in self.tracking_uri:
            raise ValueError(
                f"tracking_uri {self.tracking_uri!r} is a file store, which MLflow 3 refuses; "
                "use sqlite:////absolute/path/mlflow.db or a tracking server URL"
            )
        if "://" not in self.artifact_location and not self.artifact_location.startswith(
            "file:"
        ):
            raise ValueError(
                f"artifact_location {self.artifact_location!r} must be a URI "
                "(e.g. file:///absolute/folder), not a bare path"
            )
        if not self.model_name or not self.experiment_name:
            raise ValueError("model_name and experiment_name must not be empty")


def default_registry_config(paths: AiosPaths) -> RegistryConfig:
    """The embedded registry of one data directory: SQLite backend, local artifact folder."""
    return RegistryConfig(tracking_uri=paths.mlflow_tracking_uri, artifact_location=paths.mlflow_artifact_uri)


def configured_registry_config(paths: AiosPaths) -> RegistryConfig:
    """The registry in force (:func:`aios_pipelines.settings.mlflow_tracking_uri`), with the
    data directory's artifact folder for an embedded or database registry."""
    return RegistryConfig(tracking_uri=mlflow_tracking_uri(paths), artifact_location=paths.mlflow_artifact_uri)


@dataclass
class ModelVersionInfo:
    """One registered version as the platform sees it."""

    version: int
    run_id: str
    aliases: list[str]
    metrics: dict[str, float]
    tags: dict[str, str]
    created_at: datetime
    status_note: str
    model_id: str | None = None
    source: str = ""

    @property
    def is_champion(self) -> bool:
        return CHAMPION_ALIAS in self.aliases


@dataclass
class _AliasEvent:
    seq: int
    alias: str
    action: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    at: str
    key: str = field(default="", compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "alias": self.alias,
            "action": self.action,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "actor": self.actor,
            "reason": self.reason,
            "at": self.at,
        }


class ModelRegistry:
    """The credit model registry over one MLflow tracking store."""

    def __init__(self, config: RegistryConfig):
        self.config = config
        _ensure_local_folders(config)
        self._client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)
        self.experiment_id = self._ensure_experiment()

    # ------------------------------------------------------------------ logging

    def log_and_register(
        self,
        booster: lightgbm.Booster,
        *,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
        feature_spec: Mapping[str, Any],
        feature_ranges: Mapping[str, Any],
        contract_fingerprint: str,
        policy_version: str | None,
        data_snapshot_hash: str,
        dagster_run_id: str | None,
        artifacts: Mapping[str, Path],
        oot_window: tuple[str, str],
    ) -> ModelVersionInfo:
        """Log one training run and register its model as a new version.

        The version is created last, once the run, its artifacts, the model files and the
        model card are all in place: a failure on the way leaves a FAILED run and no
        version.
        """
        features = _validate_feature_spec(booster, feature_spec)
        artifact_files = _validate_artifacts(artifacts)
        oot_start, oot_end = (str(oot_window[0]), str(oot_window[1]))
        metric_values = {str(k): float(v) for k, v in metrics.items()}
        param_values = {str(k): _param_text(v) for k, v in params.items()}

        version_tags = {
            TAG_DATA_SNAPSHOT_HASH: data_snapshot_hash,
            TAG_CONTRACT_FINGERPRINT: contract_fingerprint,
            TAG_OOT_WINDOW: f"{oot_start}/{oot_end}",
        }
        if dagster_run_id:
            version_tags[TAG_DAGSTER_RUN_ID] = dagster_run_id
        if policy_version:
            version_tags[TAG_POLICY_VERSION] = policy_version

        client = self._client
        run = client.create_run(
            self.experiment_id,
            run_name=f"{self.config.model_name}-{dagster_run_id[:8]}" if dagster_run_id else None,
            tags={**version_tags, "feature_count": str(len(features))},
        )
        run_id = run.info.run_id
        model_id: str | None = None
        try:
            logged = client.create_logged_model(
                self.experiment_id,
                name=LOGGED_MODEL_NAME,
                source_run_id=run_id,
                params=param_values,
                tags=version_tags,
                model_type="lightgbm",
            )
            model_id = logged.model_id
            client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])
            now_ms = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[
                    Metric(key, value, now_ms, 0, model_id=model_id)
                    for key, value in metric_values.items()
                ],
                params=[Param(key, value) for key, value in param_values.items()],
            )
            for name, path in artifact_files.items():
                _log_named_artifact(client, run_id, name, path)

            with self._global_tracking_uri():
                mlflow.lightgbm.log_model(
                    booster,
                    name=LOGGED_MODEL_NAME,
                    model_id=model_id,
                    # Explicit requirements skip MLflow's slow requirement inference.
                    pip_requirements=[f"lightgbm=={lightgbm.__version__}"],
                )
            model_uri = client.get_logged_model(model_id).artifact_location
            manifest = self._model_manifest(model_uri)

            card = {
                "schema_version": MODEL_CARD_SCHEMA_VERSION,
                "model_name": self.config.model_name,
                "run_id": run_id,
                "model_id": model_id,
                "created_at": datetime.now(timezone.utc).isoformat(),
                "feature_spec": dict(feature_spec),
                "feature_ranges": dict(feature_ranges),
                "metrics": metric_values,
                "params": dict(params),
                "contract_fingerprint": contract_fingerprint,
                "policy_version": policy_version,
                "data_snapshot_hash": data_snapshot_hash,
                "dagster_run_id": dagster_run_id,
                "oot_window": {"start": oot_start, "end": oot_end},
                "artifacts": sorted(_artifact_name(n, p) for n, p in artifact_files.items()),
                "model_files_sha256": manifest,
                "lightgbm_version": lightgbm.__version__,
                "mlflow_version": mlflow.__version__,
            }
            with tempfile.TemporaryDirectory() as tmp:
                card_path = Path(tmp) / MODEL_CARD_FILE
                card_path.write_text(json.dumps(card, indent=2, sort_keys=True, default=_json_default))
                client.log_artifact(run_id, str(card_path))

            model_sha = _manifest_digest(manifest)
            self._ensure_registered_model()
            # The SQL registry store resolves a ``models:/<model_id>`` source through a
            # client on the process-global tracking URI, not this client's URI.
            with self._global_tracking_uri():
                mv = client.create_model_version(
                    self.config.model_name,
                    source=f"models:/{model_id}",
                    run_id=run_id,
                    tags={**version_tags, TAG_MODEL_SHA256: model_sha},
                    model_id=model_id,
                )
        except BaseException:
            _mark_failed(client, run_id, model_id)
            raise
        client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FINISHED))
        return self.get_version(int(mv.version))

    # ------------------------------------------------------------------ reading

    def list_versions(self) -> list[ModelVersionInfo]:
        """Every version of the registered model, newest first."""
        if not self._registered_model_exists():
            return []
        versions = self._client.search_model_versions(
            filter_string=f"name = '{_quote(self.config.model_name)}'"
        )
        aliases = self._aliases_by_version()
        infos = [self._info(mv, aliases) for mv in versions]
        return sorted(infos, key=lambda info: info.version, reverse=True)

    def get_version(self, version: int | str) -> ModelVersionInfo:
        mv = self._model_version(_version_number(version))
        return self._info(mv, self._aliases_by_version())

    def champion(self) -> ModelVersionInfo | None:
        version = self._alias_version(CHAMPION_ALIAS)
        return None if version is None else self.get_version(version)

    def alias_version(self, alias: str) -> int | None:
        """The version carrying ``alias``, or None."""
        return self._alias_version(alias)

    def run_artifact(self, version: int | str, name: str, dst_dir: Path) -> Path:
        """A file the version's training run logged (e.g. ``reference_sample.parquet``),
        copied into ``dst_dir``; ``ModelUnavailableError`` when it is missing."""
        info = self.get_version(version) if not isinstance(version, str) or version.isdigit() else None
        if info is None:
            number = self.alias_version(str(version))
            if number is None:
                raise ModelUnavailableError(f"no model version holds the alias {version!r}")
            info = self.get_version(number)
        Path(dst_dir).mkdir(parents=True, exist_ok=True)
        try:
            local = self._client.download_artifacts(info.run_id, name, str(dst_dir))
        except (MlflowException, OSError) as exc:
            raise ModelUnavailableError(
                f"artifact {name!r} of version {info.version} of registered model "
                f"{self.config.model_name!r} is unavailable: {exc}"
            ) from exc
        return Path(local)

    def load_booster(
        self, version_or_alias: int | str = CHAMPION_ALIAS
    ) -> tuple[lightgbm.Booster, dict[str, Any]]:
        """The LightGBM booster of a version (a number, or an alias such as ``champion``)
        and its model card; the card gets a ``version`` key naming the loaded version.

        Every model file is checked against the checksums recorded at registration, so a
        deleted, truncated or edited model raises ``ModelUnavailableError`` naming the
        version instead of scoring with a damaged model.
        """
        version = self._resolve_for_loading(version_or_alias)
        name = self.config.model_name
        where = f"version {version} of registered model '{name}'"
        try:
            mv = self._client.get_model_version(name, str(version))
            model_uri = self._client.get_model_version_download_uri(name, str(version))
        except MlflowException as exc:
            raise ModelUnavailableError(f"{where} cannot be read from the registry: {exc}") from exc

        with tempfile.TemporaryDirectory(prefix="aios-model-") as tmp:
            try:
                card_file = self._client.download_artifacts(mv.run_id, MODEL_CARD_FILE, tmp)
                card = json.loads(Path(card_file).read_text())
                if not isinstance(card, dict):
                    raise ValueError("not a JSON object")
            except (MlflowException, OSError, ValueError) as exc:
                raise ModelUnavailableError(
                    f"{where}: the model card {MODEL_CARD_FILE} of run {mv.run_id} is missing "
                    f"or unreadable ({exc})"
                ) from exc
            try:
                local_model = mlflow.artifacts.download_artifacts(
                    artifact_uri=model_uri,
                    dst_path=str(Path(tmp) / "model"),
                    tracking_uri=self.config.tracking_uri,
                )
            except (MlflowException, OSError) as exc:
                raise ModelUnavailableError(
                    f"{where}: the model files at {model_uri} are missing ({exc})"
                ) from exc
            expected = card.get("model_files_sha256") or {}
            actual = _local_manifest(Path(local_model))
            if not expected:
                raise ModelUnavailableError(f"{where}: the model card has no file checksums")
            if actual != expected:
                damaged = sorted(
                    f for f in set(expected) | set(actual) if expected.get(f) != actual.get(f)
                )
                raise ModelUnavailableError(
                    f"{where}: the model files at {model_uri} do not match the checksums "
                    f"recorded at registration (missing or changed: {', '.join(damaged)})"
                )
            try:
                booster = mlflow.lightgbm.load_model(local_model)
            except Exception as exc:  # LightGBMError, MlflowException, OSError...
                raise ModelUnavailableError(
                    f"{where}: the model at {model_uri} cannot be loaded ({exc})"
                ) from exc
        features = list(card.get("feature_spec", {}).get("features", []))
        if booster.feature_name() != features:
            raise ModelUnavailableError(
                f"{where}: the booster's features {booster.feature_name()} differ from the "
                f"model card's {features}"
            )
        card["version"] = version
        return booster, card

    # ------------------------------------------------------------------ aliases

    def set_alias(self, alias: str, version: int | str, *, actor: str, reason: str) -> ModelVersionInfo:
        """Point ``alias`` at ``version`` and record who, why, when, from and to.

        Setting an alias to the version it already names changes nothing and records
        nothing, so a re-run of the same promotion is harmless.
        """
        return self._move_alias(alias, version, action="set", actor=actor, reason=reason)

    def promote(self, version: int | str, *, actor: str, reason: str) -> ModelVersionInfo:
        """Make ``version`` the champion; the previous champion stays on the rollback stack.

        A ``challenger`` alias on the promoted version is removed (it is no longer one).
        """
        info = self._move_alias(CHAMPION_ALIAS, version, action="promote", actor=actor, reason=reason)
        if self._alias_version(CHALLENGER_ALIAS) == info.version:
            self._client.delete_registered_model_alias(self.config.model_name, CHALLENGER_ALIAS)
            self._record(
                CHALLENGER_ALIAS, "remove", info.version, None, actor, f"promoted to champion: {reason}"
            )
            info = self.get_version(info.version)
        return info

    def rollback(self, *, actor: str, reason: str) -> ModelVersionInfo:
        """Move the champion back to the champion before it; repeated calls walk back further."""
        _require_text(actor=actor, reason=reason)
        stack = self._champion_stack()
        current = self._alias_version(CHAMPION_ALIAS)
        if current is None:
            raise RollbackError(f"registered model '{self.config.model_name}' has no champion to roll back")
        if not stack or stack[-1] != current:
            recorded = stack[-1] if stack else None
            raise RollbackError(
                f"the champion alias points at version {current} but the recorded alias history "
                f"ends at version {recorded}: the alias was moved outside this registry; "
                "use promote(version) to choose the champion explicitly"
            )
        if len(stack) < 2:
            raise RollbackError(
                f"no previous champion to roll back to: version {current} is the first champion "
                f"of registered model '{self.config.model_name}' in the alias history"
            )
        target = stack[-2]
        self._model_version(target)  # the previous champion must still exist
        self._client.set_registered_model_alias(self.config.model_name, CHAMPION_ALIAS, str(target))
        self._record(CHAMPION_ALIAS, "rollback", current, target, actor, reason)
        return self.get_version(target)

    def alias_history(self) -> list[dict[str, Any]]:
        """Every recorded alias move, oldest first: seq, alias, action (set / promote /
        rollback / remove), from_version, to_version, actor, reason, at (ISO UTC)."""
        return [event.as_dict() for event in self._events()]

    def tag_version(self, version: int | str, tags: Mapping[str, str]) -> ModelVersionInfo:
        """Set tags on a version (the promotion gate records its decision this way)."""
        number = _version_number(version)
        self._model_version(number)
        for key, value in tags.items():
            self._client.set_model_version_tag(self.config.model_name, str(number), key, str(value))
        return self.get_version(number)

    # ------------------------------------------------------------------ internals

    def _ensure_experiment(self) -> str:
        name = self.config.experiment_name
        server = _is_tracking_server(self.config.tracking_uri)
        experiment = self._client.get_experiment_by_name(name)
        if experiment is None:
            if server:
                # The server's default location (mlflow-artifacts:/<id> with
                # --serve-artifacts): readable from every machine, unlike a local folder.
                experiment_id = self._client.create_experiment(name)
                experiment = self._client.get_experiment(experiment_id)
                _refuse_local_artifacts_on_server(experiment, self.config.tracking_uri)
                return experiment_id
            return self._client.create_experiment(name, artifact_location=self.config.artifact_location)
        if experiment.lifecycle_stage != "active":
            raise RegistryError(
                f"experiment '{name}' at {self.config.tracking_uri} is deleted; restore it in "
                "MLflow or choose another experiment_name"
            )
        if server:
            _refuse_local_artifacts_on_server(experiment, self.config.tracking_uri)
            return experiment.experiment_id
        if self.config.artifact_location.startswith("file:") and _same_location(
            experiment.artifact_location, self.config.artifact_location
        ) is False:
            raise RegistryError(
                f"experiment '{name}' at {self.config.tracking_uri} stores artifacts at "
                f"{experiment.artifact_location}, not at {self.config.artifact_location}: the "
                "data directory was moved or two configurations share one database"
            )
        return experiment.experiment_id

    def _registered_model_exists(self) -> bool:
        try:
            self._client.get_registered_model(self.config.model_name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise
        return True

    def _ensure_registered_model(self) -> None:
        if not self._registered_model_exists():
            try:
                self._client.create_registered_model(
                    self.config.model_name,
                    description="Probability of default for credit applications (LightGBM).",
                )
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # created concurrently
                    raise

    def _model_version(self, version: int) -> ModelVersion:
        try:
            return self._client.get_model_version(self.config.model_name, str(version))
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise ModelVersionNotFoundError(
                    f"registered model '{self.config.model_name}' has no version {version}"
                ) from exc
            raise

    def _aliases_by_version(self) -> dict[int, list[str]]:
        # search_model_versions returns versions with empty ``aliases``: read them from the
        # registered model instead.
        try:
            registered = self._client.get_registered_model(self.config.model_name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise
        by_version: dict[int, list[str]] = {}
        for alias, version in (registered.aliases or {}).items():
            by_version.setdefault(int(version), []).append(alias)
        return {v: sorted(a) for v, a in by_version.items()}

    def _alias_version(self, alias: str) -> int | None:
        try:
            registered = self._client.get_registered_model(self.config.model_name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        version = (registered.aliases or {}).get(alias)
        return None if version is None else int(version)

    def _info(self, mv: ModelVersion, aliases: Mapping[int, list[str]]) -> ModelVersionInfo:
        metrics: dict[str, float] = {}
        if mv.run_id:
            try:
                metrics = dict(self._client.get_run(mv.run_id).data.metrics)
            except MlflowException:
                metrics = {}
        tags = dict(mv.tags or {})
        decision = tags.get(TAG_GATE_DECISION, "")
        gate_reason = tags.get(TAG_GATE_REASON, "")
        if decision and gate_reason and not gate_reason.startswith(decision):
            status_note = f"{decision}: {gate_reason}"
        else:
            status_note = gate_reason or decision
        source = mv.source or ""
        model_id = getattr(mv, "model_id", None) or (
            source.removeprefix("models:/") if source.startswith("models:/m-") else None
        )
        return ModelVersionInfo(
            version=int(mv.version),
            run_id=mv.run_id or "",
            aliases=list(aliases.get(int(mv.version), [])),
            metrics=metrics,
            tags=tags,
            created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=timezone.utc),
            status_note=status_note,
            model_id=model_id,
            source=source,
        )

    def _resolve_for_loading(self, version_or_alias: int | str) -> int:
        name = self.config.model_name
        if isinstance(version_or_alias, int) or str(version_or_alias).isdigit():
            version = int(version_or_alias)
            try:
                self._model_version(version)
            except ModelVersionNotFoundError as exc:
                raise ModelUnavailableError(str(exc)) from exc
            return version
        alias = str(version_or_alias)
        version = self._alias_version(alias)
        if version is None:
            raise ModelUnavailableError(
                f"no version of registered model '{name}' carries the alias '{alias}' "
                f"(tracking store {self.config.tracking_uri})"
            )
        return version

    def _move_alias(
        self, alias: str, version: int | str, *, action: str, actor: str, reason: str
    ) -> ModelVersionInfo:
        _require_text(actor=actor, reason=reason, alias=alias)
        if alias.isdigit() or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
            raise ValueError(
                f"alias {alias!r} is reserved: MLflow reserves 'latest' and v<number>, and a "
                "number here means a version"
            )
        number = _version_number(version)
        self._model_version(number)
        current = self._alias_version(alias)
        if current == number:
            return self.get_version(number)
        self._client.set_registered_model_alias(self.config.model_name, alias, str(number))
        self._record(alias, action, current, number, actor, reason)
        return self.get_version(number)

    def _record(
        self,
        alias: str,
        action: str,
        from_version: int | None,
        to_version: int | None,
        actor: str,
        reason: str,
    ) -> None:
        events = self._events()
        seq = (events[-1].seq + 1) if events else 1
        event = _AliasEvent(
            seq=seq,
            alias=alias,
            action=action,
            from_version=from_version,
            to_version=to_version,
            actor=actor,
            reason=reason,
            at=datetime.now(timezone.utc).isoformat(),
        )
        # A random suffix keeps two concurrent writers of the same seq from overwriting
        # each other's event.
        key = f"{_ALIAS_EVENT_PREFIX}{seq:06d}.{uuid.uuid4().hex[:8]}"
        self._client.set_registered_model_tag(
            self.config.model_name, key, json.dumps(event.as_dict(), sort_keys=True)
        )

    def _events(self) -> list[_AliasEvent]:
        try:
            registered = self._client.get_registered_model(self.config.model_name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return []
            raise
        events = []
        for key, value in (registered.tags or {}).items():
            if not key.startswith(_ALIAS_EVENT_PREFIX):
                continue
            try:
                data = json.loads(value)
            except ValueError as exc:
                raise RegistryError(f"alias history tag {key} is not JSON: {value!r}") from exc
            events.append(_AliasEvent(key=key, **data))
        return sorted(events, key=lambda e: (e.seq, e.at, e.key))

    def _champion_stack(self) -> list[int]:
        stack: list[int] = []
        for event in self._events():
            if event.alias != CHAMPION_ALIAS:
                continue
            if event.action in _PUSHING_ACTIONS and event.to_version is not None:
                stack.append(event.to_version)
            elif event.action == "rollback" and stack:
                stack.pop()
        return stack

    def _model_manifest(self, model_uri: str) -> dict[str, str]:
        with tempfile.TemporaryDirectory(prefix="aios-model-") as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri, dst_path=tmp, tracking_uri=self.config.tracking_uri
            )
            return _local_manifest(Path(local))

    @contextmanager
    def _global_tracking_uri(self) -> Iterator[None]:
        """Point MLflow's process-global tracking URI at this registry, then restore it."""
        with _GLOBAL_URI_LOCK:
            previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
            mlflow.set_tracking_uri(self.config.tracking_uri)
            try:
                yield
            finally:
                mlflow.set_tracking_uri(previous)


# ---------------------------------------------------------------------- helpers


def _is_tracking_server(tracking_uri: str) -> bool:
    return urlparse(tracking_uri).scheme.lower() in ("http", "https")


def _refuse_local_artifacts_on_server(experiment: Any, tracking_uri: str) -> None:
    """A tracking server's experiment must not keep its artifacts in a local folder: the
    files would land on whichever machine logged them, and no other machine could load the
    model. Refused before anything is written."""
    location = experiment.artifact_location or ""
    scheme = urlparse(location).scheme.lower()
    if scheme == "file" or not scheme:
        raise RegistryError(
            f"experiment '{experiment.name}' (id {experiment.experiment_id}) on the tracking "
            f"server {tracking_uri} stores artifacts in the local folder {location!r}: models "
            "logged there could only be loaded on the machine that wrote them. Start the "
            "server with --serve-artifacts (or --default-artifact-root on shared storage) and "
            "use an experiment whose artifact location is mlflow-artifacts:/... or a shared "
            "store (s3://, gs://, ...): rename or delete this experiment on the server, or set "
            "another experiment_name"
        )


def _ensure_local_folders(config: RegistryConfig) -> None:
    if _is_tracking_server(config.tracking_uri):
        return  # nothing local: the server owns the backend and the artifacts
    if config.tracking_uri.startswith("sqlite:////"):
        Path(config.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    local_artifacts = _local_path(config.artifact_location)
    if local_artifacts is not None:
        local_artifacts.mkdir(parents=True, exist_ok=True)


def _mark_failed(client: MlflowClient, run_id: str, model_id: str | None) -> None:
    """Best effort: the original error matters more than a failed clean-up."""
    try:
        client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FAILED))
        if model_id is not None and client.get_logged_model(model_id).status != LoggedModelStatus.READY:
            client.finalize_logged_model(model_id, LoggedModelStatus.FAILED)
    except MlflowException:
        pass


def _local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


def _same_location(stored: str, configured: str) -> bool | None:
    a, b = _local_path(stored), _local_path(configured)
    if a is None or b is None:
        return None
    return a.resolve() == b.resolve()


def _version_number(version: int | str) -> int:
    if isinstance(version, bool):
        raise ValueError(f"not a model version: {version!r}")
    if isinstance(version, int):
        number = version
    elif isinstance(version, str) and version.strip().isdigit():
        number = int(version)
    else:
        raise ValueError(f"not a model version number: {version!r}")
    if number < 1:
        raise ValueError(f"model versions start at 1, got {number}")
    return number


def _require_text(**values: str) -> None:
    for name, value in values.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string (it goes into the alias history)")


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def _validate_feature_spec(booster: lightgbm.Booster, feature_spec: Mapping[str, Any]) -> list[str]:
    features = list(feature_spec.get("features") or [])
    if not features:
        raise ValueError("feature_spec must list the model's features under 'features'")
    if booster.feature_name() != features:
        raise ValueError(
            f"feature_spec['features'] {features} differs from the booster's feature names "
            f"{booster.feature_name()}: train on a frame whose columns are the spec's features"
        )
    unknown = set(feature_spec.get("categorical") or []) - set(features)
    if unknown:
        raise ValueError(f"feature_spec['categorical'] names unknown features: {sorted(unknown)}")
    return features


def _validate_artifacts(artifacts: Mapping[str, Path]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for name, path in artifacts.items():
        path = Path(path)
        if not name or "/" in name or name == MODEL_CARD_FILE:
            raise ValueError(f"artifact name {name!r} is empty, contains '/' or is reserved")
        if not path.exists():
            raise ValueError(f"artifact {name!r} does not exist: {path}")
        files[name] = path
    return files


def _artifact_name(name: str, path: Path) -> str:
    """The artifact's name in the run: the key, with the file's suffix when the key has none."""
    if path.is_dir() or Path(name).suffix:
        return name
    return f"{name}{path.suffix}"


def _log_named_artifact(client: MlflowClient, run_id: str, name: str, path: Path) -> None:
    if path.is_dir():
        client.log_artifacts(run_id, str(path), artifact_path=name)
        return
    target = _artifact_name(name, path)
    if target == path.name:
        client.log_artifact(run_id, str(path))
        return
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / target
        copy.write_bytes(path.read_bytes())
        client.log_artifact(run_id, str(copy))


def _local_manifest(folder: Path) -> dict[str, str]:
    return {
        file.relative_to(folder).as_posix(): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sorted(folder.rglob("*"))
        if file.is_file()
    }


def _manifest_digest(manifest: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(manifest), sort_keys=True).encode()).hexdigest()


def _param_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        item = value.item()
        return None if isinstance(item, float) and math.isnan(item) else item
    if hasattr(value, "tolist"):  # numpy arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
