"""Expected loss of the approved book by vintage: PD x exposure x LGD, with the realised
loss beside it as outcomes mature. Pure functions on polars frames; no Dagster."""

from __future__ import annotations

import polars as pl

# Loss given default: the share of the exposure lost when a loan defaults. The lender's
# own figure belongs in the asset's config; 45% is the Basel foundation-IRB value for
# senior unsecured exposures.
DEFAULT_LGD = 0.45

EXPECTED_LOSS_SCHEMA = {
    "vintage": pl.Date(),
    "approved_loans": pl.UInt32(),
    "exposure": pl.Float64(),
    "expected_loss": pl.Float64(),
    "expected_loss_rate": pl.Float64(),
    "matured_loans": pl.UInt32(),
    "matured_exposure": pl.Float64(),
    "expected_loss_matured": pl.Float64(),
    "realised_defaults": pl.Int64(),
    "realised_loss": pl.Float64(),
    "realised_loss_rate": pl.Float64(),
    "realised_to_expected": pl.Float64(),
    "lgd": pl.Float64(),
}


def _ratio(numerator: str, denominator: str) -> pl.Expr:
    return pl.when(pl.col(denominator) > 0).then(pl.col(numerator) / pl.col(denominator)).otherwise(None)


def expected_loss_by_vintage(loans: pl.DataFrame, lgd: float = DEFAULT_LGD) -> pl.DataFrame:
    """One row per vintage (month of application) of the approved loans in ``loans``.

    ``loans`` has ``application_date``, ``pd``, ``loan_amount`` (the exposure),
    ``has_matured_outcome`` and ``defaulted`` (null until matured), one row per approved
    loan. Expected loss is sum(PD x exposure x LGD); on the matured loans alone it is
    compared with the realised loss, sum(defaulted x exposure x LGD)."""
    if not 0.0 <= lgd <= 1.0:
        raise ValueError(f"LGD is a share of the exposure, between 0 and 1; got {lgd}")
    if loans.is_empty():
        return pl.DataFrame(schema=EXPECTED_LOSS_SCHEMA)
    matured = pl.col("has_matured_outcome").fill_null(False)
    loss = pl.col("pd") * pl.col("loan_amount") * lgd
    table = (
        loans.with_columns(pl.col("application_date").cast(pl.Date).dt.truncate("1mo").alias("vintage"))
        .group_by("vintage")
        .agg(
            pl.len().alias("approved_loans"),
            pl.col("loan_amount").sum().cast(pl.Float64).alias("exposure"),
            loss.sum().alias("expected_loss"),
            matured.sum().cast(pl.UInt32).alias("matured_loans"),
            pl.col("loan_amount").filter(matured).sum().cast(pl.Float64).alias("matured_exposure"),
            loss.filter(matured).sum().alias("expected_loss_matured"),
            pl.col("defaulted").filter(matured).sum().cast(pl.Int64).alias("realised_defaults"),
            (pl.col("defaulted") * pl.col("loan_amount") * lgd).filter(matured).sum().alias("realised_loss"),
        )
        .with_columns(
            _ratio("expected_loss", "exposure").alias("expected_loss_rate"),
            _ratio("realised_loss", "matured_exposure").alias("realised_loss_rate"),
            _ratio("realised_loss", "expected_loss_matured").alias("realised_to_expected"),
            pl.lit(lgd, dtype=pl.Float64).alias("lgd"),
        )
        .sort("vintage")
    )
    return table.select(list(EXPECTED_LOSS_SCHEMA)).cast(EXPECTED_LOSS_SCHEMA)


def book_totals(table: pl.DataFrame) -> dict[str, float | int]:
    """The whole approved book: exposure, expected and realised loss."""
    sums = {c: float(table[c].sum() or 0.0) for c in ("exposure", "expected_loss", "matured_exposure",
                                                        "expected_loss_matured", "realised_loss")}
    sums["approved_loans"] = int(table["approved_loans"].sum() or 0)
    sums["matured_loans"] = int(table["matured_loans"].sum() or 0)
    sums["realised_to_expected"] = (
        sums["realised_loss"] / sums["expected_loss_matured"] if sums["expected_loss_matured"] > 0 else None
    )
    return sums
