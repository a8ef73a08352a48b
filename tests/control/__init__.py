"""Tests of OSC, OSCQuery, streams, the clock and MIDI control."""
