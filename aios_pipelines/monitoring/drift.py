"""Feature drift of one batch of applications against the champion's reference sample.

Evidently 0.7 does the statistics (``DataDriftPreset``: one ``ValueDrift`` per column and a
``DriftedColumnsCount``, with a pass/fail test per column), and its saved HTML is the day's
drift report.

Left to itself, Evidently picks the method from the reference size: up to 1,000 reference
rows a numeric column gets Kolmogorov–Smirnov (drift when p < 0.05) and a categorical one
chi-square or a Z-test; above 1,000 rows the normed Wasserstein distance and the
Jensen–Shannon distance (drift when the distance is at least 0.1). So a small test fixture
would run another test than production. Here the methods are pinned (Wasserstein for
numeric columns, Jensen–Shannon for categorical ones and missing indicators) whatever the
reference size, and the thresholds follow the batch size: under no drift these distances
shrink like 1/sqrt(rows) (measured on the synthetic lender: the 99th percentile of the
normed Wasserstein distance is about 3/sqrt(rows), of Jensen–Shannon about 1.5/sqrt(rows)),
so a column drifts when its distance reaches ``NUM_NOISE_MULTIPLE / sqrt(rows)`` (resp.
``CAT_NOISE_MULTIPLE``), and never below Evidently's own 0.1. At 400 applications a day
that is 0.2 for numeric columns; at 1,600 and more, Evidently's 0.1. The false-alarm rate
this gives on same-distribution batches is measured in tests/test_monitoring_drift.py.

A small batch gives extreme shares, so callers skip days below ``MIN_BATCH_ROWS`` (see
``batch_too_small``). The saved HTML is self-contained (about 4.6 MB a day, mostly the
inlined JavaScript bundle): it embeds its scripts and fonts and loads nothing from a CDN.
The only CDN address in it is plotly's default ``topojsonURL``, read by geographic maps,
which a drift report never draws.

Nothing here imports Dagster.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from aios_pipelines.monitoring.thresholds import DRIFT_ERROR_SHARE

# No usage telemetry from a credit platform (Evidently's UI service reads this).
os.environ.setdefault("DO_NOT_TRACK", "1")

# Below this many applications a day is not judged: the noise-scaled thresholds would pass
# 0.28 (numeric) and the share of drifted columns would swing with a handful of rows.
MIN_BATCH_ROWS = 200
# Pinned methods (Evidently's names for them) and the noise multiples of their thresholds.
NUM_METHOD = "wasserstein"
CAT_METHOD = "jensenshannon"
METHOD_NAMES = {"wasserstein": "Wasserstein distance (normed)", "jensenshannon": "Jensen-Shannon distance"}
NUM_NOISE_MULTIPLE = 4.0
CAT_NOISE_MULTIPLE = 2.0
EVIDENTLY_DISTANCE_THRESHOLD = 0.1
# The reference sample is cut to this many rows (seeded): enough to describe each
# distribution, and it keeps one day's Evidently run (mostly its plots) around a second.
MAX_REFERENCE_ROWS = 5_000
REFERENCE_SEED = 7

DRIFTED_COLUMNS_COUNT = "evidently:metric_v2:DriftedColumnsCount"
VALUE_DRIFT = "evidently:metric_v2:ValueDrift"

DRIFT_TABLE_SCHEMA: dict[str, pl.DataType] = {
    "feature": pl.String(),
    "column_type": pl.String(),
    "method": pl.String(),
    "score_kind": pl.String(),
    "score": pl.Float64(),
    "threshold": pl.Float64(),
    "drifted": pl.Boolean(),
}

# The warehouse table ``feature_drift``: one row per application day x feature.
FEATURE_DRIFT_SCHEMA: dict[str, pl.DataType] = {
    "application_date": pl.Date(),
    **DRIFT_TABLE_SCHEMA,
    "current_rows": pl.Int64(),
    "reference_rows": pl.Int64(),
    "champion_version": pl.String(),
    "report_path": pl.String(),
}


@dataclass(frozen=True)
class ColumnDrift:
    """One column's verdict: ``score`` is a p-value (``score_kind`` "p_value", drift when
    below ``threshold``) or a distance ("distance", drift when at or above it)."""

    feature: str
    column_type: str  # numerical | categorical
    method: str  # Evidently's name, e.g. "Wasserstein distance (normed)", "K-S p_value"
    score_kind: str
    score: float
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    columns: list[ColumnDrift]
    reference_rows: int
    current_rows: int
    snapshot: Any = field(repr=False)  # evidently.core.report.Snapshot

    @property
    def drifted_features(self) -> list[str]:
        return [c.feature for c in self.columns if c.drifted]

    @property
    def drifted_count(self) -> int:
        return len(self.drifted_features)

    @property
    def share(self) -> float:
        return self.drifted_count / len(self.columns) if self.columns else 0.0

    @property
    def methods(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for column in self.columns:
            counts[column.method] = counts.get(column.method, 0) + 1
        return counts

    def frame(self) -> pl.DataFrame:
        """One row per column, in the order of the feature list."""
        return pl.DataFrame(
            [
                {
                    "feature": c.feature,
                    "column_type": c.column_type,
                    "method": c.method,
                    "score_kind": c.score_kind,
                    "score": c.score,
                    "threshold": c.threshold,
                    "drifted": c.drifted,
                }
                for c in self.columns
            ],
            schema=DRIFT_TABLE_SCHEMA,
        )

    def save_html(self, path: Path) -> Path:
        """Write Evidently's report page (self-contained HTML)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        # Snapshot.save_html writes only when given a str: a Path is silently ignored.
        self.snapshot.save_html(str(tmp))
        if not tmp.exists():
            raise RuntimeError(f"Evidently did not write the drift report to {tmp}")
        os.replace(tmp, path)
        return path


