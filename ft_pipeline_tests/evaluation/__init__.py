"""Tests of lib/evaluation."""
