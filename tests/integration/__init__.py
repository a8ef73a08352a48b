"""Tests of real parts: a JACK dummy server, engine processes, recorders."""
