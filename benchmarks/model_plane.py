"""Model-plane benchmark stages: training and scoring. Each function is one stage, run by
``harness.run_stage`` in its own process, and returns a dict whose ``seconds`` covers only
the work being measured (inputs are generated, and outputs verified, outside the timer).

Data. ``generate_applications`` gives one day of typed applications and the hidden truth
(``defaulted``) per call; a training set is ``days`` consecutive days of ``rows / days``
applications each (40 days by default, so ``application_date`` spans enough days for the
default 14-day out-of-time window and the early-stopping days before it), turned into
features with ``build_features`` and joined to the label. The scoring set is new
applications from the days right after the training period. Both are deterministic for a
seed, so every stage rebuilds exactly the same frames.

Training:

* ``train``: ours. ``train_credit_model(frame, spec, TrainingConfig())``: the data-snapshot
  hash, the canonical sort, the float64 matrix, the out-of-time and early-stopping cuts,
  LightGBM with early stopping on its own validation days, the booster trimmed to
  ``best_iteration`` trees, the out-of-time predictions and the feature ranges. Saves the
  model (and its spec and feature ranges) for the scoring stages.
* ``train_bare``: the baseline. ``lightgbm.train`` with the same parameters
  (``lightgbm_params``) on the same fit rows of the same matrix (prepared before timing),
  for exactly as many rounds as ours grew (``best_iteration + early_stopping_rounds``,
  capped at ``max_rounds``), with no validation set, no early stopping, no hashing.

Scoring (the model saved by ``train``, over the same applications):

* ``predict_bare``: the baseline. ``Booster.predict`` on the prepared float64 matrix.
* ``predict_pd``: ours, frame to matrix to ``predict``.
* ``score_without_reasons``: ``score_applications`` with a copy of the shipped policy whose
  ``reasons.required_for`` is empty (``dataclasses.replace``), so no row is explained by the
  model (hard-rule declines still carry their rule's conditions, as ``score_applications``
  always gives a decline without reasons).
* ``score_with_reasons``: ``score_applications`` with the shipped policy (reasons for
  declines and referrals, ``explain_rows`` on those rows only).
* ``contrib_all_rows``: ``Booster.predict(matrix, pred_contrib=True)`` on every row: exact
  TreeSHAP for all, the cost the pipeline avoids by explaining only where needed.
"""

from __future__ import annotations

import cProfile
import datetime as dt
from dataclasses import replace
import gc
import json
import statistics
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
import yaml

from aios_pipelines.features.build import APPLICATION_DATE, APPLICATION_ID, build_features, feature_definition
from aios_pipelines.ingestion.contract import load_contract
from aios_pipelines.modeling.explanations import explain_rows
from aios_pipelines.modeling.metrics import evaluate_predictions
from aios_pipelines.modeling.scoring import ScoringModel, score_applications
from aios_pipelines.modeling.training import (
    DEFAULT_LABEL,
    ID_COLUMN,
    FeatureSpec,
    TrainingConfig,
    data_snapshot_hash,
    feature_matrix,
    lightgbm_params,
    predict_pd,
    train_credit_model,
)
from aios_pipelines.policy.policy import DEFAULT_POLICY_PATH, DecisionPolicy, load_policy
from aios_pipelines.settings import DEFAULT_CONTRACT_PATH
from aios_pipelines.synthetic.generator import generate_applications
from benchmarks.harness import rate
from benchmarks.stages import current_rss_mib

DEFAULT_START = "2026-01-01"
DEFAULT_SEED = 42
DEFAULT_TRAIN_DAYS = 40
REASON_CATALOG_PATH = DEFAULT_CONTRACT_PATH.with_name("reason_codes.yaml")


# ----------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------


def _dataset():
    return load_contract(DEFAULT_CONTRACT_PATH).applications


def feature_spec() -> FeatureSpec:
    """The spec the ``credit_risk_model`` asset builds from the shipped contract."""
    definition = feature_definition(_dataset())
    return FeatureSpec(
        features=list(definition.features), categorical=list(definition.categorical), monotone=dict(definition.monotone)
    )


def _days(start: str, days: int) -> list[dt.date]:
    first = dt.date.fromisoformat(start)
    return [first + dt.timedelta(days=i) for i in range(days)]


