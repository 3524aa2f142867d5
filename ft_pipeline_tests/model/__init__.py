"""Tests of lib/model: heads and the prefix cache."""
