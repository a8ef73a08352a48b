"""The one exception root of earengine.

Every error earengine raises on purpose derives from :class:`EarEngineError` *and* from the
builtin it resembles, so callers may catch either ``EarEngineError`` or, say, ``ValueError``.

Messages follow one form: ``name=value must be <constraint>``, followed where possible by how to
fix it. They are single lines so that a console, a screen reader or an OSC ``/fail`` reply can
carry them unchanged.
"""

from __future__ import annotations

__all__ = [
    "EarEngineError",
    "ParameterError",
    "UnknownAddressError",
    "AudioFileError",
    "PresetError",
    "CheckpointError",
    "ConfigError",
    "check_config_keys",
    "DeviceError",
]


class EarEngineError(Exception):
    """Root of every error earengine raises on purpose."""


class ParameterError(EarEngineError, ValueError):
    """A value does not fit its parameter (wrong type, count, range, NaN or inf)."""


class UnknownAddressError(EarEngineError, KeyError):
    """An OSC address or parameter name that the registry does not know."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want a plain line.
        return str(self.args[0]) if self.args else ""


class AudioFileError(EarEngineError, OSError):
    """An audio file that is missing, unreadable or not audio."""


class PresetError(EarEngineError, ValueError):
    """A preset name or preset file that cannot be used."""


class CheckpointError(EarEngineError, ValueError):
    """A model checkpoint that is missing, unsafe (pickle) or of the wrong shape."""


class ConfigError(EarEngineError, ValueError):
    """A configuration (model, data, training) that makes no sense."""


def check_config_keys(data, known, *, what: str) -> None:
    """Raise a one-line ConfigError when ``data`` has keys outside ``known`` (a config written by
    hand, or by another version)."""
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"{what} config keys={sorted(unknown)} are unknown; expected some of {sorted(known)}")


class DeviceError(EarEngineError, OSError):
    """An audio, MIDI or compute device that cannot be opened."""
