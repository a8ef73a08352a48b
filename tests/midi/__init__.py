"""Tests of MIDI: control maps, the parser, note output and MIDI files."""
