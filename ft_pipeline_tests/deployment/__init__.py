"""Tests of lib/deployment: merge, registry, serving."""
