"""The thin Dagster layer: assets, checks, resources and automation."""
