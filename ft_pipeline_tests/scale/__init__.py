"""Tests of scaling out: PostgreSQL, Kubernetes, Celery."""
