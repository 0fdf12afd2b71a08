"""Governance: what the platform keeps about applicants, and for how long."""
