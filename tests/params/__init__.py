"""Tests of the parameter registry and presets."""
