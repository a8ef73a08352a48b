"""The soundtrack corpus built from a real Debian package, as `earengine corpus` does it.

Downloads nexuiz-music (84 MB: 18 electronic tracks in a .pk3 archive) with apt-get download
into the test's own folder; nothing is installed.
"""

import io
import json
import shutil
import subprocess

import pytest
import soundfile as sf

from earengine.corpus.soundtracks import build_soundtracks

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _available(package: str) -> bool:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return False
    shown = subprocess.run(["apt-cache", "show", package], capture_output=True, text=True, check=False)
    return shown.returncode == 0 and "Package:" in shown.stdout


def test_the_corpus_builds_from_a_real_soundtrack_package(tmp_path):
    if not _available("nexuiz-music"):
        pytest.skip("apt-get, dpkg-deb or the package nexuiz-music is missing (apt-get update first)")
    lines = io.StringIO()
    folder = tmp_path / "corpus" / "soundtracks"
    manifest = build_soundtracks(folder, ["nexuiz-music"], stream=lines)
    assert len(manifest.tracks) == 17  # 18 files, one of them a 48 s jingle
    assert [s["file"].rsplit("/", 1)[-1] for s in manifest.skipped] == ["thunder.ogg"]
    assert "under 60 s" in manifest.skipped[0]["reason"]
    assert manifest.sources["nexuiz-music"]["complete"] and manifest.sources["nexuiz-music"]["version"]
    for t in manifest.tracks:
        assert t["license"] == "GPL-2+" and "Alientrap" in t["copyright"]
        assert t["out"].startswith("nexuiz-music/") and t["label"] == "electronic"
        info = sf.info(str(folder / t["out"]))
        assert info.samplerate == 44100 and info.channels == 1 and info.duration >= 60
    assert 80 * 60 < manifest.total_s() < 86 * 60
    assert json.loads((folder / "manifest.json").read_text())["tracks"] == manifest.tracks
    printed = lines.getvalue()
    assert "thunder.ogg: lasts 48 s, under 60 s" in printed and "corpus: soundtracks: 17 tracks" in printed
