"""Activation streams: every neuron lit at the moment its part of the loop sounds.

- :mod:`earengine.streams.params`: the ``/stream/*`` rows and what a stream sends.
- :mod:`earengine.streams.hub`: :class:`~earengine.streams.hub.StreamHub`, the sender thread.
- :mod:`earengine.streams.position`: where the sound is (the loop player's phase, timed).
- :mod:`earengine.streams.packing`: frames into OSC bundles of at most ``/stream/max_bytes``.
- :mod:`earengine.streams.destinations`: UDP destinations, sent to without waiting.
- :mod:`earengine.streams.websocket`: WebSocket receivers, each with its own short queue.
"""
