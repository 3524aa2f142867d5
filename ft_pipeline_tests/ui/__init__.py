"""Tests of the Dagster UI in a real browser."""
