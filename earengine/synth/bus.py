"""The final stage: every source summed, limited to the ceiling, sent to the outputs.

:func:`limiter` is the one limiter of earengine. It adds no latency (no look-ahead, so loops stay
on the grid): the gain follows the peak envelope down to the ceiling within 2 ms, and a hard
clip catches what the attack lets through, so nothing ever exceeds ``LIMITER_CEILING_DBFS``.
"""

from __future__ import annotations

from earengine.synth.params import LIMITER_CEILING_DBFS
from earengine.units import db_to_gain

__all__ = ["limiter", "OutputBus", "CEILING"]

#: Linear peak the output never exceeds.
CEILING = db_to_gain(LIMITER_CEILING_DBFS)


def limiter(pyo, signal):
    """Limit a (multi-stream) pyo signal to :data:`CEILING`, per stream."""
    env = pyo.Follower2(pyo.Abs(signal), risetime=0.002, falltime=0.15)
    gain = pyo.Sig(CEILING) / pyo.Max(env, comp=CEILING)
    return pyo.Clip(signal * gain, min=-CEILING, max=CEILING)


class OutputBus:
    """Sums stereo sources (pyo objects with one stream per output channel) into one limiter.

    Parameters
    ----------
    audio : AudioServer
    sources : sequence of pyo objects
        Each with ``audio.nchnls`` streams.
    """

    def __init__(self, audio, sources) -> None:
        import pyo

        self.sum = sum(sources[1:], sources[0]) if len(sources) > 1 else sources[0]
        self.output = limiter(pyo, self.sum)
        self.output.out()

    def close(self) -> None:
        self.output.stop()
