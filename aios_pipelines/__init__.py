"""AIOS credit-decisioning platform."""
