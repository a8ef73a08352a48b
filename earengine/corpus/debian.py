"""Music from Debian's data packages: fetch, unpack, find every track, read its license.

A package is fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into a cache
folder; nothing is installed. Tracks are found as files and inside ``.pk3``/``.zip`` archives
(games ship their music in both). Each track's license comes from the package's copyright file:
for a machine-readable (DEP-5) file the last ``Files:`` stanza whose pattern matches the track's
path, else the license named in the free-form text.

Examples
--------
>>> text = "Format: x\\n\\nFiles: *\\nCopyright: Team\\nLicense: GPL-2+\\n\\n"
>>> text += "Files: base/music/a.ogg\\nCopyright: Ann\\nLicense: CC-BY-3.0\\n"
>>> lic = read_license(text, "usr/share/games/x/base/music/a.ogg")
>>> lic.license, lic.copyright
('CC-BY-3.0', 'Ann')
>>> read_license(text, "usr/share/games/x/base/music/b.ogg").license
'GPL-2+'
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from earengine.errors import ConfigError, EarEngineError

__all__ = [
    "MissingToolError",
    "License",
    "PackageTrack",
    "require_tools",
    "fetch_package",
    "unpack_package",
    "package_version",
    "find_tracks",
    "read_license",
    "AUDIO_SUFFIXES",
]

#: Endings of the audio files we take from a package (decoded by libsndfile).
AUDIO_SUFFIXES = (".ogg", ".opus", ".oga", ".flac", ".wav")
_ARCHIVE_SUFFIXES = (".pk3", ".zip")


class MissingToolError(EarEngineError, OSError):
    """A program the corpus builder needs (apt-get, dpkg-deb, fluidsynth) is not installed."""


def require_tools(*names: str, hint: str = "") -> None:
    """Raise one line naming every program of ``names`` not found on ``PATH``."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise MissingToolError(
            f"{', '.join(missing)} must be installed to build this corpus{hint}; "
            "on another system, train on your own music with --data DIR"
        )


@dataclass(frozen=True)
class License:
    """Who holds a track and under which license, as the package's copyright file says."""

    license: str
    copyright: str


@dataclass(frozen=True)
class PackageTrack:
    """One audio file of an unpacked package.

    ``path`` is where it lies in the package (``usr/share/...``); for a member of an archive it
    is the archive's folder joined with the member's path, the way the upstream source tree has
    it. ``read()`` returns its bytes.
    """

    path: str
    file: Path
    member: Optional[str] = None

    def read(self) -> bytes:
        if self.member is None:
            return self.file.read_bytes()
        with zipfile.ZipFile(self.file) as z:
            return z.read(self.member)


def _run(args: list, cwd: Optional[Path] = None) -> str:
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise MissingToolError(f"{args[0]} could not run ({exc.strerror})") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ConfigError(f"{' '.join(args[:2])} … failed with status {done.returncode}: {last}")
    return done.stdout


def fetch_package(name: str, debs: Path) -> Path:
    """The ``.deb`` of package ``name`` in folder ``debs``, downloaded with apt-get if absent."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", name):
        raise ConfigError(f"package={name!r} must be a Debian package name")
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{name}_*.deb"))
    if found:
        return found[-1]
    require_tools("apt-get", "dpkg-deb")
    _run(["apt-get", "download", "-q", name], cwd=debs)
    found = sorted(debs.glob(f"{name}_*.deb"))
    if not found:
        raise ConfigError(f"package={name!r} was not downloaded; is it in this system's apt sources?")
    return found[-1]


def package_version(deb: Path) -> str:
    """The ``Version`` field of a ``.deb``."""
    require_tools("dpkg-deb")
    return _run(["dpkg-deb", "-f", str(deb), "Version"]).strip()


def unpack_package(deb: Path, into: Path) -> Path:
    """Unpack ``deb`` into ``into`` (once: a marker file records a finished unpack)."""
    done = into / ".unpacked"
    if done.exists():
        return into
    require_tools("dpkg-deb")
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    _run(["dpkg-deb", "-x", str(deb), str(into)])
    done.write_text(deb.name + "\n")
    return into


def find_tracks(root: Path) -> Iterator[PackageTrack]:
    """Every audio file under ``root``, in files and in ``.pk3``/``.zip`` archives, sorted by path."""
    found = []
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        suffix = p.suffix.lower()
        if suffix in AUDIO_SUFFIXES:
            found.append(PackageTrack(rel, p))
        elif suffix in _ARCHIVE_SUFFIXES:
            try:
                with zipfile.ZipFile(p) as z:
                    members = [m.filename for m in z.infolist() if not m.is_dir()]
            except (zipfile.BadZipFile, OSError):
                continue
            folder = p.parent.relative_to(root).as_posix()
            for m in members:
                if Path(m).suffix.lower() in AUDIO_SUFFIXES:
                    found.append(PackageTrack(f"{folder}/{m}" if folder != "." else m, p, m))
    yield from sorted(found, key=lambda t: t.path)


_KNOWN = (
    "CC-BY-SA-4.0", "CC-BY-SA-3.0", "CC-BY-4.0", "CC-BY-3.0", "CC0-1.0", "GPL-3+", "GPL-2+",
    "GPL-3", "GPL-2", "LGPL-2.1+", "Artistic", "public-domain",
)
_FREEFORM = (
    (re.compile(r"GNU General Public License.{0,120}version 2.{0,40}or.{0,40}later", re.S | re.I), "GPL-2+"),
    (re.compile(r"GNU General Public License.{0,120}version 3", re.S | re.I), "GPL-3+"),
    (re.compile(r"Creative Commons Attribution[- ]Share ?Alike", re.I), "CC-BY-SA"),
    (re.compile(r"Creative Commons Attribution", re.I), "CC-BY"),
    (re.compile(r"GNU General Public License", re.I), "GPL"),
)


def _stanzas(text: str) -> list:
    out, fields, key = [], {}, None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if fields:
                out.append(fields)
            fields, key = {}, None
        elif line[0] in " \t" and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
    return out


def _matches(pattern: str, path: str) -> bool:
    parts = path.split("/")
    return any(fnmatch.fnmatchcase("/".join(parts[i:]), pattern) for i in range(len(parts)))


def read_license(copyright_text: str, path: str) -> License:
    """The license of the file at ``path`` (in the package) by the package's copyright file.

    Parameters
    ----------
    copyright_text : str
        ``usr/share/doc/<package>/copyright``.
    path : str
        The track's path in the package (see :class:`PackageTrack`).
    """
    stanzas = _stanzas(copyright_text)
    if stanzas and "format" in stanzas[0]:
        chosen = None
        for s in stanzas:
            if "files" in s and any(_matches(p, path) for p in s["files"].split()):
                chosen = s  # DEP-5: the last matching stanza wins
        if chosen is not None:
            name = chosen.get("license", "").splitlines()[0].strip() if chosen.get("license") else ""
            holder = " ".join(chosen.get("copyright", "").split())
            return License(name or "unknown", holder or "unknown")
    for pattern, name in _FREEFORM:
        if pattern.search(copyright_text):
            holders = re.findall(r"(?:Copyright|©)\s*(?:\(C\))?\s*([^\n]+)", copyright_text)
            return License(name, " ".join(holders[0].split()) if holders else "unknown")
    for name in _KNOWN:
        if name in copyright_text:
            return License(name, "unknown")
    return License("unknown", "unknown")
