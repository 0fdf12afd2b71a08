"""Exact TreeSHAP for many rows, from LightGBM's own ``pred_contrib`` on a few.

Path-dependent TreeSHAP (what ``pred_contrib=True`` computes) reads a row only through the
side it takes at each split of a tree: two rows that go the same way at every split of a
tree get the same contributions from that tree, to the last bit, because the algorithm does
the same arithmetic for both. A tree of the default size has 7 splits, so at most 128 such
"split patterns", and a day of a million rows takes only a few hundred distinct ones.

So instead of running TreeSHAP once per row and tree, :func:`tree_shap_contributions`
computes each row's split pattern in every tree with vectorised comparisons (LightGBM's
decision rules, missing values and categorical splits included), asks LightGBM for the
contributions of ONE row per distinct pattern with that tree alone
(``start_iteration=t, num_iteration=1``), and adds the looked-up rows tree by tree. The
values are LightGBM's; only the order of the floating-point additions across trees differs
from a whole-model ``pred_contrib`` (differences of a few ulp).

As a guard against a decision rule that differs from LightGBM's, every row's contributions
are added up and compared with LightGBM's own prediction for the row (the additivity SHAP
values have by construction): a row sent down another path than LightGBM's lands in another
leaf, and its sum is off by the difference of the two leaves' values. Any disagreement, or a
model this does not cover (several trees per iteration, trees too deep to tabulate, linear
trees), uses ``pred_contrib`` on the whole matrix instead, and says so in the returned method.
The caller may pass the predictions it already has (``booster.predict(matrix)``, the
probability of a binary model) so that the guard costs no prediction of its own.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np

# LightGBM treats |x| <= kZeroThreshold as zero (missing under missing_type "Zero", and
# dropped as a sparse zero when a dense row is read).
ZERO_THRESHOLD = float(np.float32(1e-35))
# Below this many rows one whole-model pred_contrib call is cheaper than a call per tree.
MIN_TABULATED_ROWS = 2_000
# Splits per tree up to which a pattern indexes a dense table; deeper trees use np.unique.
DENSE_TABLE_MAX_SPLITS = 12
MAX_SPLITS = 62  # patterns are int64 bit sets
# How far a row's summed contributions may be from LightGBM's raw score: the sums differ only
# in the order of the floating-point additions (a few ulp); a row in another leaf is off by a
# difference of leaf values, orders of magnitude more.
ADDITIVITY_TOLERANCE = 1e-9

TABULATED = "tabulated"
PRED_CONTRIB = "pred_contrib"

logger = logging.getLogger(__name__)

_MISSING_TYPES = {"None": 0, "Zero": 1, "NaN": 2}


@dataclass(frozen=True)
class _Split:
    feature: int
    threshold: float
    categorical: bool
    categories: np.ndarray  # categorical splits: the category codes that go left
    default_left: bool
    missing_type: int  # 0 None, 1 Zero, 2 NaN


@dataclass(frozen=True)
class _Tree:
    splits: tuple[_Split, ...]  # in split_index order: bit i of a pattern is split i


@dataclass(frozen=True)
class _Model:
    trees: tuple[_Tree, ...] | None  # None: not tabulatable (reason in ``unsupported``)
    unsupported: str | None
    n_features: int
    sigmoid: float | None  # a binary objective's scale (prediction = 1 / (1 + exp(-sigmoid * raw)))


_cache: "weakref.WeakKeyDictionary[lgb.Booster, _Model]" = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def _parse_tree(node: dict, splits: dict[int, _Split]) -> None:
    if "split_index" not in node:  # a leaf (a one-leaf tree's root has no leaf_index)
        return
    index = int(node["split_index"])
    categorical = node["decision_type"] == "=="
    categories = (
        np.array(sorted(int(c) for c in str(node["threshold"]).split("||")), dtype=np.int64)
        if categorical
        else np.empty(0, dtype=np.int64)
    )
    splits[index] = _Split(
        feature=int(node["split_feature"]),
        threshold=float("nan") if categorical else float(node["threshold"]),
        categorical=categorical,
        categories=categories,
        default_left=bool(node["default_left"]),
        missing_type=_MISSING_TYPES[str(node["missing_type"])],
    )
    _parse_tree(node["left_child"], splits)
    _parse_tree(node["right_child"], splits)


def _has_linear_leaves(node: dict) -> bool:
    if "split_index" not in node:
        return "leaf_coeff" in node
    return _has_linear_leaves(node["left_child"]) or _has_linear_leaves(node["right_child"])


def _model(booster: lgb.Booster) -> _Model:
    with _cache_lock:
        cached = _cache.get(booster)
    if cached is not None:
        return cached
    dump = booster.dump_model()
    n_features = booster.num_feature()
    trees: list[_Tree] = []
    unsupported = None
    if int(dump.get("num_tree_per_iteration", 1)) != 1:
        unsupported = f"{dump['num_tree_per_iteration']} trees per iteration"
    elif dump.get("average_output"):
        unsupported = "averaged trees (random forest)"
    for info in dump["tree_info"] if unsupported is None else []:
        root = info["tree_structure"]
        if _has_linear_leaves(root):
            unsupported = "linear trees"
            break
        splits: dict[int, _Split] = {}
        _parse_tree(root, splits)
        if len(splits) > MAX_SPLITS:
            unsupported = f"a tree with {len(splits)} splits (at most {MAX_SPLITS} tabulated)"
            break
        if sorted(splits) != list(range(len(splits))):  # bit i of a pattern is split_index i
            unsupported = "split indices other than 0..n-1"
            break
        trees.append(_Tree(splits=tuple(splits[i] for i in range(len(splits)))))
    model = _Model(trees=None if unsupported else tuple(trees), unsupported=unsupported, n_features=n_features,
                   sigmoid=_binary_sigmoid(str(dump.get("objective", ""))))
    with _cache_lock:
        _cache[booster] = model
    return model


def _binary_sigmoid(objective: str) -> float | None:
    """``"binary sigmoid:1"`` -> 1.0; None for any other objective."""
    name, *params = objective.split()
    if name != "binary":
        return None
    for param in params:
        key, _, value = param.partition(":")
        if key == "sigmoid":
            return float(value)
    return None


def _goes_left(column: np.ndarray, split: _Split) -> np.ndarray:
    """LightGBM's decision for every value of ``column`` at ``split`` (``Tree::Decision``)."""
    nan = np.isnan(column)
    if split.categorical:
        # the value is cast to int: NaN, values at or past 2**31 (INT_MIN on x86) and
        # negative categories go right; (-1, 0) truncates to category 0
        valid = ~nan & (column > -1.0) & (column < 2.0**31)
        return valid & np.isin(np.trunc(np.where(valid, column, -1.0)), split.categories)
    # a dense row drops |x| <= kZeroThreshold as a sparse zero
    values = np.where(np.abs(column) <= ZERO_THRESHOLD, 0.0, column)
    if split.missing_type == 2:
        return np.where(nan, split.default_left, values <= split.threshold)
    values = np.where(nan, 0.0, values)
    if split.missing_type == 1:
        return np.where(values == 0.0, split.default_left, values <= split.threshold)
    return values <= split.threshold


