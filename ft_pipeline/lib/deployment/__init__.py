"""Merging the adapter, registration, the registry and serving."""
