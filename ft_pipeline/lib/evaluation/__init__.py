"""Scoring models, metrics, the TF-IDF baseline, the report and its plots."""
