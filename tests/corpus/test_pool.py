"""The training pool links every soundtrack and only the composers' training works."""

import io

import numpy as np
import pytest

from earengine.corpus.audio_folder import AudioFolder
from earengine.corpus.manifest import Manifest, write_flac
from earengine.corpus.pool import build_pool
from earengine.errors import ConfigError


def test_the_pool_leaves_held_out_works_out(tmp_path):
    tone = 0.1 * np.sin(np.arange(44100) / 10.0)
    st, co = Manifest.new("soundtracks"), Manifest.new("composers")
    for out in ("pkg/a.flac", "pkg/b.flac"):
        write_flac(tmp_path / "soundtracks" / out, tone)
        st.add_track({"out": out, "duration_s": 1.0})
    for out, split in (("bach/x.flac", "train"), ("bach/y.flac", "heldout")):
        write_flac(tmp_path / "composers" / out, tone)
        co.add_track({"out": out, "duration_s": 1.0, "split": split})
    st.save(tmp_path / "soundtracks")
    co.save(tmp_path / "composers")
    pool = build_pool(tmp_path, stream=io.StringIO())
    assert sorted(t["out"] for t in pool.tracks) == ["composers/bach/x.flac", "soundtracks/pkg/a.flac",
                                                     "soundtracks/pkg/b.flac"]
    folder = AudioFolder(tmp_path / "pool")
    assert folder.track_names == ["composers/bach/x.flac", "soundtracks/pkg/a.flac", "soundtracks/pkg/b.flac"]
    assert np.allclose(folder.clip(0, 0.0, 0.5), tone[:22050], atol=1e-4)
    build_pool(tmp_path, stream=io.StringIO())  # again: the links are made anew, nothing breaks


def test_the_pool_needs_both_corpora(tmp_path):
    with pytest.raises(ConfigError, match="must be built before the pool"):
        build_pool(tmp_path, stream=io.StringIO())