def _pattern_dtype(splits: int) -> type:
    return np.uint8 if splits <= 8 else np.uint16 if splits <= 16 else np.uint32 if splits <= 32 else np.int64


def _patterns(matrix: np.ndarray, tree: _Tree, decided: dict) -> np.ndarray:
    # the narrowest integer that holds a bit per split: the same values, less memory to stream
    dtype = _pattern_dtype(len(tree.splits))
    codes = np.zeros(matrix.shape[0], dtype=dtype)
    for bit, split in enumerate(tree.splits):
        # the same test recurs across trees (LightGBM's histogram bins are shared)
        key = (split.feature, split.threshold, split.categorical, split.categories.tobytes(),
               split.default_left, split.missing_type)
        left = decided.get(key)
        if left is None:
            left = decided[key] = _goes_left(matrix[:, split.feature], split)
        codes |= left.astype(dtype) << dtype(bit)
    return codes


def _pred_contrib(booster: lgb.Booster, matrix: np.ndarray) -> np.ndarray:
    return np.asarray(booster.predict(matrix, pred_contrib=True), dtype=np.float64)


def _not_additive(model: _Model, booster: lgb.Booster, matrix: np.ndarray, sums: np.ndarray,
                  predictions: np.ndarray | None) -> str | None:
    """Why the rows' summed contributions are not LightGBM's predictions, or None when they are."""
    if predictions is not None and model.sigmoid is not None:
        expected = np.asarray(predictions, dtype=np.float64).reshape(-1)
        if expected.shape[0] != sums.shape[0]:
            raise ValueError(f"{expected.shape[0]} predictions for {sums.shape[0]} rows")
        got = 1.0 / (1.0 + np.exp(-model.sigmoid * sums))
        # |d prediction / d raw| <= sigmoid / 4: the raw tolerance carried to probabilities
        tolerance = ADDITIVITY_TOLERANCE * model.sigmoid / 4 * np.maximum(1.0, np.abs(sums))
    else:
        expected = np.asarray(booster.predict(matrix, raw_score=True), dtype=np.float64).reshape(-1)
        got = sums
        tolerance = ADDITIVITY_TOLERANCE * np.maximum(1.0, np.abs(expected))
    off = ~(np.abs(got - expected) <= tolerance)  # NaN is off too
    if not off.any():
        return None
    return f"the contributions of {int(off.sum())} rows (first row {int(np.flatnonzero(off)[0])}) do not add up to LightGBM's prediction"


