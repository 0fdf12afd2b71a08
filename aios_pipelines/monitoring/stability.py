"""Population stability: how far a batch's distribution moved from the reference.

``psi`` is the population stability index over bins cut at the reference's quantiles
(deciles by default)::

    PSI = sum over bins of (current share - reference share) * ln(current share / reference share)

Conventions, so a hand computation gives the same number:

* Bin edges are the reference's inner quantiles ``q(1/bins) .. q((bins-1)/bins)``, each the
  smallest reference value whose empirical CDF reaches the level (the "inverted CDF"
  quantile), de-duplicated, so edges are observed values and a discrete variable
  gets one bin per value at most; the bins are right-closed:
  ``(-inf, e1], (e1, e2], ..., (e_k, +inf)``.
* Missing values (null / NaN) are left out on both sides (missingness has its own
  ``__missing`` features).
* An empty bin counts as a share of ``EMPTY_BIN_SHARE`` (0.0001) on that side, without
  renormalising, so the logarithm stays finite.

Applied to the PD it is the score's stability; applied to each numeric feature it is the
characteristic stability of that feature. Nothing here imports Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from aios_pipelines.monitoring.thresholds import psi_band

DEFAULT_BINS = 10
EMPTY_BIN_SHARE = 1e-4
SCORE = "score"
FEATURE = "feature"

# The warehouse table ``score_stability``: one row per application day x variable. For the
# PD, ``model_version`` is the version that scored the day (its own reference PDs are the
# comparison); for features it is the champion whose training sample is the reference.
STABILITY_SCHEMA: dict[str, pl.DataType] = {
    "application_date": pl.Date(),
    "variable": pl.String(),
    "kind": pl.String(),
    "psi": pl.Float64(),
    "band": pl.String(),
    "current_rows": pl.Int64(),
    "reference_rows": pl.Int64(),
    "model_version": pl.String(),
}


@dataclass(frozen=True)
class PsiBins:
    edges: np.ndarray  # inner edges, ascending
    reference_share: np.ndarray
    current_share: np.ndarray

    @property
    def contributions(self) -> np.ndarray:
        ref = np.where(self.reference_share > 0, self.reference_share, EMPTY_BIN_SHARE)
        cur = np.where(self.current_share > 0, self.current_share, EMPTY_BIN_SHARE)
        return (cur - ref) * np.log(cur / ref)

    @property
    def psi(self) -> float:
        return float(self.contributions.sum())


def _values(values: Any) -> np.ndarray:
    if isinstance(values, pl.Series):
        values = values.cast(pl.Float64).to_numpy()
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def quantile_edges(reference: Any, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Inner bin edges from the reference's quantiles, de-duplicated."""
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    ref = _values(reference)
    if ref.size == 0:
        raise ValueError("the reference has no non-missing values")
    ordered = np.sort(ref)
    n = ordered.size
    # smallest value whose empirical CDF reaches k/bins: position ceil(n*k/bins) - 1, in
    # integer arithmetic (0.3 * 100 is 30.000000000000004 in floating point)
    positions = [-(-n * k // bins) - 1 for k in range(1, bins)]
    return np.unique(ordered[positions])


def psi_bins(reference: Any, current: Any, bins: int = DEFAULT_BINS) -> PsiBins:
    ref, cur = _values(reference), _values(current)
    if cur.size == 0:
        raise ValueError("the current batch has no non-missing values")
    edges = quantile_edges(ref, bins)
    n_bins = edges.size + 1
    ref_counts = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=n_bins)
    cur_counts = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=n_bins)
    return PsiBins(edges=edges, reference_share=ref_counts / ref.size, current_share=cur_counts / cur.size)


def psi(reference: Any, current: Any, bins: int = DEFAULT_BINS) -> float:
    """Population stability index of ``current`` against ``reference`` (see the module doc)."""
    return psi_bins(reference, current, bins).psi


def stability_table(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    variables: Sequence[str],
    bins: int = DEFAULT_BINS,
) -> pl.DataFrame:
    """One row per variable: psi, band, and the non-missing rows compared on each side.
    A variable with no values on one side gets a null PSI (band "n/a")."""
    rows = []
    for variable in variables:
        ref, cur = _values(reference[variable]), _values(current[variable])
        value = psi(ref, cur, bins) if ref.size and cur.size else None
        rows.append(
            {
                "variable": variable,
                "psi": value,
                "band": psi_band(value),
                "current_rows": int(cur.size),
                "reference_rows": int(ref.size),
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "variable": pl.String(),
            "psi": pl.Float64(),
            "band": pl.String(),
            "current_rows": pl.Int64(),
            "reference_rows": pl.Int64(),
        },
    )


__all__ = ["DEFAULT_BINS", "EMPTY_BIN_SHARE", "STABILITY_SCHEMA", "PsiBins", "psi", "psi_bins", "quantile_edges", "stability_table"]
