"""How good a PD model is: discrimination, calibration and lift on labelled predictions.

Pure numpy (scikit-learn only for the AUC); plots through matplotlib's Agg canvas, which
needs no display and no network. Used on the out-of-time window by the model-quality checks
and the promotion gate, and on matured production scores by monitoring.

Conventions
- Calibration bins are PD deciles in ascending order: bin 1 holds the lowest predicted PDs.
- Lift deciles are in descending order: decile 1 holds the riskiest tenth of the rows.
- Both are equal-count bins over the rows ranked by PD (ties broken by input position, so
  the result is deterministic); with fewer than ten rows there are fewer, one-row bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

N_BINS = 10


@dataclass
class ModelMetrics:
    auc: float
    gini: float
    ks: float
    brier: float
    rows: int
    positives: int
    default_rate: float
    calibration: list[dict[str, Any]] = field(default_factory=list)
    lift: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, float]:
        """The scalar metrics, all as floats (AUC, Gini and KS are NaN with one class)."""
        return {
            "auc": float(self.auc),
            "gini": float(self.gini),
            "ks": float(self.ks),
            "brier": float(self.brier),
            "rows": float(self.rows),
            "positives": float(self.positives),
            "default_rate": float(self.default_rate),
        }


def _validate(y_true: Any, pd: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(pd, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} values, pd has {p.size}")
    if y.size == 0:
        raise ValueError("no rows to evaluate")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y_true must hold only 0 and 1")
    if not np.isfinite(p).all():
        raise ValueError("pd holds NaN or infinite values")
    if (p < 0).any() or (p > 1).any():
        raise ValueError("pd must lie in [0, 1]")
    return y.astype(np.int64), p


def ks_statistic(y_true: np.ndarray, pd: np.ndarray) -> float:
    """Kolmogorov–Smirnov statistic: the largest distance between the empirical CDFs of the
    scores of defaulters and of non-defaulters, evaluated at every distinct score (so tied
    scores move both CDFs at once). NaN when one class is absent."""
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(pd, dtype=np.float64)
    bad, good = np.sort(p[y]), np.sort(p[~y])
    if bad.size == 0 or good.size == 0:
        return math.nan
    thresholds = np.unique(p)
    cdf_bad = np.searchsorted(bad, thresholds, side="right") / bad.size
    cdf_good = np.searchsorted(good, thresholds, side="right") / good.size
    return float(np.max(np.abs(cdf_bad - cdf_good)))


def _equal_count_bins(order: np.ndarray) -> list[np.ndarray]:
    n_bins = min(N_BINS, order.size)
    return [chunk for chunk in np.array_split(order, n_bins) if chunk.size]


def evaluate_predictions(y_true: Any, pd: Any) -> ModelMetrics:
    """AUC, Gini (2·AUC − 1), KS, Brier score, calibration by PD decile and lift by decile."""
    y, p = _validate(y_true, pd)
    rows = int(y.size)
    positives = int(y.sum())
    default_rate = positives / rows
    two_classes = 0 < positives < rows

    auc = float(roc_auc_score(y, p)) if two_classes else math.nan
    gini = 2.0 * auc - 1.0 if two_classes else math.nan
    ks = ks_statistic(y, p)
    brier = float(np.mean((p - y) ** 2))

    ascending = np.argsort(p, kind="stable")
    calibration = [
        {
            "bin": number,
            "rows": int(idx.size),
            "mean_pd": float(p[idx].mean()),
            "observed_rate": float(y[idx].mean()),
        }
        for number, idx in enumerate(_equal_count_bins(ascending), start=1)
    ]

    descending = np.argsort(-p, kind="stable")
    lift = []
    captured = 0
    for number, idx in enumerate(_equal_count_bins(descending), start=1):
        defaults = int(y[idx].sum())
        captured += defaults
        rate = defaults / idx.size
        lift.append(
            {
                "decile": number,
                "rows": int(idx.size),
                "defaults": defaults,
                "default_rate": float(rate),
                "lift": float(rate / default_rate) if positives else math.nan,
                "cumulative_capture": float(captured / positives) if positives else math.nan,
            }
        )

    return ModelMetrics(
        auc=auc,
        gini=gini,
        ks=ks,
        brier=brier,
        rows=rows,
        positives=positives,
        default_rate=float(default_rate),
        calibration=calibration,
        lift=lift,
    )


def _fmt(value: float, digits: int = 4) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


def calibration_markdown(metrics: ModelMetrics) -> str:
    """Calibration table (one row per PD decile, lowest PD first) as markdown."""
    lines = [
        "| bin | rows | mean PD | observed default rate |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for row in metrics.calibration:
        lines.append(
            f"| {row['bin']} | {row['rows']} | {_fmt(row['mean_pd'])} | {_fmt(row['observed_rate'])} |"
        )
    return "\n".join(lines)


def lift_markdown(metrics: ModelMetrics) -> str:
    """Lift table (decile 1 = riskiest tenth) as markdown."""
    lines = [
        "| decile | rows | defaults | default rate | lift | cumulative capture |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in metrics.lift:
        lines.append(
            f"| {row['decile']} | {row['rows']} | {row['defaults']} | {_fmt(row['default_rate'])} "
            f"| {_fmt(row['lift'], 2)} | {_fmt(row['cumulative_capture'], 3)} |"
        )
    return "\n".join(lines)


def plot_model_report(metrics: ModelMetrics, path: Path) -> Path:
    """Write a PNG with the calibration curve, the lift by decile and the cumulative gain
    curve. Uses the Agg canvas directly (no pyplot state, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    figure = Figure(figsize=(15, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    calib_ax, lift_ax, gain_ax = figure.subplots(1, 3)

    mean_pd = [row["mean_pd"] for row in metrics.calibration]
    observed = [row["observed_rate"] for row in metrics.calibration]
    upper = max([*mean_pd, *observed, 1e-6]) * 1.05
    calib_ax.plot([0, upper], [0, upper], linestyle="--", color="grey", label="perfect")
    calib_ax.plot(mean_pd, observed, marker="o", label="model")
    calib_ax.set_xlim(0, upper)
    calib_ax.set_ylim(0, upper)
    calib_ax.set_xlabel("mean predicted PD (decile)")
    calib_ax.set_ylabel("observed default rate")
    calib_ax.set_title(f"Calibration (Brier {_fmt(metrics.brier)})")
    calib_ax.legend(loc="upper left")

    deciles = [row["decile"] for row in metrics.lift]
    lifts = [0.0 if math.isnan(row["lift"]) else row["lift"] for row in metrics.lift]
    lift_ax.bar(deciles, lifts, color="tab:orange")
    lift_ax.axhline(1.0, linestyle="--", color="grey")
    lift_ax.set_xticks(deciles)
    lift_ax.set_xlabel("decile (1 = riskiest)")
    lift_ax.set_ylabel("lift")
    lift_ax.set_title("Lift by decile")

    population = [0.0]
    capture = [0.0]
    seen = 0
    for row in metrics.lift:
        seen += row["rows"]
        population.append(seen / max(metrics.rows, 1))
        value = row["cumulative_capture"]
        capture.append(0.0 if math.isnan(value) else value)
    gain_ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    gain_ax.plot(population, capture, marker="o", label="model")
    gain_ax.set_xlim(0, 1)
    gain_ax.set_ylim(0, 1.02)
    gain_ax.set_xlabel("share of applications (riskiest first)")
    gain_ax.set_ylabel("share of defaults captured")
    gain_ax.set_title(f"Gains (AUC {_fmt(metrics.auc, 3)}, KS {_fmt(metrics.ks, 3)})")
    gain_ax.legend(loc="lower right")

    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


__all__ = [
    "ModelMetrics",
    "calibration_markdown",
    "evaluate_predictions",
    "ks_statistic",
    "lift_markdown",
    "plot_model_report",
]