def tree_shap_contributions(
    booster: lgb.Booster, matrix: np.ndarray, predictions: np.ndarray | None = None
) -> tuple[np.ndarray, str]:
    """``(contributions, method)``: ``pred_contrib``'s ``(n, n_features + 1)`` array (the
    last column the bias), and ``"tabulated"`` or ``"pred_contrib: <why>"``.

    ``predictions``: ``booster.predict(matrix)`` when the caller has it (a binary model's
    probabilities), for the additivity guard; otherwise the guard predicts raw scores."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float64)
    model = _model(booster)
    n, width = matrix.shape[0], model.n_features + 1
    if n == 0:  # LightGBM refuses an empty matrix
        return np.empty((0, width), dtype=np.float64), TABULATED
    if model.trees is None:
        return _pred_contrib(booster, matrix), f"{PRED_CONTRIB}: {model.unsupported}"
    if n < MIN_TABULATED_ROWS:
        return _pred_contrib(booster, matrix), f"{PRED_CONTRIB}: {n} rows (tabulated from {MIN_TABULATED_ROWS:,})"
    # column-major copy: each split reads one feature of every row
    columns = np.asfortranarray(matrix)
    # one contiguous row per output column: each tree adds to the few columns it touches
    out = np.zeros((width, n), dtype=np.float64)
    decided: dict = {}
    for t, tree in enumerate(model.trees):
        codes = _patterns(columns, tree, decided)
        if len(tree.splits) <= DENSE_TABLE_MAX_SPLITS:
            size = 1 << len(tree.splits)
            representative = np.full(size, -1, dtype=np.int64)
            representative[codes] = np.arange(n, dtype=np.int64)
            patterns = np.flatnonzero(representative >= 0)
            slot = np.full(size, -1, dtype=np.int32)
            slot[patterns] = np.arange(patterns.size, dtype=np.int32)
            index = slot[codes]
            rows = representative[patterns]
        else:
            patterns, rows, index = np.unique(codes, return_index=True, return_inverse=True)
        table = np.asarray(
            booster.predict(matrix[rows], pred_contrib=True, start_iteration=t, num_iteration=1), dtype=np.float64
        ).reshape(rows.size, width)
        # only the columns this tree can touch: its split features and the bias
        for column in sorted({s.feature for s in tree.splits} | {model.n_features}):
            out[column] += np.take(table[:, column], index)
    why = _not_additive(model, booster, matrix, out.sum(axis=0), predictions)
    if why is not None:
        logger.warning("TreeSHAP tables not used: %s; computing pred_contrib for all %d rows", why, n)
        return _pred_contrib(booster, matrix), f"{PRED_CONTRIB}: {why}"
    return np.ascontiguousarray(out.T), TABULATED
