"""Training the credit-risk model: LightGBM on matured outcomes, judged out of time.

Pure functions on polars frames; nothing here imports Dagster or MLflow. The Dagster asset
reads the training set, calls :func:`train_credit_model`, logs the result to the registry and
reports metadata.

How the data is cut (newest days on the right)::

    |<------------- training period ------------->|<---- out-of-time (OOT) ---->|
    |<------ fit: trees are grown ------>|<- ES ->|<-- untouched until scored ->|

- The OOT window is the newest ``oot_days`` application days of the (already matured)
  training set. It never enters a LightGBM ``Dataset``: it neither shapes the feature bins
  nor picks the number of trees. It is scored once, at the end, by the finished model.
- Early stopping needs a validation set of its own. It is carved from the END of the
  training period (the newest ``early_stopping_fraction`` of training days), so model
  selection uses only data older than the OOT window and the OOT metrics stay an honest
  estimate of performance on the next days to come.

Determinism: the rows are sorted before the matrix is built, LightGBM runs with
``deterministic=True``, ``force_row_wise=True``, a fixed thread count and fixed seeds, so the
same data and configuration give the same model string, whatever the row order on input.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

# Defaults of TrainingConfig, kept as module constants so the Dagster config reuses them.
DEFAULT_NUM_LEAVES = 8  # small trees: exact TreeSHAP (pred_contrib) cost grows with leaves x trees
DEFAULT_LEARNING_RATE = 0.05
DEFAULT_MAX_ROUNDS = 400
DEFAULT_EARLY_STOPPING_ROUNDS = 30
DEFAULT_MIN_DATA_IN_LEAF = 50
DEFAULT_FEATURE_FRACTION = 0.9
DEFAULT_LAMBDA_L2 = 1.0
DEFAULT_SEED = 42
DEFAULT_NUM_THREADS = 2
DEFAULT_OOT_DAYS = 14
DEFAULT_EARLY_STOPPING_FRACTION = 0.15

DEFAULT_LABEL = "defaulted"
DEFAULT_DATE_COLUMN = "application_date"
ID_COLUMN = "application_id"
# Fewest application days the training period (before the OOT window) may have: one day to
# grow trees on and one day to stop early on.
MIN_TRAINING_DAYS = 2


@dataclass(frozen=True)
class TrainingConfig:
    """LightGBM settings and the size of the out-of-time window."""

    num_leaves: int = DEFAULT_NUM_LEAVES
    learning_rate: float = DEFAULT_LEARNING_RATE
    max_rounds: int = DEFAULT_MAX_ROUNDS
    early_stopping_rounds: int = DEFAULT_EARLY_STOPPING_ROUNDS
    min_data_in_leaf: int = DEFAULT_MIN_DATA_IN_LEAF
    feature_fraction: float = DEFAULT_FEATURE_FRACTION
    lambda_l2: float = DEFAULT_LAMBDA_L2
    seed: int = DEFAULT_SEED
    num_threads: int = DEFAULT_NUM_THREADS
    # The newest matured application days form the out-of-time validation window.
    oot_days: int = DEFAULT_OOT_DAYS
    # Share of the training period's newest days held out for early stopping (at least one day).
    early_stopping_fraction: float = DEFAULT_EARLY_STOPPING_FRACTION

    def __post_init__(self) -> None:
        if self.num_leaves < 2:
            raise ValueError(f"num_leaves must be at least 2, got {self.num_leaves}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {self.max_rounds}")
        if self.early_stopping_rounds < 1:
            raise ValueError(
                f"early_stopping_rounds must be at least 1, got {self.early_stopping_rounds}"
            )
        if self.min_data_in_leaf < 1:
            raise ValueError(f"min_data_in_leaf must be at least 1, got {self.min_data_in_leaf}")
        if not 0 < self.feature_fraction <= 1:
            raise ValueError(f"feature_fraction must be in (0, 1], got {self.feature_fraction}")
        if self.lambda_l2 < 0:
            raise ValueError(f"lambda_l2 must be non-negative, got {self.lambda_l2}")
        if self.num_threads < 1:
            raise ValueError(f"num_threads must be at least 1, got {self.num_threads}")
        if self.oot_days < 1:
            raise ValueError(f"oot_days must be at least 1, got {self.oot_days}")
        if not 0 < self.early_stopping_fraction < 1:
            raise ValueError(
                f"early_stopping_fraction must be in (0, 1), got {self.early_stopping_fraction}"
            )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns the model reads, which of them are categorical codes, and the monotone
    risk direction of the others (+1: risk rises with the value, -1: risk falls)."""

    features: list[str]
    categorical: list[str] = field(default_factory=list)
    monotone: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("FeatureSpec needs at least one feature")
        duplicates = sorted({f for f in self.features if self.features.count(f) > 1})
        if duplicates:
            raise ValueError(f"duplicate feature names: {duplicates}")
        known = set(self.features)
        unknown_cat = [c for c in self.categorical if c not in known]
        if unknown_cat:
            raise ValueError(f"categorical columns not among the features: {unknown_cat}")
        unknown_mono = [c for c in self.monotone if c not in known]
        if unknown_mono:
            raise ValueError(f"monotone directions given for unknown features: {unknown_mono}")
        bad_values = {c: v for c, v in self.monotone.items() if v not in (-1, 0, 1)}
        if bad_values:
            raise ValueError(f"monotone directions must be -1, 0 or +1, got {bad_values}")
        constrained_cat = [c for c in self.categorical if self.monotone.get(c, 0) != 0]
        if constrained_cat:
            raise ValueError(
                f"categorical features cannot carry a monotone constraint: {constrained_cat}"
            )

    @property
    def numeric(self) -> list[str]:
        """Features that are not categorical codes, in feature order."""
        cats = set(self.categorical)
        return [f for f in self.features if f not in cats]

    def monotone_constraints(self) -> list[int]:
        """LightGBM's ``monotone_constraints``: one entry per feature, 0 where none is given."""
        return [int(self.monotone.get(f, 0)) for f in self.features]

    def as_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "categorical": list(self.categorical),
            "monotone": {f: int(v) for f, v in self.monotone.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(
            features=list(data["features"]),
            categorical=list(data.get("categorical", [])),
            monotone={str(k): int(v) for k, v in dict(data.get("monotone", {})).items()},
        )


@dataclass
class TrainedModel:
    """A fitted booster and everything needed to register, judge and later explain it.

    ``booster`` holds exactly ``best_iteration`` trees, so ``predict`` and ``pred_contrib``
    need no ``num_iteration`` argument and a copy saved with ``model_to_string()`` scores the
    same. ``train_*`` describe the training period (fit days plus the early-stopping days);
    ``early_stopping_*`` the part of it used only to choose the number of trees.
    ``oot_predictions`` and ``oot_labels`` are in a canonical row order: by application date,
    then application id (then the other columns), whatever the order of the input frame.
    """

    booster: lgb.Booster
    feature_spec: FeatureSpec
    config: TrainingConfig
    best_iteration: int
    train_rows: int
    oot_rows: int
    oot_start: date
    oot_end: date
    train_end: date
    oot_predictions: np.ndarray
    oot_labels: np.ndarray
    data_hash: str
    # Training range (min, max) of each numeric feature over the rows the trees were grown
    # on, for out-of-range flags at scoring. A feature with no non-null value is left out.
    feature_ranges: dict[str, tuple[float, float]]
    train_start: date
    early_stopping_start: date
    early_stopping_rows: int

    @property
    def fit_rows(self) -> int:
        """Rows the trees were grown on (the training period minus the early-stopping days)."""
        return self.train_rows - self.early_stopping_rows


def lightgbm_params(spec: FeatureSpec, config: TrainingConfig) -> dict[str, Any]:
    """The LightGBM parameters for a spec and a config (also what the registry logs)."""
    return {
        "objective": "binary",
        "metric": "binary_logloss",
        "boosting": "gbdt",
        "num_leaves": config.num_leaves,
        "learning_rate": config.learning_rate,
        "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": config.feature_fraction,
        "lambda_l2": config.lambda_l2,
        "monotone_constraints": spec.monotone_constraints(),
        # Reproducibility: same data + same config => the same model string.
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.num_threads,
        "seed": config.seed,
        "bagging_seed": config.seed,
        "feature_fraction_seed": config.seed,
        "data_random_seed": config.seed,
        "drop_seed": config.seed,
        "extra_seed": config.seed,
        "objective_seed": config.seed,
        "verbosity": -1,
    }


def _day_series(frame: pl.DataFrame, date_column: str) -> pl.Series:
    if date_column not in frame.columns:
        raise ValueError(f"missing date column {date_column!r}")
    dtype = frame.schema[date_column]
    if not (dtype == pl.Date or isinstance(dtype, pl.Datetime)):
        raise ValueError(f"{date_column!r} must be a Date or Datetime column, got {dtype}")
    days = frame.get_column(date_column).cast(pl.Date)
    if days.null_count():
        raise ValueError(f"{date_column!r} has {days.null_count()} null values")
    return days


def _newest_days_start(
    days: pl.Series, window_days: int, min_train_days: int, what: str
) -> date:
    """First day of the window made of the newest ``window_days`` distinct days."""
    if window_days < 1:
        raise ValueError(f"the {what} window needs at least one day, got {window_days}")
    distinct = days.unique().sort()
    if distinct.len() < window_days + min_train_days:
        raise ValueError(
            f"too few application days for a {window_days}-day {what} window: "
            f"{distinct.len()} distinct days, need at least {window_days + min_train_days} "
            f"({min_train_days} before the window)"
        )
    return distinct[-window_days]


def split_out_of_time(
    frame: pl.DataFrame,
    oot_days: int,
    date_column: str = DEFAULT_DATE_COLUMN,
    min_train_days: int = 1,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split into (training, out-of-time): the OOT part is every row of the newest
    ``oot_days`` distinct application days present in the frame (days with no applications
    do not count), the training part every older row.

    Raises ``ValueError`` when the frame has fewer than ``oot_days + min_train_days``
    distinct days. A Datetime column is cut by calendar day.
    """
    days = _day_series(frame, date_column)
    start = _newest_days_start(days, oot_days, min_train_days, "out-of-time")
    in_window = days >= start
    return frame.filter(~in_window), frame.filter(in_window)


def _canonical_column_bytes(series: pl.Series) -> bytes:
    """A byte form of a column that does not depend on polars' in-memory layout."""
    dtype = series.dtype
    null_mask = series.is_null().to_numpy()
    parts = [np.packbits(null_mask).tobytes()]
    if dtype == pl.String or dtype == pl.Categorical or isinstance(dtype, pl.Enum):
        values = series.cast(pl.String).fill_null("").to_list()
        for value in values:
            encoded = value.encode("utf-8")
            parts.append(len(encoded).to_bytes(8, "little"))
            parts.append(encoded)
        return b"".join(parts)
    if dtype == pl.Boolean:
        values = series.fill_null(False).to_numpy().astype(np.uint8)
        parts.append(values.tobytes())
        return b"".join(parts)
    if dtype.is_numeric() or dtype.is_temporal():
        physical = series.to_physical()
        if physical.dtype.is_float():
            values = physical.cast(pl.Float64).fill_null(0.0).to_numpy().astype("<f8")
            values = values + 0.0  # -0.0 and 0.0 are the same value
            values[np.isnan(values)] = np.nan  # one NaN bit pattern
        else:
            values = physical.cast(pl.Int64).fill_null(0).to_numpy().astype("<i8")
        parts.append(values.tobytes())
        return b"".join(parts)
    raise TypeError(f"cannot hash column {series.name!r} of type {dtype}")


def data_snapshot_hash(frame: pl.DataFrame, columns: list[str]) -> str:
    """SHA-256 of ``frame[columns]``, independent of row order.

    The rows are sorted by all the columns before hashing; column names, types and the row
    count are part of the digest, so a renamed or retyped column changes the hash. Values are
    serialized column by column in a fixed little-endian form (dates as day numbers,
    categoricals as their strings), not through a file format whose bytes could change with
    the polars version.
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"columns missing from the frame: {missing}")
    selected = frame.select(columns)
    sort_keys = [
        pl.col(c).cast(pl.String) if (selected.schema[c] == pl.Categorical) else pl.col(c)
        for c in columns
    ]
    ordered = selected.sort(sort_keys, nulls_last=True, maintain_order=True)
    digest = hashlib.sha256()
    digest.update(f"rows={ordered.height}\n".encode())
    for name in columns:
        series = ordered.get_column(name)
        digest.update(f"column={name}:{series.dtype}\n".encode())
        digest.update(_canonical_column_bytes(series))
    return digest.hexdigest()


def feature_matrix(frame: pl.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """The model's input: a C-ordered float64 matrix, features in spec order, nulls as NaN.

    Categorical columns are integer codes; LightGBM treats negative codes and NaN as missing.
    """
    missing = [f for f in spec.features if f not in frame.columns]
    if missing:
        raise ValueError(f"feature columns missing from the frame: {missing}")
    non_numeric = {
        f: str(frame.schema[f])
        for f in spec.features
        if not (frame.schema[f].is_numeric() or frame.schema[f] == pl.Boolean)
    }
    if non_numeric:
        raise ValueError(f"feature columns must be numeric: {non_numeric}")
    matrix = frame.select([pl.col(f).cast(pl.Float64) for f in spec.features]).to_numpy(
        order="c"
    )
    return np.ascontiguousarray(matrix, dtype=np.float64)


def _check_labels(frame: pl.DataFrame, label: str) -> np.ndarray:
    if label not in frame.columns:
        raise ValueError(f"missing label column {label!r}")
    series = frame.get_column(label)
    if series.null_count():
        raise ValueError(
            f"label {label!r} has {series.null_count()} null values: train on matured outcomes only"
        )
    values = series.cast(pl.Float64).to_numpy()
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(f"label {label!r} must be 0/1")
    return values


def check_booster_features(booster: lgb.Booster, spec: FeatureSpec) -> None:
    names = booster.feature_name()
    if names != list(spec.features):
        raise ValueError(
            f"the booster was trained on features {names}, the spec lists {spec.features}"
        )


def train_credit_model(
    frame: pl.DataFrame,
    spec: FeatureSpec,
    config: TrainingConfig = TrainingConfig(),
    label: str = DEFAULT_LABEL,
    date_column: str = DEFAULT_DATE_COLUMN,
) -> TrainedModel:
    """Train the PD model on matured applications and score its out-of-time window.

    ``frame`` holds one row per application with the spec's feature columns, a 0/1 ``label``
    (no nulls: immature applications must be filtered out before) and ``date_column``.
    """
    reserved = {label, date_column, ID_COLUMN} & set(spec.features)
    if reserved:
        raise ValueError(f"features must not include label, date or id columns: {sorted(reserved)}")
    if frame.height == 0:
        raise ValueError("the training frame is empty")

    hash_columns = [date_column]
    hash_columns += [c for c in (ID_COLUMN,) if c in frame.columns]
    hash_columns += [label, *spec.features]
    data_hash = data_snapshot_hash(frame, hash_columns)

    # A canonical row order (by day, then every hashed column) makes the model independent of
    # the order the rows arrived in, and makes each window below a contiguous slice.
    ordered = frame.sort(hash_columns, nulls_last=True, maintain_order=True)
    days = _day_series(ordered, date_column)
    labels = _check_labels(ordered, label)
    matrix = feature_matrix(ordered, spec)  # built once; the windows below are views of it

    oot_start = _newest_days_start(days, config.oot_days, MIN_TRAINING_DAYS, "out-of-time")
    day_values = days.to_numpy()
    oot_begin = int(np.searchsorted(day_values, np.datetime64(oot_start, "D"), side="left"))

    # Early stopping is judged on the newest days of the TRAINING period, never on the OOT
    # window: stopping on the OOT window would let the evaluation data choose the number of
    # trees, and the OOT metrics would then overstate how the model does on unseen days.
    train_days = days[:oot_begin]
    n_train_days = train_days.n_unique()
    es_days = max(1, int(round(config.early_stopping_fraction * n_train_days)))
    es_days = min(es_days, n_train_days - 1)
    es_start = _newest_days_start(train_days, es_days, 1, "early-stopping")
    es_begin = int(np.searchsorted(day_values[:oot_begin], np.datetime64(es_start, "D"), side="left"))

    fit_x, fit_y = matrix[:es_begin], labels[:es_begin]
    es_x, es_y = matrix[es_begin:oot_begin], labels[es_begin:oot_begin]
    oot_x, oot_y = matrix[oot_begin:], labels[oot_begin:]
    if len(np.unique(fit_y)) < 2:
        raise ValueError("the fit period holds a single class: cannot train a PD model")

    params = lightgbm_params(spec, config)
    fit_set = lgb.Dataset(
        fit_x,
        label=fit_y,
        feature_name=list(spec.features),
        categorical_feature=list(spec.categorical),
        params=params,
        free_raw_data=True,
    )
    es_set = lgb.Dataset(es_x, label=es_y, reference=fit_set, params=params, free_raw_data=True)
    fitted = lgb.train(
        params,
        fit_set,
        num_boost_round=config.max_rounds,
        valid_sets=[es_set],
        valid_names=["early_stopping"],
        callbacks=[
            lgb.early_stopping(
                config.early_stopping_rounds, first_metric_only=True, verbose=False
            )
        ],
    )
    best_iteration = int(fitted.best_iteration) or int(fitted.current_iteration())
    # Keep only the chosen trees so every later predict / pred_contrib / saved copy agrees.
    booster = lgb.Booster(model_str=fitted.model_to_string(num_iteration=best_iteration))

    oot_predictions = booster.predict(oot_x) if len(oot_x) else np.empty(0, dtype=np.float64)

    feature_ranges: dict[str, tuple[float, float]] = {}
    for position, name in enumerate(spec.features):
        if name in spec.categorical:
            continue
        column = fit_x[:, position]
        finite = column[~np.isnan(column)]
        if finite.size:
            feature_ranges[name] = (float(finite.min()), float(finite.max()))

    distinct_train_days = train_days.unique().sort()
    return TrainedModel(
        booster=booster,
        feature_spec=spec,
        config=config,
        best_iteration=best_iteration,
        train_rows=oot_begin,
        oot_rows=len(oot_y),
        oot_start=oot_start,
        oot_end=days[-1],
        train_end=distinct_train_days[-1],
        oot_predictions=np.asarray(oot_predictions, dtype=np.float64),
        oot_labels=oot_y.astype(np.int64),
        data_hash=data_hash,
        feature_ranges=feature_ranges,
        train_start=distinct_train_days[0],
        early_stopping_start=es_start,
        early_stopping_rows=oot_begin - es_begin,
    )


@dataclass(frozen=True)
class TrainingWindows:
    """The (first, last) application day of each window ``train_credit_model`` cuts."""

    fit: tuple[date, date]
    early_stopping: tuple[date, date]
    out_of_time: tuple[date, date]


def training_windows(days: list[date], config: TrainingConfig = TrainingConfig()) -> TrainingWindows:
    """The fit, early-stopping and out-of-time windows ``train_credit_model`` would cut from a
    training set whose rows fall on ``days`` (the same rules: the newest ``oot_days`` distinct
    days are out of time, the newest ``early_stopping_fraction`` of the rest, at least one
    day, choose the number of trees, the trees grow on the older days)."""
    series = pl.Series("day", sorted(set(days)), dtype=pl.Date)
    oot_start = _newest_days_start(series, config.oot_days, MIN_TRAINING_DAYS, "out-of-time")
    train_days = series.filter(series < oot_start)
    es_days = max(1, int(round(config.early_stopping_fraction * train_days.len())))
    es_days = min(es_days, train_days.len() - 1)
    es_start = _newest_days_start(train_days, es_days, 1, "early-stopping")
    fit_days = train_days.filter(train_days < es_start)
    return TrainingWindows(
        fit=(fit_days[0], fit_days[-1]),
        early_stopping=(es_start, train_days[-1]),
        out_of_time=(oot_start, series[-1]),
    )


def predict_pd(booster: lgb.Booster, frame: pl.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Probability of default per row: a plain ``predict``, the fast path for scoring."""
    check_booster_features(booster, spec)
    if frame.height == 0:
        return np.empty(0, dtype=np.float64)
    return np.asarray(booster.predict(feature_matrix(frame, spec)), dtype=np.float64)


def logit(p: np.ndarray | float, eps: float = 1e-12) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [eps, 1 - eps]."""
    clipped = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(clipped) - np.log1p(-clipped)


__all__ = [
    "FeatureSpec",
    "TrainedModel",
    "TrainingConfig",
    "TrainingWindows",
    "check_booster_features",
    "data_snapshot_hash",
    "feature_matrix",
    "lightgbm_params",
    "logit",
    "predict_pd",
    "split_out_of_time",
    "train_credit_model",
    "training_windows",
]
