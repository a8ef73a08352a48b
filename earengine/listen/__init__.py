"""The ear listens: audio input heard, streamed, captured and dreamed from.

- :mod:`earengine.listen.ring`: the input's mono mix in shared memory, written on the audio
  thread, read by anyone, nobody waiting (foundation: numpy only);
- :mod:`earengine.listen.params`: the ``/listen/*`` rows, ``/stream/source`` and ``/loop/capture``;
- :mod:`earengine.listen.process`: the listener process (torch: the ear on the last seconds heard);
- :mod:`earengine.listen.service`: the engine's side: the listener's supervisor, the level meter
  and captures.
"""
