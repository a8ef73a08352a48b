"""The ear's training data, opened from a command-line spec or from a checkpoint's description.

Two kinds of :class:`~earengine.corpus.clips.ClipSource` feed the ear: the seeded synthetic corpus
(:class:`~earengine.corpus.synthetic.SyntheticCorpus`, so that training, the probe and the tests
work offline) and a folder of audio files (:class:`~earengine.corpus.audio_folder.AudioFolder`).
:func:`open_source` turns a spec (``"synthetic"``, ``"synthetic:N"``, ``"synthetic:N:V"`` or a
folder) into one; :func:`from_description` turns the dict that a source's ``describe()`` wrote
into a checkpoint back into one. :mod:`earengine.corpus.splits` draws clips from either.
"""

from __future__ import annotations

import logging
from pathlib import Path

from earengine.corpus.audio_folder import AudioFolder
from earengine.corpus.clips import SR, ClipSource
from earengine.corpus.synthetic import GENERATOR_VERSION, SyntheticCorpus
from earengine.errors import AudioFileError, ConfigError

__all__ = ["open_source", "from_description"]

_log = logging.getLogger(__name__)


def open_source(spec: str, *, seed: int = 0, sr: int = SR) -> ClipSource:
    """Open a data source from a short spec.

    Parameters
    ----------
    spec : str
        ``"synthetic"`` (16 tracks of 60 s), ``"synthetic:N"`` (N tracks),
        ``"synthetic:N:V"`` (N tracks, ``section_variety=V``), or a folder of audio files.
    seed : int >= 0
        Seed of the synthetic corpus (unused for folders).
    sr : int
        Sample rate of the clips.

    Raises
    ------
    ConfigError, AudioFileError
        With a one-line reason.

    Examples
    --------
    >>> open_source("synthetic:20", seed=3).n_tracks
    20
    >>> open_source("synthetic:8:0.5").section_variety
    0.5
    """
    if not isinstance(spec, (str, Path)) or not str(spec).strip():
        raise ConfigError(f"data={spec!r} must be 'synthetic' or a folder of audio files")
    text = str(spec).strip()
    if text == "synthetic" or text.startswith("synthetic:"):
        fields = text.split(":")[1:]
        usage = (f"data={text!r} must be 'synthetic', 'synthetic:N' or 'synthetic:N:V' "
                 "(N tracks >= 1, section variety V in [0, 1])")
        if len(fields) > 2 or (fields and (not fields[0].isdigit() or int(fields[0]) < 1)):
            raise ConfigError(usage)
        variety = 1.0
        if len(fields) == 2:
            try:
                variety = float(fields[1])
            except ValueError:
                raise ConfigError(usage) from None
        n_tracks = int(fields[0]) if fields else 16
        return SyntheticCorpus(n_tracks=n_tracks, seed=seed, sr=sr, section_variety=variety)
    if not Path(text).expanduser().exists():
        raise AudioFileError(
            f"data={text!r} must be 'synthetic' or an existing folder of audio files; no such folder"
        )
    return AudioFolder(text, sr=sr)


def from_description(desc: dict) -> ClipSource:
    """Reopen the source that :meth:`describe` described (as stored in a checkpoint).

    Examples
    --------
    >>> c = SyntheticCorpus(n_tracks=3, seed=5, track_duration_s=4.0)
    >>> from_description(c.describe()).describe() == c.describe()
    True
    """
    if not isinstance(desc, dict) or "kind" not in desc:
        raise ConfigError(f"data description={desc!r} must be a dict with a 'kind'")
    kind = desc["kind"]
    if kind == "synthetic":
        version = desc.get("generator_version", GENERATOR_VERSION)
        if version != GENERATOR_VERSION:
            _log.warning(
                "synthetic corpus generator_version=%s differs from this one (%s); its audio differs",
                version, GENERATOR_VERSION,
            )
        return SyntheticCorpus(
            n_tracks=desc["n_tracks"], seed=desc["seed"],
            track_duration_s=desc["track_duration_s"], sr=desc.get("sr", SR),
            section_variety=desc.get("section_variety", 1.0),
        )
    if kind == "folder":
        return AudioFolder(desc["path"], sr=desc.get("sr", SR))
    raise ConfigError(f"data kind={kind!r} must be 'synthetic' or 'folder'")
