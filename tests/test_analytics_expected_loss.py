"""Expected loss of the approved book by vintage, worked out by hand."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from aios_pipelines.analytics.expected_loss import DEFAULT_LGD, book_totals, expected_loss_by_vintage

LOANS = pl.DataFrame(
    {
        "application_date": [date(2026, 6, 3), date(2026, 6, 20), date(2026, 6, 28), date(2026, 7, 1), date(2026, 7, 9)],
        "pd": [0.02, 0.05, 0.10, 0.04, 0.20],
        "loan_amount": [10_000.0, 20_000.0, 5_000.0, 50_000.0, 8_000.0],
        "has_matured_outcome": [True, True, True, False, False],
        "defaulted": [0, 1, 0, None, None],
    }
)


def test_expected_and_realised_loss_by_vintage():
    table = expected_loss_by_vintage(LOANS, lgd=0.5)
    assert table["vintage"].to_list() == [date(2026, 6, 1), date(2026, 7, 1)]
    june, july = table.row(0, named=True), table.row(1, named=True)
    # June: PD x amount = 200 + 1000 + 500 = 1700; x LGD 0.5
    assert june["expected_loss"] == pytest.approx(850.0)
    assert june["exposure"] == 35_000.0 and june["expected_loss_rate"] == pytest.approx(850 / 35_000)
    assert (june["matured_loans"], june["realised_defaults"]) == (3, 1)
    assert june["realised_loss"] == pytest.approx(10_000.0)  # the 20,000 loan defaulted, half is lost
    assert june["realised_to_expected"] == pytest.approx(10_000 / 850)
    assert june["realised_loss_rate"] == pytest.approx(10_000 / 35_000)
    # July: nothing has matured yet, so there is no realised loss to compare
    assert july["expected_loss"] == pytest.approx(0.5 * (2_000 + 1_600))
    assert july["matured_loans"] == 0 and july["realised_loss"] == 0.0
    assert july["realised_to_expected"] is None and july["realised_loss_rate"] is None
    assert table["lgd"].to_list() == [0.5, 0.5]


def test_default_lgd_and_book_totals():
    table = expected_loss_by_vintage(LOANS)
    assert DEFAULT_LGD == 0.45 and table["lgd"][0] == 0.45
    totals = book_totals(table)
    assert totals["approved_loans"] == 5 and totals["matured_loans"] == 3
    assert totals["expected_loss"] == pytest.approx(0.45 * (1_700 + 3_600))
    assert totals["realised_to_expected"] == pytest.approx((0.45 * 20_000) / (0.45 * 1_700))


def test_empty_book_and_invalid_lgd():
    empty = expected_loss_by_vintage(LOANS.clear())
    assert empty.is_empty() and "expected_loss" in empty.columns
    assert book_totals(empty)["realised_to_expected"] is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        expected_loss_by_vintage(LOANS, lgd=1.2)