def applications_over_days(rows: int, days: int, seed: int, start: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(applications, truth): ``rows / days`` applications on each of ``days`` days from ``start``."""
    if days < 1 or rows < days:
        raise ValueError(f"need at least one application per day: rows={rows}, days={days}")
    per_day = rows // days
    applications: list[pl.DataFrame] = []
    truth: list[pl.DataFrame] = []
    for day in _days(start, days):
        day_applications, day_truth = generate_applications(day, per_day, seed)
        applications.append(day_applications)
        truth.append(day_truth.select(APPLICATION_ID, DEFAULT_LABEL))
    return pl.concat(applications), pl.concat(truth)


def training_frame(rows: int, days: int, seed: int, start: str) -> pl.DataFrame:
    """Features of ``rows`` applications over ``days`` days, with the 0/1 label ``defaulted``."""
    applications, truth = applications_over_days(rows, days, seed, start)
    features = build_features(applications, _dataset())
    frame = features.join(truth, on=APPLICATION_ID, how="inner")
    if frame.height != applications.height:
        raise AssertionError(f"label join lost rows: {frame.height} of {applications.height}")
    return frame


def _hash_columns(frame: pl.DataFrame, spec: FeatureSpec) -> list[str]:
    """The columns ``train_credit_model`` hashes and sorts by, in its order."""
    return [APPLICATION_DATE, *[c for c in (ID_COLUMN,) if c in frame.columns], DEFAULT_LABEL, *spec.features]


def _rss() -> float | None:
    value = current_rss_mib()
    return round(value, 1) if value is not None else None


# ----------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------


def rounds_grown(best_iteration: int, config: TrainingConfig) -> int:
    """Boosting rounds ``lgb.train`` ran before early stopping ended it: LightGBM stops once
    ``early_stopping_rounds`` rounds passed without improving on the best one."""
    return min(config.max_rounds, best_iteration + config.early_stopping_rounds)


def train(
    rows: int,
    model_path: str,
    days: int = DEFAULT_TRAIN_DAYS,
    seed: int = DEFAULT_SEED,
    start: str = DEFAULT_START,
) -> dict[str, Any]:
    spec = feature_spec()
    config = TrainingConfig()
    frame = training_frame(rows, days, seed, start)
    gc.collect()
    rss_before = _rss()

    began, cpu_began = time.perf_counter(), time.process_time()
    trained = train_credit_model(frame, spec, config)
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu_began

    # Outside the timer: how much of it is the data-snapshot hash (and its sort) alone.
    t0 = time.perf_counter()
    data_snapshot_hash(frame, _hash_columns(frame, spec))
    hash_seconds = time.perf_counter() - t0

    model_file = Path(model_path)
    model_file.parent.mkdir(parents=True, exist_ok=True)
    trained.booster.save_model(str(model_file))
    sidecar = {
        "feature_spec": spec.as_dict(),
        "feature_ranges": {k: list(v) for k, v in trained.feature_ranges.items()},
        "best_iteration": trained.best_iteration,
        "trained_rows": rows,
        "train_days": days,
        "start": start,
        "seed": seed,
    }
    model_file.with_suffix(".json").write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
    metrics = evaluate_predictions(trained.oot_labels, trained.oot_predictions)
    rounds = rounds_grown(trained.best_iteration, config)
    return {
        "label": "ours: train_credit_model (default TrainingConfig)",
        "rows": frame.height,
        "days": days,
        "fit_rows": trained.fit_rows,
        "early_stopping_rows": trained.early_stopping_rows,
        "oot_rows": trained.oot_rows,
        "early_stopping_start": trained.early_stopping_start.isoformat(),
        "oot_start": trained.oot_start.isoformat(),
        "best_iteration": trained.best_iteration,
        "rounds_grown": rounds,
        "trees_kept": trained.booster.num_trees(),
        "num_leaves": config.num_leaves,
        "num_threads": config.num_threads,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "rows_per_second": rate(frame.height, seconds),
        "fit_rows_per_second": rate(trained.fit_rows, seconds),
        "data_hash_seconds_measured_apart": round(hash_seconds, 3),
        "oot_auc": round(float(metrics.auc), 4),
        "oot_default_rate": round(float(metrics.default_rate), 4),
        "model_bytes": model_file.stat().st_size,
        "rss_before_timed_mib": rss_before,
    }


def train_bare(
    rows: int,
    early_stopping_start: str,
    rounds: int,
    days: int = DEFAULT_TRAIN_DAYS,
    seed: int = DEFAULT_SEED,
    start: str = DEFAULT_START,
) -> dict[str, Any]:
    spec = feature_spec()
    config = TrainingConfig()
    params = lightgbm_params(spec, config)
    frame = training_frame(rows, days, seed, start)
    # the same fit rows, in the same order, as train_credit_model grows its trees on
    columns = _hash_columns(frame, spec)
    ordered = frame.sort(columns, nulls_last=True, maintain_order=True)
    fit = ordered.filter(pl.col(APPLICATION_DATE) < dt.date.fromisoformat(early_stopping_start))
    fit_x = feature_matrix(fit, spec)
    fit_y = fit.get_column(DEFAULT_LABEL).cast(pl.Float64).to_numpy()
    del frame, ordered, fit
    gc.collect()
    rss_before = _rss()

    began, cpu_began = time.perf_counter(), time.process_time()
    fit_set = lgb.Dataset(
        fit_x,
        label=fit_y,
        feature_name=list(spec.features),
        categorical_feature=list(spec.categorical),
        params=params,
        free_raw_data=True,
    )
    booster = lgb.train(params, fit_set, num_boost_round=rounds)
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu_began

    if booster.current_iteration() != rounds:
        raise AssertionError(f"bare train ran {booster.current_iteration()} rounds, expected {rounds}")
    return {
        "label": "baseline: lightgbm.train, same params and rounds, no validation set",
        "rows": len(fit_y),
        "fit_rows": len(fit_y),
        "rounds": rounds,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "rows_per_second": rate(len(fit_y), seconds),
        "rss_before_timed_mib": rss_before,
    }


# ----------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------


def load_scoring_model(model_path: str) -> ScoringModel:
    model_file = Path(model_path)
    sidecar = json.loads(model_file.with_suffix(".json").read_text(encoding="utf-8"))
    return ScoringModel(
        booster=lgb.Booster(model_file=str(model_file)),
        feature_spec=FeatureSpec.from_dict(sidecar["feature_spec"]),
        version=f"benchmark-{sidecar['trained_rows']}",
        feature_ranges={k: (float(v[0]), float(v[1])) for k, v in sidecar["feature_ranges"].items()},
    )


def scoring_inputs(rows: int, days: int, seed: int, start: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(features, applications) for ``rows`` new applications over ``days`` days."""
    applications, _ = applications_over_days(rows, days, seed, start)
    return build_features(applications, _dataset()), applications


def reason_catalog() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(REASON_CATALOG_PATH.read_text(encoding="utf-8")) or {}


def shipped_policy() -> DecisionPolicy:
    """The shipped decision policy (``assets/policy/decision_policy.yaml``, not ``$AIOS_POLICY``)."""
    return load_policy(DEFAULT_POLICY_PATH)


def policy_without_reasons(policy: DecisionPolicy) -> DecisionPolicy:
    """A copy of ``policy`` with ``reasons.required_for`` empty: no action asks for reasons.
    Everything else (rules, thresholds, version, fingerprint) is the policy's own."""
    return replace(policy, reasons=replace(policy.reasons, required_for=()))


def _timed(function, repeat: int, profile_path: str | None) -> tuple[dict[str, Any], Any]:
    """``repeat`` timed calls: the median wall seconds and the median CPU seconds (every
    thread of this process: ``time.process_time``), each call's, and the last result. With
    ``profile_path``, one more call under cProfile (not timed) writes its statistics there."""
    walls: list[float] = []
    cpus: list[float] = []
    result = None
    for _ in range(max(1, repeat)):
        began, cpu_began = time.perf_counter(), time.process_time()
        result = function()
        walls.append(time.perf_counter() - began)
        cpus.append(time.process_time() - cpu_began)
    if profile_path:
        profiler = cProfile.Profile()
        profiler.runcall(function)
        Path(profile_path).parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(profile_path)
    timing = {
        "seconds": statistics.median(walls),
        "cpu_seconds": statistics.median(cpus),
        "runs": walls,
        "cpu_runs": cpus,
    }
    return timing, result


def _scoring_result(label: str, rows: int, timing: dict[str, Any], rss_before, **extra) -> dict[str, Any]:
    return {
        "label": label,
        "rows": rows,
        "seconds": round(timing["seconds"], 4),
        "cpu_seconds": round(timing["cpu_seconds"], 4),
        "rows_per_second": rate(rows, timing["seconds"]),
        "inner_runs_seconds": [round(x, 4) for x in timing["runs"]],
        "inner_runs_cpu_seconds": [round(x, 4) for x in timing["cpu_runs"]],
        "rss_before_timed_mib": rss_before,
        **extra,
    }


def predict_bare(
    model_path: str, rows: int, days: int, start: str, seed: int = DEFAULT_SEED, repeat: int = 3,
    profile_path: str | None = None,
) -> dict[str, Any]:
    model = load_scoring_model(model_path)
    features, _ = scoring_inputs(rows, days, seed, start)
    matrix = feature_matrix(features, model.feature_spec)
    del features
    gc.collect()
    rss_before = _rss()
    timing, pd_values = _timed(lambda: model.booster.predict(matrix), repeat, profile_path)
    return _scoring_result(
        "baseline: Booster.predict on the prepared float64 matrix", len(pd_values), timing, rss_before,
        trees=model.booster.num_trees(), features=matrix.shape[1], mean_pd=round(float(np.mean(pd_values)), 5),
    )


def predict_pd_stage(
    model_path: str, rows: int, days: int, start: str, seed: int = DEFAULT_SEED, repeat: int = 3,
    profile_path: str | None = None,
) -> dict[str, Any]:
    model = load_scoring_model(model_path)
    features, _ = scoring_inputs(rows, days, seed, start)
    gc.collect()
    rss_before = _rss()
    timing, pd_values = _timed(
        lambda: predict_pd(model.booster, features, model.feature_spec), repeat, profile_path
    )
    bare = model.booster.predict(feature_matrix(features, model.feature_spec))
    if not np.array_equal(pd_values, bare):
        raise AssertionError("predict_pd differs from Booster.predict on the same rows")
    return _scoring_result(
        "ours: predict_pd (frame -> matrix -> predict)", len(pd_values), timing, rss_before,
        equal_to_bare_predict=True,
    )


def _score(
    policy: DecisionPolicy, shipped: DecisionPolicy, label: str, model_path: str, rows: int, days: int, start: str,
    seed: int, repeat: int, profile_path: str | None,
) -> dict[str, Any]:
    model = load_scoring_model(model_path)
    features, applications = scoring_inputs(rows, days, seed, start)
    catalog = reason_catalog()
    gc.collect()
    rss_before = _rss()
    timing, outcome = _timed(
        lambda: score_applications(features, applications, policy, catalog, model), repeat, profile_path
    )
    scored = outcome.scored

    # checks and counts, outside the timer
    if scored.height != features.height or outcome.decision_source != "model":
        raise AssertionError(f"scored {scored.height} of {features.height} rows, source {outcome.decision_source}")
    bare = model.booster.predict(feature_matrix(features, model.feature_spec))
    if not np.array_equal(scored["pd"].to_numpy(), bare):
        raise AssertionError("score_applications PDs differ from Booster.predict on the same rows")
    needs = scored["action"].is_in(list(shipped.reasons.required_for))
    with_reasons = scored["reason_codes"].list.len() > 0
    hard_rule_declines = ((scored["action"] == "auto_decline") & scored["policy_hard_rule"].is_not_null()).sum()
    mix = dict(scored.group_by("action").agg(pl.len()).sort("action").iter_rows())

    # outside the timer: explain_rows alone on the rows that need reasons under this policy
    mask = scored["action"].is_in(list(policy.reasons.required_for))
    t0 = time.perf_counter()
    explain_rows(model.booster, features, model.feature_spec, mask, max_reasons=policy.reasons.max_reasons)
    explain_seconds = time.perf_counter() - t0
    return _scoring_result(
        label, scored.height, timing, rss_before,
        reasons_required_for=list(policy.reasons.required_for),
        shipped_policy_version=shipped.version,
        shipped_policy_reasons_required_for=list(shipped.reasons.required_for),
        rows_explained=int(mask.sum()),
        explain_rows_seconds_measured_apart=round(explain_seconds, 4),
        rows_needing_reasons_shipped_policy=int(needs.sum()),
        share_needing_reasons_shipped_policy=round(float(needs.mean()), 4),
        rows_with_reason_codes=int(with_reasons.sum()),
        hard_rule_declines=int(hard_rule_declines),
        action_mix=mix,
        equal_to_bare_predict=True,
    )


def score_without_reasons(
    model_path: str, rows: int, days: int, start: str, seed: int = DEFAULT_SEED, repeat: int = 3,
    profile_path: str | None = None,
) -> dict[str, Any]:
    shipped = shipped_policy()
    return _score(
        policy_without_reasons(shipped), shipped,
        "ours: score_applications, policy copy with reasons required for no action",
        model_path, rows, days, start, seed, repeat, profile_path,
    )


def score_with_reasons(
    model_path: str, rows: int, days: int, start: str, seed: int = DEFAULT_SEED, repeat: int = 3,
    profile_path: str | None = None,
) -> dict[str, Any]:
    shipped = shipped_policy()
    return _score(
        shipped, shipped,
        "ours: score_applications, shipped policy (reasons for declines and referrals)",
        model_path, rows, days, start, seed, repeat, profile_path,
    )


def contrib_all_rows(
    model_path: str, rows: int, days: int, start: str, seed: int = DEFAULT_SEED, repeat: int = 3,
    profile_path: str | None = None,
) -> dict[str, Any]:
    model = load_scoring_model(model_path)
    features, _ = scoring_inputs(rows, days, seed, start)
    matrix = feature_matrix(features, model.feature_spec)
    del features
    gc.collect()
    rss_before = _rss()
    timing, contribs = _timed(lambda: model.booster.predict(matrix, pred_contrib=True), repeat, profile_path)
    # each row's contributions sum to its raw score
    sample = slice(0, min(10_000, matrix.shape[0]))
    raw = model.booster.predict(matrix[sample], raw_score=True)
    if not np.allclose(contribs[sample].sum(axis=1), raw, atol=1e-8):
        raise AssertionError("contributions do not sum to the raw score")
    return _scoring_result(
        "reference: Booster.predict(pred_contrib=True) on every row", contribs.shape[0], timing, rss_before,
        output_shape=list(contribs.shape),
    )
