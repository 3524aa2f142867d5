"""Framework-free logic of the pipeline: no Dagster imports in this package."""
