"""Tests of sonifying training runs."""
