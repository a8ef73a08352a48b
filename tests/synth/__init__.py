"""Tests of the synth: loop player and voices."""
