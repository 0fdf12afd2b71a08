"""The risk report: one HTML page for the risk team, readable offline.

Sections: feature drift (share of drifted features per day, with links to the day's
Evidently report), population stability (PSI of the PD and the worst feature per day),
model performance by vintage as outcomes mature (AUC against the out-of-time AUC, and
calibration), and, when the analytics tables exist, the override rate and the time to
decision. A section whose data is missing says so instead of disappearing.

Plots are PNGs drawn on matplotlib's Agg canvas and embedded as base64 ``data:`` URIs;
the page has no script and loads nothing from the network. Nothing here imports Dagster.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from aios_pipelines.monitoring import thresholds
from aios_pipelines.monitoring.performance import PRODUCTION, TRAINING, VALIDATION

STATUS_COLOURS = {thresholds.OK: "#2e7d32", thresholds.WARN: "#f9a825", thresholds.ERROR: "#c62828"}
PHASE_COLOURS = {TRAINING: "#9e9e9e", VALIDATION: "#1565c0", PRODUCTION: "#ef6c00"}


@dataclass
class RiskReportInputs:
    generated_at: datetime
    champion: str  # e.g. "credit_risk_model v3 (registered 2026-09-01)"
    drift: pl.DataFrame  # day, champion_version, share, drifted, features, rows, status, report (relative link or null)
    stability: pl.DataFrame  # day, variable, psi
    performance: pl.DataFrame  # performance.PERFORMANCE_SCHEMA
    override_rates: pl.DataFrame | None = None  # day, override_rate, verdicts
    override_note: str = ""
    review_times: pl.DataFrame | None = None  # day, median_hours, cases
    review_note: str = ""
    drift_warn: float = thresholds.DRIFT_WARN_SHARE
    drift_error: float = thresholds.DRIFT_ERROR_SHARE
    psi_warn: float = thresholds.PSI_WARN
    psi_error: float = thresholds.PSI_ERROR
    override_high: float | None = None
    override_low: float | None = None
    notes: list[str] = field(default_factory=list)


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float = 11.0, height: float = 3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=90)
    FigureCanvasAgg(figure)
    return figure


def _img(figure, alt: str) -> str:
    figure.tight_layout()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(figure)}">'


def _day_axis(ax, days: list) -> None:
    """A day axis that spans the data (matplotlib widens a single day to years)."""
    if days:
        first, last = min(days), max(days)
        ax.set_xlim(first - timedelta(days=1), last + timedelta(days=1))


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(frame: pl.DataFrame, max_rows: int = 40, links: dict[str, str] | None = None,
           hidden: tuple[str, ...] = ()) -> str:
    """An HTML table of the first ``max_rows`` rows; ``links`` maps a shown column to the
    column holding its link target; ``hidden`` columns are not shown."""
    if frame.is_empty():
        return "<p class='note'>No rows.</p>"
    shown = [c for c in frame.columns if c not in hidden]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown)
    body = []
    for row in frame.head(max_rows).iter_rows(named=True):
        cells = []
        for column in shown:
            value = row[column]
            text = _fmt(value)
            if links and column in links and row.get(links[column]):
                text = f'<a href="{html.escape(str(row[links[column]]))}">{text}</a>'
            css = f" class='{value}'" if column == "status" and value in STATUS_COLOURS else ""
            cells.append(f"<td{css}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p class='note'>First {max_rows} of {frame.height} rows.</p>" if frame.height > max_rows else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _drift_section(inputs: RiskReportInputs) -> str:
    drift = inputs.drift.sort("day")
    if drift.is_empty():
        return "<h2>Feature drift</h2><p class='note'>No day has been monitored yet (feature_drift is empty).</p>"
    figure = _figure()
    ax = figure.subplots()
    colours = [STATUS_COLOURS.get(s, "#607d8b") for s in drift["status"].to_list()]
    ax.bar(drift["day"].to_list(), drift["share"].to_list(), color=colours, width=0.9)
    ax.axhline(inputs.drift_warn, linestyle="--", color=STATUS_COLOURS[thresholds.WARN], label=f"warn {inputs.drift_warn:g}")
    ax.axhline(inputs.drift_error, linestyle="--", color=STATUS_COLOURS[thresholds.ERROR], label=f"error {inputs.drift_error:g}")
    ax.set_ylim(0, max(1.0 if drift["share"].max() > 0.5 else 0.5, inputs.drift_error * 1.5))
    ax.set_ylabel("share of drifted features")
    ax.set_title("Feature drift against the champion's training sample (Evidently), per application day")
    ax.legend(loc="upper left")
    figure.autofmt_xdate()
    red = drift.filter(pl.col("status") == thresholds.ERROR)
    amber = drift.filter(pl.col("status") == thresholds.WARN)
    from aios_pipelines.monitoring.snapshot import day_ranges

    summary = (
        f"<p>{drift.height} days monitored ({drift['day'].min()} .. {drift['day'].max()}). "
        f"<b class='error'>Red</b> (share &ge; {inputs.drift_error:g}): {html.escape(day_ranges(red['day'].to_list()))}. "
        f"<b class='warn'>Amber</b> (&ge; {inputs.drift_warn:g}): {html.escape(day_ranges(amber['day'].to_list()))}.</p>"
    )
    table = _table(
        drift.select("day", pl.col("champion_version").alias("against model"), "rows", "features", "drifted", "share",
                     "status", "report").sort("day", descending=True),
        max_rows=31,
        links={"day": "report"},
        hidden=("report",),
    )
    return f"<h2>Feature drift</h2>{summary}{_img(figure, 'drift share per day')}<h3>Days (newest first; the day links to its Evidently report)</h3>{table}"


def _stability_section(inputs: RiskReportInputs) -> str:
    stability = inputs.stability.filter(pl.col("psi").is_not_null())
    if stability.is_empty():
        return "<h2>Population stability</h2><p class='note'>No stability figures yet (score_stability is empty).</p>"
    pd_psi = stability.filter(pl.col("variable") == "pd").sort("day")
    features = stability.filter(pl.col("variable") != "pd")
    worst = (
        features.sort("psi", descending=True).group_by("day", maintain_order=True).first().sort("day")
        if not features.is_empty() else features
    )
    figure = _figure()
    ax = figure.subplots()
    if not pd_psi.is_empty():
        ax.plot(pd_psi["day"].to_list(), pd_psi["psi"].to_list(), marker="o", markersize=3, label="PSI of the PD")
    _day_axis(ax, stability["day"].to_list())
    if not worst.is_empty():
        ax.plot(worst["day"].to_list(), worst["psi"].to_list(), marker=".", linestyle=":", color="#6a1b9a",
                label="worst numeric feature")
    ax.axhspan(0, inputs.psi_warn, color=STATUS_COLOURS[thresholds.OK], alpha=0.08)
    ax.axhspan(inputs.psi_warn, inputs.psi_error, color=STATUS_COLOURS[thresholds.WARN], alpha=0.12)
    top = max(float(stability["psi"].max() or 0.0) * 1.1, inputs.psi_error * 1.4)
    ax.axhspan(inputs.psi_error, top, color=STATUS_COLOURS[thresholds.ERROR], alpha=0.08)
    ax.set_ylim(0, top)
    ax.set_ylabel("PSI")
    ax.set_title(f"Population stability index (bands {inputs.psi_warn:g} / {inputs.psi_error:g}), per application day")
    ax.legend(loc="upper left")
    figure.autofmt_xdate()
    latest_day = stability["day"].max()
    latest = stability.filter(pl.col("day") == latest_day).sort("psi", descending=True)
    return (
        "<h2>Population stability</h2>"
        f"{_img(figure, 'PSI per day')}"
        f"<h3>Newest day, {latest_day}: PSI per variable</h3>{_table(latest.select('variable', 'psi', 'band'), max_rows=30)}"
    )


def _performance_section(inputs: RiskReportInputs) -> str:
    perf = inputs.performance.sort("vintage_start")
    if perf.is_empty():
        return ("<h2>Model performance by vintage</h2><p class='note'>No scored application has a matured outcome yet: "
                "outcomes arrive after the performance window.</p>")
    figure = _figure(11.0, 4.0)
    auc_ax, calib_ax = figure.subplots(1, 2)
    for phase, colour in PHASE_COLOURS.items():
        part = perf.filter((pl.col("phase") == phase) & pl.col("auc").is_not_null())
        if not part.is_empty():
            auc_ax.plot(part["vintage_start"].to_list(), part["auc"].to_list(), "o", color=colour, label=f"{phase} vintages")
            calib_ax.plot(part["vintage_start"].to_list(), part["calibration_gap"].to_list(), "o", color=colour, label=phase)
    for version, group in perf.filter(pl.col("validation_auc").is_not_null()).group_by("model_version"):
        auc_ax.hlines(group["validation_auc"][0], group["vintage_start"].min(), group["vintage_start"].max(),
                      linestyles="--", colors="#424242")
        auc_ax.annotate(f"v{version[0]} out-of-time AUC", (group["vintage_start"].max(), group["validation_auc"][0]),
                        textcoords="offset points", xytext=(0, 4), fontsize=8, ha="right")
    auc_ax.set_title("AUC per vintage vs the out-of-time AUC")
    auc_ax.set_ylabel("AUC")
    auc_ax.legend(loc="best", fontsize=8)
    calib_ax.axhline(0.0, color="#424242", linestyle="--")
    calib_ax.set_title("Calibration: mean PD - observed default rate")
    figure.autofmt_xdate()
    columns = ["vintage", "model_version", "phase", "matured", "defaults", "default_rate", "mean_pd", "auc",
               "validation_auc", "auc_decay", "ks", "brier", "enough_data"]
    production = perf.filter(pl.col("phase") == PRODUCTION)
    note = (
        "" if not production.is_empty() else
        "<p class='note'>No production vintage has matured yet: every matured vintage was in a model's training or "
        "out-of-time window, so its AUC says little about decay.</p>"
    )
    return (
        "<h2>Model performance by vintage</h2>"
        "<p>Phase: <i>training</i> vintages were learned from, <i>validation</i> overlaps the out-of-time window the "
        "registry figures come from, <i>production</i> vintages came after it and are the ones that show decay.</p>"
        f"{note}{_img(figure, 'performance by vintage')}{_table(perf.select(columns).sort('vintage', descending=True))}"
    )


def _override_section(inputs: RiskReportInputs) -> str:
    if inputs.override_rates is None:
        return f"<h2>Override rate</h2><p class='note'>Skipped: {html.escape(inputs.override_note or 'the override_rates table does not exist yet (dbt builds it from human decisions).')}</p>"
    rates = inputs.override_rates.sort("day")
    if rates.is_empty():
        return "<h2>Override rate</h2><p class='note'>override_rates has no rows yet.</p>"
    figure = _figure()
    ax = figure.subplots()
    ax.plot(rates["day"].to_list(), rates["override_rate"].to_list(), marker="o", markersize=3)
    _day_axis(ax, rates["day"].to_list())
    if inputs.override_high is not None:
        ax.axhline(inputs.override_high, linestyle="--", color=STATUS_COLOURS[thresholds.ERROR], label=f"high {inputs.override_high:g}")
    if inputs.override_low is not None:
        ax.axhline(inputs.override_low, linestyle="--", color=STATUS_COLOURS[thresholds.WARN], label=f"low {inputs.override_low:g}")
    ax.set_ylabel("overrides / verdicts")
    ax.set_title("Override rate per decision day (too high: the model is overruled; too low: rubber-stamping?)")
    ax.legend(loc="upper left")
    figure.autofmt_xdate()
    return f"<h2>Override rate</h2>{_img(figure, 'override rate per day')}{_table(rates.sort('day', descending=True), max_rows=14)}"


def _review_section(inputs: RiskReportInputs) -> str:
    if inputs.review_times is None:
        return f"<h2>Time to decision</h2><p class='note'>Skipped: {html.escape(inputs.review_note or 'the time_to_decision table does not exist yet (dbt builds it from the review store).')}</p>"
    times = inputs.review_times.sort("day")
    if times.is_empty():
        return "<h2>Time to decision</h2><p class='note'>time_to_decision has no rows yet.</p>"
    figure = _figure()
    ax = figure.subplots()
    ax.plot(times["day"].to_list(), times["median_hours"].to_list(), marker="o", markersize=3)
    _day_axis(ax, times["day"].to_list())
    ax.set_ylabel("median hours")
    ax.set_title("Median hours from case creation to decision (case-weighted over queues), per decision day")
    figure.autofmt_xdate()
    return f"<h2>Time to decision</h2>{_img(figure, 'time to decision per day')}{_table(times.sort('day', descending=True), max_rows=14)}"


STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2rem; color: #212121; max-width: 1100px; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: right; white-space: nowrap; }
th { background: #f5f5f5; } img { max-width: 100%; }
.note { color: #616161; font-style: italic; }
.ok { color: #2e7d32; } .warn { color: #b28704; } .error { color: #c62828; }
td.ok { background: #e8f5e9; } td.warn { background: #fff8e1; } td.error { background: #ffebee; }
"""


def render_risk_report(inputs: RiskReportInputs) -> str:
    """The whole page as a string (no script, no external resource)."""
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in inputs.notes)
    sections = [
        _drift_section(inputs),
        _stability_section(inputs),
        _performance_section(inputs),
        _override_section(inputs),
        _review_section(inputs),
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>AIOS risk report</title><style>{STYLE}</style></head><body>"
        f"<h1>AIOS risk report</h1><p>Generated {inputs.generated_at:%Y-%m-%d %H:%M} UTC. "
        f"Champion: {html.escape(inputs.champion)}.</p>"
        f"{'<ul>' + notes + '</ul>' if notes else ''}"
        + "".join(sections)
        + "</body></html>"
    )


def write_report(text: str, path: Path) -> Path:
    """Write atomically (a reader never sees half a page)."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def relative_link(target: Path, start: Path) -> str:
    """``target`` relative to the folder ``start`` (for links between reports)."""
    import os

    return Path(os.path.relpath(target, start)).as_posix()


__all__ = ["RiskReportInputs", "relative_link", "render_risk_report", "write_report"]
