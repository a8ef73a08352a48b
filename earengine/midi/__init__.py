"""MIDI: controllers bound to the registry, ports per backend, the dream's notes and MIDI files.

- :mod:`~earengine.midi.wire`: raw bytes to messages (running status, realtime bytes inside
  messages, sysex dropped).
- :mod:`~earengine.midi.bindings`: a control bound to an address, ``/midi/map`` parsed and
  checked against the rows, controller maps kept by name.
- :mod:`~earengine.midi.control`: messages move parameters and fire commands; learn, takeover
  and feedback.
- :mod:`~earengine.midi.ports` and its backends :mod:`~earengine.midi.ports_jack` (JACK),
  :mod:`~earengine.midi.ports_rtmidi` (ALSA) and :mod:`~earengine.midi.ports_memory` (tests).
- :mod:`~earengine.midi.service`: the ports and the thread that reads them.
- :mod:`~earengine.midi.handlers`: the ``/midi/*`` command handlers the engine registers.
- :mod:`~earengine.midi.notes`: the dream's notes on the MIDI output, on the bar grid.
- :mod:`~earengine.midi.file`: standard MIDI files of a loop's notes.
- :mod:`~earengine.midi.params`: the ``/midi/*`` rows.
"""
