"""Units: decibels and linear amplitude, one conversion for every part of earengine.

>>> round(db_to_amp(-6.0), 4)
0.5012
>>> db_to_amp(-80.0), db_to_amp(-120.0)
(0.0, 0.0)
"""

from __future__ import annotations

__all__ = ["SILENCE_DB", "db_to_amp", "db_to_gain"]

#: Gains at or below this many dB are silence (the floor of every gain row).
SILENCE_DB = -80.0


def db_to_gain(gain_db: float) -> float:
    """Decibels to a linear factor, with no floor (levels, ceilings, normalization targets).

    >>> db_to_gain(20.0)
    10.0
    """
    return float(10.0 ** (gain_db / 20.0))


def db_to_amp(gain_db: float) -> float:
    """Decibels to linear amplitude; :data:`SILENCE_DB` and below is silence (a fader's bottom)."""
    return 0.0 if gain_db <= SILENCE_DB else db_to_gain(gain_db)

