"""The soundtrack corpus: produced music from Debian's game-music packages.

Each package of :data:`SOUNDTRACKS` is downloaded (never installed), unpacked, and every track in
it is decoded, mixed to mono, resampled to 44.1 kHz and written as FLAC under
``<corpus>/<package>/``. Left out, each with its reason printed and kept in the manifest:
tracks under :data:`~earengine.corpus.checks.MIN_TRACK_S`, files libsndfile cannot decode, exact
duplicates of a track already kept, and tracks that are one short cycle repeated.
"""

from __future__ import annotations

import hashlib
import io
import logging
import sys
from pathlib import Path
from typing import IO, Iterable, Optional

import numpy as np
import soundfile as sf

from earengine.audiofile import resample
from earengine.corpus.checks import MIN_TRACK_S, audio_sha256, repeated_cycle_s
from earengine.corpus.debian import (
    PackageTrack,
    fetch_package,
    find_tracks,
    package_version,
    read_license,
    unpack_package,
)
from earengine.corpus.manifest import SR, Manifest, write_flac
from earengine.errors import ConfigError, EarEngineError
from earengine.progress import Progress

__all__ = ["SOUNDTRACKS", "DEFAULT_SOUNDTRACKS", "build_soundtracks", "add_package", "refresh_licenses"]

_log = logging.getLogger(__name__)

#: Debian packages of produced game music we know to be music (not one-shot samples), with
#: their style. Licenses are read from each package's copyright file at build time.
SOUNDTRACKS = {
    "nexuiz-music": "electronic",  # 17 tracks with strong beats: the track-identification set
    "warzone2100-music": "electronic",
    "ufoai-music": "orchestral",
    "wesnoth-1.16-music": "orchestral",
    "planetblupi-music-ogg": "chiptune",  # one short cycle repeated per file: the loop check's case
}
#: What ``earengine corpus soundtracks`` builds when no package is named (about 9.4 h).
DEFAULT_SOUNDTRACKS = ("nexuiz-music", "warzone2100-music", "ufoai-music")


def _decode(data: bytes) -> tuple:
    x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    if x.shape[0] == 0:
        raise ValueError("it holds no samples")
    x = x.mean(axis=1)
    if not np.all(np.isfinite(x)):
        raise ValueError("it holds NaN or infinite samples")
    return x, int(sr)


def _title(path: str) -> str:
    return Path(path).stem.replace("_", " ").replace("-", " ").strip()


def _out_name(package: str, track: PackageTrack, taken: set) -> str:
    stem = Path(track.path).stem
    out = f"{package}/{stem}.flac"
    if out in taken:
        out = f"{package}/{track.path.replace('/', '_').rsplit('.', 1)[0]}.flac"
    return out


def _copyright_text(root: Path, package: str) -> str:
    path = root / "usr/share/doc" / package / "copyright"
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


_NOTICES = ("license.txt", "LICENSE", "LICENSE.txt", "COPYING", "README.license")


def _license_fields(root: Path, copyright_text: str, path: str) -> dict:
    """License and holder from the package's copyright file, plus the first line of an upstream
    license file beside the track (albums often name their composer there)."""
    lic = read_license(copyright_text, path)
    fields = {"license": lic.license, "copyright": lic.copyright}
    folder = (root / path).parent
    while folder != root and root in folder.parents:
        for name in _NOTICES:
            notice = folder / name
            if notice.is_file():
                first = next((line.strip() for line in notice.read_text(errors="replace").splitlines()
                              if line.strip() and not line.lower().startswith("for all")), "")
                fields["notice"] = first[:200]
                return fields
        folder = folder.parent
    return fields


def refresh_licenses(manifest: Manifest, folder: Path) -> None:
    """Read every kept track's license again from its unpacked package (after this code learned
    to read a copyright file better, say); audio is not touched."""
    texts: dict = {}
    for t in manifest.tracks:
        root = folder / ".unpacked" / t["package"]
        if not root.is_dir():
            continue
        if t["package"] not in texts:
            texts[t["package"]] = _copyright_text(root, t["package"])
        t.pop("notice", None)
        t.update(_license_fields(root, texts[t["package"]], t["file"]))
    manifest.save(folder)


