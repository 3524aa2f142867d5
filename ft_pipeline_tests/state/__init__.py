"""Tests of the state folder: atomic writes under full and read-only disks."""
