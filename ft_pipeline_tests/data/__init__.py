"""Tests of lib/data and the data assets."""
