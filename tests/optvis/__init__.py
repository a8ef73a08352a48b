"""Tests of the dream (feature visualisation)."""
