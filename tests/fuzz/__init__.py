"""Fuzz tests: every boundary decoder given well-formed, cut-short and garbage input (Hypothesis)."""
