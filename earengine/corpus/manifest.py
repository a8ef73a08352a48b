"""A corpus folder and its manifest: what every track is, where it came from, under which license.

A corpus is a folder of mono FLAC files at 44.1 kHz (one subfolder per package or composer), read
by :class:`earengine.corpus.audio_folder.AudioFolder` like any folder of music, plus ``manifest.json``::

    {"format": "earengine-corpus", "format_version": 1, "kind": "soundtracks" | "composers",
     "sr": 44100, "sources": {name: {...}}, "tracks": [{...}], "skipped": [{...}]}

The manifest is rewritten (atomically) after every track, so a build that stops resumes where it
stopped: a track already listed, whose file is still there, is not made again.

Examples
--------
>>> m = Manifest.new("soundtracks")
>>> m.add_track({"out": "a/b.flac", "duration_s": 61.0, "sha256": "00"})
>>> Manifest.from_dict(m.to_dict()) == m
True
>>> m.total_s()
61.0
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from earengine.errors import ConfigError
from earengine.files import atomic_write_json, user_dir

__all__ = ["Manifest", "MANIFEST_FILE", "corpus_home", "write_flac"]

MANIFEST_FILE = "manifest.json"
FORMAT = "earengine-corpus"
FORMAT_VERSION = 1
SR = 44100


def corpus_home(kind: str, root: Optional[Path] = None) -> Path:
    """``root/<kind>`` or ``$EARENGINE_HOME/corpus/<kind>`` (``~/.local/share/earengine/...``)."""
    return (Path(root).expanduser() if root is not None else user_dir("corpus")) / kind


@dataclass(eq=True)
class Manifest:
    """What one corpus folder holds (see the module notes). Mutable while a build runs."""

    kind: str
    sr: int = SR
    sources: dict = field(default_factory=dict)
    tracks: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    @classmethod
    def new(cls, kind: str) -> "Manifest":
        return cls(kind=kind)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind, "sr": self.sr,
                "sources": self.sources, "tracks": self.tracks, "skipped": self.skipped}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Manifest":
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise ConfigError(f"manifest format={d.get('format') if isinstance(d, Mapping) else d!r} "
                              f"must be {FORMAT!r}")
        if d.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"manifest format_version={d.get('format_version')!r} must be {FORMAT_VERSION}; "
                              "rebuild the corpus with this earengine")
        return cls(kind=str(d["kind"]), sr=int(d.get("sr", SR)), sources=dict(d.get("sources", {})),
                   tracks=list(d.get("tracks", [])), skipped=list(d.get("skipped", [])))

    @classmethod
    def load(cls, folder: Path, kind: str) -> "Manifest":
        """The manifest in ``folder``, or a new one when there is none yet."""
        path = Path(folder) / MANIFEST_FILE
        if not path.exists():
            return cls.new(kind)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"manifest {path} must be readable JSON ({exc}); delete it to rebuild") from None
        m = cls.from_dict(data)
        if m.kind != kind:
            raise ConfigError(f"manifest {path} is of kind={m.kind!r}, not {kind!r}")
        return m

    def save(self, folder: Path) -> None:
        atomic_write_json(Path(folder) / MANIFEST_FILE, self.to_dict())

    def add_track(self, entry: Mapping) -> None:
        self.tracks = [t for t in self.tracks if t["out"] != entry["out"]] + [dict(entry)]

    def add_skipped(self, entry: Mapping) -> None:
        key = (entry.get("source"), entry.get("file"))
        self.skipped = [s for s in self.skipped if (s.get("source"), s.get("file")) != key] + [dict(entry)]

    def done(self, folder: Path, out: str) -> bool:
        """Whether the track written to ``out`` is listed and its file is there."""
        return (Path(folder) / out).is_file() and any(t["out"] == out for t in self.tracks)

    def decided(self, source: str, file: str) -> bool:
        """Whether ``file`` of ``source`` was already kept or left out."""
        return any(t.get("source") == source and t.get("file") == file for t in self.tracks) or any(
            s.get("source") == source and s.get("file") == file for s in self.skipped)

    def total_s(self) -> float:
        return round(sum(float(t["duration_s"]) for t in self.tracks), 3)


def write_flac(path: Path, x, sr: int = SR) -> None:
    """Write mono audio as 16-bit FLAC, atomically (a stopped build leaves no half file)."""
    import numpy as np
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0), sr, subtype="PCM_16", format="FLAC")
    tmp.replace(path)
