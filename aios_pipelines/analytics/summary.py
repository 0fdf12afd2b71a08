"""The decision-flow lines of the demo summary, read from the dbt marts.

``decision_flow_summary`` returns the text ``aios demo`` prints after ``build_analytics``:
the approval funnel (``approval_funnel``), how often people overrode the model and in
which direction (``override_rates``, one row per reviewer verdict), and how long referred
cases took (``time_to_decision`` for the SLA, the per-case hours of
``fct_application_decisions`` for the overall percentiles, since daily percentiles cannot
be combined into an overall one). A mart that is missing or empty gives no line.
"""

from __future__ import annotations

from aios_pipelines.storage.warehouse import Warehouse


def _pct(part: float | None, whole: float | None) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def _hours(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} h"


def funnel_line(warehouse: Warehouse) -> str | None:
    if not warehouse.table_exists("approval_funnel"):
        return None
    f = warehouse.query(
        "select sum(applications) as applications, sum(auto_approved) as auto_approved, "
        "sum(auto_declined) as auto_declined, sum(referred_to_review) as referred, sum(reviewed) as reviewed, "
        "sum(approved) as approved, sum(declined) as declined, sum(pending) as pending from approval_funnel"
    ).row(0, named=True)
    if not f["applications"]:
        return None
    return (f"approval funnel: {f['applications']:,} applications -> {f['auto_approved']:,} auto-approved, "
            f"{f['auto_declined']:,} auto-declined, {f['referred']:,} referred ({f['reviewed']:,} reviewed, "
            f"{f['pending']:,} pending) -> {f['approved']:,} approved, {f['declined']:,} declined "
            f"(approval rate {_pct(f['approved'], f['approved'] + f['declined'])})")


def override_line(warehouse: Warehouse) -> str | None:
    if not warehouse.table_exists("override_rates"):
        return None
    o = warehouse.query(
        "select sum(verdicts) as verdicts, sum(overrides) as overrides, sum(low_side_overrides) as low, "
        "sum(high_side_overrides) as high, sum(blind_verdicts) as blind, sum(blind_agreements) as blind_agree, "
        "sum(shown_verdicts) as shown, sum(shown_agreements) as shown_agree from override_rates"
    ).row(0, named=True)
    if not o["verdicts"]:
        return None
    line = (f"overrides: {o['overrides']:,} of {o['verdicts']:,} reviewer verdicts went against the model "
            f"({_pct(o['overrides'], o['verdicts'])}): low-side {_pct(o['low'], o['verdicts'])} "
            f"({o['low']:,} approved a recommended decline), high-side {_pct(o['high'], o['verdicts'])} "
            f"({o['high']:,} declined a recommended approval)")
    if o["blind"]:
        line += (f"; agreement with the model {_pct(o['blind_agree'], o['blind'])} blind "
                 f"({o['blind']:,} verdicts) vs {_pct(o['shown_agree'], o['shown'])} shown")
    return line


def time_to_decision_line(warehouse: Warehouse) -> str | None:
    if not warehouse.table_exists("time_to_decision"):
        return None
    t = warehouse.query(
        "select sum(decided_cases) as decided, sum(sla_breaches) as breaches from time_to_decision"
    ).row(0, named=True)
    if not t["decided"]:
        return None
    line = f"time to decision: {t['decided']:,} referred cases decided"
    if warehouse.table_exists("fct_application_decisions"):
        hours = warehouse.query(
            "select hours_to_decision from fct_application_decisions "
            "where decided_by_type = 'human' and hours_to_decision is not null"
        )["hours_to_decision"]
        p50, p90 = (hours.quantile(q, interpolation="linear") for q in (0.5, 0.9))
        line += f", p50 {_hours(p50)}, p90 {_hours(p90)}"
    return line + f"; SLA breached on {t['breaches']:,} ({_pct(t['breaches'], t['decided'])})"


def decision_flow_summary(warehouse: Warehouse) -> str:
    """The funnel, override and time-to-decision lines (two-space indented), or "" when the
    analytics marts have not been built."""
    lines = [line for line in (funnel_line(warehouse), override_line(warehouse), time_to_decision_line(warehouse))
             if line]
    return "".join(f"  {line}\n" for line in lines)
