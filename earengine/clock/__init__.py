"""The clock: the bar grid (pure timing) and the sources of tempo and bar lines (MIDI clock, Link)."""
