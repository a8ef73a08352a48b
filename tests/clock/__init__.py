"""Tests of the clock: the grid, tempo from pulses, and its sources."""
