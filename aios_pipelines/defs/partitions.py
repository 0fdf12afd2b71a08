"""Daily partitions on the application (landing) day."""

import os

import dagster as dg

# A lender with older history sets AIOS_PARTITIONS_START before loading the code location.
PARTITIONS_START = os.environ.get("AIOS_PARTITIONS_START", "2026-01-01")

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1)
