"""The soundtrack builder on a Debian package made in the test: archives opened, tracks decoded,
resampled and labelled, licenses read, loops, copies, short and broken files left out."""

import io
import json
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
import soundfile as sf

from earengine.corpus.checks import repeated_cycle_s
from earengine.corpus.debian import MissingToolError, read_license
from earengine.corpus.manifest import Manifest
from earengine.corpus.soundtracks import add_package, build_soundtracks

SR_IN = 22050
COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: testgame

Files: *
Copyright: 2020, The Test Game Team
License: GPL-2+

Files: base/music/song*.ogg
Copyright: Ada Composer
License: CC-BY-SA-3.0
"""


def melody(seconds: float, seed: int, sr: int = SR_IN) -> np.ndarray:
    """Through-composed: a new random note every quarter second, never repeating."""
    rng = np.random.default_rng(seed)
    n_notes = int(seconds * 4)
    f0 = 220 * 2 ** (rng.integers(0, 24, n_notes) / 12)
    f = np.repeat(f0, sr // 4)
    env = np.tile(np.exp(-np.arange(sr // 4) / (sr * 0.08)), n_notes)
    noise = rng.standard_normal(len(f)) * 0.02 * np.repeat(rng.random(n_notes), sr // 4)
    return (0.3 * np.sin(2 * np.pi * np.cumsum(f) / sr) * env + noise).astype(np.float32)


def ogg_bytes(x: np.ndarray, sr: int = SR_IN) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="OGG", subtype="VORBIS")
    return buf.getvalue()


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is missing (apt-get install dpkg)")
    root = tmp_path_factory.mktemp("pkg") / "testgame-music"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: testgame-music\nVersion: 1.2-3\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        "Description: music of a test game\n")
    doc = root / "usr/share/doc/testgame-music"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT)
    data = root / "usr/share/games/testgame/base"
    data.mkdir(parents=True)
    song = melody(64.0, seed=1)
    cycle = melody(8.0, seed=2)
    with zipfile.ZipFile(data / "0music.pk3", "w") as z:
        z.writestr("music/song1.ogg", ogg_bytes(song))
        z.writestr("music/loop.ogg", ogg_bytes(np.tile(cycle, 9)))
        z.writestr("music/jingle.ogg", ogg_bytes(melody(10.0, seed=3)))
        z.writestr("music/broken.ogg", b"OggS" + bytes(range(256)) * 8)
    (data / "license.txt").write_text("`Test Album` - Copyright (C) 2021 Bo Composer\n\nCC-BY-SA-3.0\n")
    (data / "theme.ogg").write_bytes(ogg_bytes(melody(70.0, seed=4)))
    (data / "theme2.ogg").write_bytes(ogg_bytes(melody(70.0, seed=4)))
    out = root.parent / "testgame-music_1.2-3_all.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "-b", str(root), str(out)], check=True, capture_output=True)
    return out


def test_a_package_goes_through_the_builder(deb, tmp_path, caplog):
    folder = tmp_path / "soundtracks"
    lines = io.StringIO()
    manifest = Manifest.new("soundtracks")
    add_package(manifest, folder, str(deb), debs=tmp_path, label="testing", stream=lines)
    kept = {t["file"]: t for t in manifest.tracks}
    assert sorted(kept) == ["usr/share/games/testgame/base/music/song1.ogg",
                            "usr/share/games/testgame/base/theme.ogg"]
    song = kept["usr/share/games/testgame/base/music/song1.ogg"]
    assert song["license"] == "CC-BY-SA-3.0" and song["copyright"] == "Ada Composer"
    theme = kept["usr/share/games/testgame/base/theme.ogg"]
    assert theme["license"] == "GPL-2+" and "Test Game Team" in theme["copyright"]
    assert theme["notice"] == "`Test Album` - Copyright (C) 2021 Bo Composer"
    for t in manifest.tracks:
        assert t["version"] == "1.2-3" and t["label"] == "testing" and t["source_sr"] == SR_IN
        x, sr = sf.read(folder / t["out"])
        assert sr == 44100 and x.ndim == 1 and abs(len(x) / sr - t["duration_s"]) < 1e-3
        assert len(t["sha256"]) == 64
    # the decoded, resampled song keeps its pitch: its first note's peak is where it was
    x, _ = sf.read(folder / song["out"])
    first = melody(0.25, seed=1)
    f_in = np.argmax(np.abs(np.fft.rfft(first))) * SR_IN / len(first)
    seg = x[: 44100 // 4]
    f_out = np.argmax(np.abs(np.fft.rfft(seg))) * 44100 / len(seg)
    assert abs(f_out - f_in) < 8
    reasons = {s["file"].rsplit("/", 1)[-1]: s["reason"] for s in manifest.skipped}
    assert "cycle repeated" in reasons["loop.ogg"]
    assert "under 60 s" in reasons["jingle.ogg"]
    assert "not readable" in reasons["broken.ogg"]
    assert "same audio as" in reasons["theme2.ogg"]
    printed = lines.getvalue()
    assert "broken.ogg" in printed and "Traceback" not in printed
    assert any("broken.ogg" in r.getMessage() for r in caplog.records)
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert Manifest.from_dict(on_disk) == manifest


def test_a_stopped_build_resumes_without_redoing_tracks(deb, tmp_path):
    folder = tmp_path / "soundtracks"
    build_soundtracks(folder, [str(deb)], stream=io.StringIO())
    made = {p: p.stat().st_mtime_ns for p in folder.rglob("*.flac")}
    manifest = Manifest.load(folder, "soundtracks")
    manifest.sources["testgame-music"]["complete"] = False  # as if stopped before the end
    manifest.save(folder)
    again = build_soundtracks(folder, [str(deb)], stream=io.StringIO())
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.flac")} == made
    assert len(again.tracks) == 2


def test_the_loop_detector_tells_a_loop_from_music():
    cycle = melody(12.0, seed=5)
    assert repeated_cycle_s(np.tile(cycle, 6), SR_IN) == pytest.approx(12.0, abs=0.2)
    assert repeated_cycle_s(melody(72.0, seed=6), SR_IN) is None
    # a song with a repeated chorus is still a song
    verse, chorus = melody(16.0, seed=7), melody(8.0, seed=8)
    song = np.concatenate([verse, chorus, melody(16.0, seed=9), chorus, melody(16.0, seed=10), chorus])
    assert repeated_cycle_s(song, SR_IN) is None


def test_missing_tools_are_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError) as info:
        build_soundtracks(tmp_path / "c", ["nexuiz-music"], stream=io.StringIO())
    text = str(info.value)
    assert "apt-get" in text and "dpkg-deb" in text and "--data DIR" in text and "\n" not in text


def test_freeform_copyright_files_name_their_license():
    text = ("This program is free software; you can redistribute it under the terms of the GNU General "
            "Public License as published by the Free Software Foundation; either version 2 of the "
            "License, or (at your option) any later version.\nCopyright (C) 2003 Someone")
    assert read_license(text, "x.ogg").license == "GPL-2+"
