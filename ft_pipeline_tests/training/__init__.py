"""Tests of lib/training and the training assets."""
