"""Tests of sensors, schedules, declarative automation, the live daemon."""