def batch_too_small(rows: int, min_rows: int = MIN_BATCH_ROWS) -> bool:
    return rows < min_rows


def reference_for_drift(reference: pl.DataFrame, max_rows: int = MAX_REFERENCE_ROWS, seed: int = REFERENCE_SEED) -> pl.DataFrame:
    """The reference rows the comparison uses: all of them, or a seeded sample of ``max_rows``."""
    if reference.height <= max_rows:
        return reference
    return reference.sample(n=max_rows, seed=seed, shuffle=False)


def column_types(features: Sequence[str], categorical: Sequence[str]) -> tuple[list[str], list[str]]:
    """(numerical, categorical): contract categoricals and 0/1 missing indicators are
    categorical, every other feature numerical."""
    from aios_pipelines.features.build import MISSING_SUFFIX

    cats = [f for f in features if f in set(categorical) or f.endswith(MISSING_SUFFIX)]
    nums = [f for f in features if f not in set(cats)]
    return nums, cats


def column_thresholds(current_rows: int) -> tuple[float, float]:
    """(numeric, categorical) distance thresholds for a batch of ``current_rows`` rows."""
    root = math.sqrt(max(int(current_rows), 1))
    return (
        max(EVIDENTLY_DISTANCE_THRESHOLD, NUM_NOISE_MULTIPLE / root),
        max(EVIDENTLY_DISTANCE_THRESHOLD, CAT_NOISE_MULTIPLE / root),
    )


def _score_kind(method: str) -> str:
    return "p_value" if "p_value" in method.lower() else "distance"


def detect_drift(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str] = (),
    dataset_drift_share: float = DRIFT_ERROR_SHARE,
) -> DriftResult:
    """Run Evidently's ``DataDriftPreset`` on ``features`` (current batch first, then the
    reference, as Evidently's ``Report.run`` expects) and read every column's method,
    score and verdict from the snapshot, found by result type, not by position.

    ``dataset_drift_share`` is the share at which Evidently's page headlines "Dataset Drift
    is detected"; pass the check's ERROR line so the page and the check agree."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    features = list(features)
    missing = [f for f in features if f not in reference.columns or f not in current.columns]
    if missing:
        raise ValueError(f"columns missing from the reference or the current batch: {missing}")
    if reference.height == 0 or current.height == 0:
        raise ValueError(f"drift needs rows on both sides (reference {reference.height}, current {current.height})")
    numerical, cats = column_types(features, categorical)
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=cats)

    def dataset(frame: pl.DataFrame):
        cast = [pl.col(c).cast(pl.Float64) for c in numerical] + [pl.col(c).cast(pl.Int64) for c in cats]
        return Dataset.from_pandas(frame.select(cast).select(features).to_pandas(), data_definition=definition)

    num_threshold, cat_threshold = column_thresholds(current.height)
    preset = DataDriftPreset(
        columns=features,
        drift_share=dataset_drift_share,
        num_method=NUM_METHOD,
        num_threshold=num_threshold,
        cat_method=CAT_METHOD,
        cat_threshold=cat_threshold,
    )
    snapshot = Report([preset], include_tests=True).run(dataset(current), dataset(reference))
    result = snapshot.dict()

    by_metric: dict[str, dict] = {}
    drifted_count: float | None = None
    for metric in result.get("metrics", []):
        kind = metric.get("config", {}).get("type")
        if kind == VALUE_DRIFT:
            by_metric[metric["id"]] = metric
        elif kind == DRIFTED_COLUMNS_COUNT:
            drifted_count = float(metric["value"]["count"])
    verdicts: dict[str, bool] = {}
    for test in result.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type") == VALUE_DRIFT:
            verdicts[test["metric_config"]["metric_id"]] = test.get("status") == "FAIL"

    columns: dict[str, ColumnDrift] = {}
    for metric_id, metric in by_metric.items():
        config = metric["config"]
        method = METHOD_NAMES.get(str(config.get("method")), str(config.get("method")))
        kind = _score_kind(method)
        score = float(metric["value"])
        threshold = float(config.get("threshold"))
        if metric_id in verdicts:
            drifted = verdicts[metric_id]
        else:  # the same rule Evidently applies, should a release stop emitting the test
            drifted = score < threshold if kind == "p_value" else score >= threshold
        name = str(config["column"])
        columns[name] = ColumnDrift(
            feature=name,
            column_type="categorical" if name in cats else "numerical",
            method=method,
            score_kind=kind,
            score=score,
            threshold=threshold,
            drifted=bool(drifted),
        )
    absent = [f for f in features if f not in columns]
    if absent:
        raise RuntimeError(f"Evidently returned no drift result for {absent}")
    ordered = [columns[f] for f in features]
    if drifted_count is not None and int(drifted_count) != sum(c.drifted for c in ordered):
        raise RuntimeError(
            f"Evidently's DriftedColumnsCount ({drifted_count:.0f}) disagrees with its per-column "
            f"tests ({sum(c.drifted for c in ordered)}): the result format changed"
        )
    return DriftResult(columns=ordered, reference_rows=reference.height, current_rows=current.height, snapshot=snapshot)


__all__ = [
    "DRIFT_TABLE_SCHEMA",
    "FEATURE_DRIFT_SCHEMA",
    "MAX_REFERENCE_ROWS",
    "MIN_BATCH_ROWS",
    "ColumnDrift",
    "DriftResult",
    "batch_too_small",
    "column_thresholds",
    "column_types",
    "detect_drift",
    "reference_for_drift",
]
