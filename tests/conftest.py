"""Suite-wide settings: one torch thread per process. The suite shares two cores with the audio
and OSC threads of the engines it starts; more threads only make every process wait."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "control"))  # oscutil: a real UDP peer


@pytest.fixture
def engine(tmp_path):
    """The whole engine with offline audio and OSC on a free loopback port (no worker)."""
    from earengine.engine import Engine

    with open(os.devnull, "w") as out, Engine(audio="offline", osc_port=0, preset_dir=tmp_path / "presets",
                                              out=out) as eng:
        yield eng


@pytest.fixture
def peer(engine):
    """A UDP peer talking to ``engine``."""
    from oscutil import Peer

    p = Peer(engine.osc.address)
    yield p
    p.close()
