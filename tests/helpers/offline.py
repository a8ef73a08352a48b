"""Test rig: a registry and pyo's offline server recording into a WAV that is read back."""

import itertools

import soundfile as sf

from earengine.params import default_registry
from earengine.synth.server import AudioServer

SR = 44100
_numbers = itertools.count()


class OfflineRig:
    """Subclasses set :attr:`defaults`, build what they test in :meth:`build` and name what to
    close in :meth:`parts`; :meth:`render` runs the server, :meth:`finish` returns the recording."""

    defaults: dict = {}
    read = {"dtype": "float64", "always_2d": True}

    def __init__(self, tmp_path, **values):
        self.registry = default_registry()
        self.registry.update({**self.defaults, **values})
        self.audio = AudioServer("offline", sr=SR)
        self.audio.start()
        self.build()
        self.path = tmp_path / f"{type(self).__name__.lower()}-{next(_numbers)}.wav"
        self.audio.record(str(self.path))

    def build(self):
        pass

    def parts(self):
        return []

    def render(self, seconds):
        self.audio.render(int(seconds * SR))

    def finish(self):
        self.audio.stop_recording()
        for part in self.parts():
            part.close()
        self.audio.close()
        x, sr = sf.read(str(self.path), **self.read)
        assert sr == SR
        return x


def rig_maker(cls, tmp_path):
    """Body of a fixture that makes rigs of ``cls`` on demand and finishes those left open."""
    made = []

    def make(**values):
        made.append(cls(tmp_path, **values))
        return made[-1]

    yield make
    for r in made:
        if r.audio.server is not None:
            r.finish()
