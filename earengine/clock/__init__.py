"""The clock: where tempo and bar lines come from.

:mod:`~earengine.clock.grid` is the bar grid the loop player plays on (pure timing, in the domain
layer); :mod:`~earengine.clock.midi_in`, :mod:`~earengine.clock.midi_out` and
:mod:`~earengine.clock.link` are its sources and its MIDI clock output (transports);
:mod:`~earengine.clock.control` keeps them in step with the ``/clock/*`` rows of
:mod:`~earengine.clock.params`.
"""
