"""MIDI: the wire, bindings, learn and takeover, ports per backend, notes and files."""
