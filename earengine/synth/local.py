"""A sonification sink that plays in this process: the receiver and the pyo voices on a local server.

:class:`LocalSynthSink` is the sink ``open_sink("local")`` (and ``GradientSonifier(sink="local")``)
opens: the engine's sonification without the engine — a :class:`~earengine.sonify.receiver.SonReceiver`
feeding :class:`~earengine.synth.voices.GradientVoices` on an
:class:`~earengine.synth.server.AudioServer` of its own. It sits in the synth layer because it
drives pyo; :mod:`earengine.sonify.sinks` names it (:data:`~earengine.sonify.sinks.LOCAL_SINK`)
rather than importing it.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

from earengine.params import default_registry
from earengine.sonify.frame import GradientFrame
from earengine.sonify.receiver import SonReceiver
from earengine.synth.server import AudioServer
from earengine.synth.voices import GradientVoices

__all__ = ["LocalSynthSink"]

log = logging.getLogger("earengine.sonify")


class LocalSynthSink:
    """Frames played by a pyo synth in this process: no engine needed.

    Parameters
    ----------
    audio : str
        Audio mode (``auto``: JACK, else the default PortAudio device, else ``null``).
    values : mapping, optional
        ``/son/*`` values to start from (e.g. :data:`earengine.sonify.mapping.SEED_PRESET`).

    The synth runs on pyo's audio thread; :meth:`send` only maps the frame and hands its targets
    over. ``registry`` holds the live values (``sink.registry.set("/son/scale", "major")``).
    """

    def __init__(self, audio: str = "auto", *, values: Optional[dict] = None) -> None:
        self.registry = default_registry()
        if values:
            self.registry.update(values, source="local")
        self.audio = AudioServer(audio)
        log.info("%s", self.audio.reason)
        self.audio.start()
        try:
            self.voices = GradientVoices(self.audio, self.registry)
            self.receiver = SonReceiver(self.registry, self.voices)
        except BaseException:
            self.audio.close()
            raise

    def begin(self, run: str, names: Sequence[str] = (), *, layers: Optional[int] = None) -> None:
        self.receiver.begin(run, len(names) if layers is None else int(layers))

    def send(self, frame: GradientFrame) -> None:
        if frame.run not in self.receiver.runs:
            self.receiver.begin(frame.run, len(frame.norms))
        self.receiver.frame(frame.run, frame.step, frame.norms)

    def sounded_step_s(self, run: str) -> Optional[float]:
        """The voices' step: they keep only the newest frame of each.

        None with offline audio: its time is the renderer's, not the clock's.
        """
        return self.receiver.step_s() if self.audio.realtime else None

    def end(self, run: str) -> None:
        if run in self.receiver.runs:
            self.receiver.end(run)

    def close(self) -> None:
        try:
            self.receiver.close()
            self.voices.close()
        finally:
            self.audio.close()