def add_package(
    manifest: Manifest,
    folder: Path,
    package: str,
    *,
    debs: Path,
    label: Optional[str] = None,
    stream: Optional[IO[str]] = None,
) -> None:
    """Add every usable track of Debian package ``package`` to the corpus in ``folder``.

    Parameters
    ----------
    manifest : Manifest
        Updated and saved after each track.
    folder : Path
        The corpus folder.
    package : str
        A Debian package name, or the path of a ``.deb`` file.
    debs : Path
        Where downloaded ``.deb`` files are kept (and looked for first).
    label : str, optional
        The tracks' label; :data:`SOUNDTRACKS`' style, else the package name.
    stream : file-like, optional
        Progress and one line per track left out (stderr by default).
    """
    stream = stream if stream is not None else sys.stderr
    deb = Path(package) if package.endswith(".deb") else fetch_package(package, debs)
    name = deb.name.split("_")[0] if package.endswith(".deb") else package
    if manifest.sources.get(name, {}).get("complete"):
        return
    version = package_version(deb)
    root = unpack_package(deb, folder / ".unpacked" / name)
    copyright_text = _copyright_text(root, name)
    label = label or SOUNDTRACKS.get(name, name)
    manifest.sources[name] = {"kind": "debian-package", "version": version, "deb": deb.name,
                              "label": label, "complete": False}
    tracks = list(find_tracks(root))
    if not tracks:
        raise ConfigError(f"package={name!r} must hold audio files (.ogg, .opus, .flac, .wav); it has none")
    known = {t["audio_sha256"]: t["out"] for t in manifest.tracks}
    taken = {t["out"] for t in manifest.tracks}

    def skip(track: PackageTrack, reason: str) -> None:
        print(f"corpus: left out {name}: {track.path}: {reason}", file=stream)
        manifest.add_skipped({"source": name, "file": track.path, "reason": reason})
        manifest.save(folder)

    def take(track: PackageTrack) -> None:
        try:
            x, native_sr = _decode(track.read())
        except Exception as exc:  # libsndfile and zipfile raise several kinds on bad data
            reason = " ".join(str(getattr(exc, "error_string", None) or exc).split()) or type(exc).__name__
            _log.warning("skipping %s in %s: %s", track.path, name, reason)
            skip(track, f"not readable as audio ({reason})")
            return
        duration_s = len(x) / native_sr
        if duration_s < MIN_TRACK_S:
            skip(track, f"lasts {duration_s:.0f} s, under {MIN_TRACK_S:.0f} s")
            return
        x = np.clip(resample(x, native_sr, SR), -1.0, 1.0).astype(np.float32)
        digest = audio_sha256(x)
        if digest in known:
            skip(track, f"the same audio as {known[digest]}")
            return
        cycle_s = repeated_cycle_s(x, SR)
        if cycle_s is not None:
            skip(track, f"one {cycle_s:.0f} s cycle repeated for {duration_s:.0f} s")
            return
        out = _out_name(name, track, taken)
        write_flac(folder / out, x)
        manifest.add_track({
            "out": out, "source": name, "package": name, "version": version, "file": track.path,
            "title": _title(track.path), "label": label, "duration_s": round(len(x) / SR, 3),
            "sr": SR, "source_sr": native_sr, **_license_fields(root, copyright_text, track.path),
            "sha256": hashlib.sha256((folder / out).read_bytes()).hexdigest(),
            "audio_sha256": digest,
        })
        known[digest] = out
        taken.add(out)
        manifest.save(folder)

    with Progress(len(tracks), f"corpus: {name}", stream=stream) as progress:
        for track in tracks:
            if not manifest.decided(name, track.path):
                take(track)
            progress.update(1)
    manifest.sources[name]["complete"] = True
    manifest.save(folder)


def build_soundtracks(
    folder: Path,
    packages: Iterable[str] = DEFAULT_SOUNDTRACKS,
    *,
    debs: Optional[Path] = None,
    stream: Optional[IO[str]] = None,
) -> Manifest:
    """Build (or resume) the soundtrack corpus in ``folder`` from Debian ``packages``.

    Raises
    ------
    MissingToolError
        apt-get or dpkg-deb is missing (one line naming it).
    ConfigError
        A package that does not exist or holds no audio.
    """
    stream = stream if stream is not None else sys.stderr
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    debs = Path(debs) if debs is not None else folder.parent / "debs"
    manifest = Manifest.load(folder, "soundtracks")
    for package in packages:
        try:
            add_package(manifest, folder, package, debs=debs, stream=stream)
        except EarEngineError:
            manifest.save(folder)
            raise
    refresh_licenses(manifest, folder)
    print(f"corpus: soundtracks: {len(manifest.tracks)} tracks, {manifest.total_s() / 3600:.2f} h, "
          f"{len(manifest.skipped)} left out; {folder}", file=stream)
    return manifest
