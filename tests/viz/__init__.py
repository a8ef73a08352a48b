"""Tests of the visualisation layout and frames."""
