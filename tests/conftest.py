"""Suite-wide settings: one torch thread per process. The suite shares two cores with the audio
and OSC threads of the engines it starts; more threads only make every process wait."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# The suite never reads or writes the user's corpora, caches, presets or maps: a home of its own,
# set before anything (engines started as subprocesses too) looks it up.
if "EARENGINE_TEST_KEEP_HOME" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["EARENGINE_HOME"] = tempfile.mkdtemp(prefix="earengine-test-home-")
    atexit.register(shutil.rmtree, os.environ["EARENGINE_HOME"], True)


import pytest  # noqa: E402


def pytest_report_header(config):
    """Which float kernels this run computes with: results differ by processor (see the Makefile)."""
    import torch

    cap = os.environ.get("DNNL_MAX_CPU_ISA", "not capped")
    return f"earengine: torch {torch.__version__}, CPU kernels {torch.backends.cpu.get_cpu_capability()}, DNNL_MAX_CPU_ISA {cap}"


def make_tiny_ear():
    """A tiny random ear whose batch-norm statistics are measured on noise and tones, as a trained
    ear's would be (at initialisation they are 0 and 1, which leaves whole layers silent)."""
    import torch

    from earengine.ear.model import Ear, EarConfig

    torch.manual_seed(0)
    ear = Ear(EarConfig.preset("small", width=1 / 16))
    for m in ear.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average over the calibration batches
    g = torch.Generator().manual_seed(1)
    t = torch.arange(44100) / 44100
    ear.train()
    with torch.no_grad():
        for level in (0.01, 0.05, 0.2):
            tones = torch.sin(2 * torch.pi * (110 * 2 ** torch.rand(4, 1, generator=g) * 4) * t) * level
            ear(torch.cat([torch.randn(4, 44100, generator=g) * level, tones]))
    return ear.eval()


@pytest.fixture(scope="session")
def tiny_ear_dir(tmp_path_factory, tiny_ear):
    """A tiny ear saved as a real checkpoint (safetensors + config)."""
    from earengine.ear.checkpoint import save_ear
    from earengine.ear.cpc import CPCHead

    ear = tiny_ear
    cpc = CPCHead(ear.context_channels, ear.encoding_channels, ear.config.cpc)
    path = tmp_path_factory.mktemp("ears") / "tiny"
    save_ear(path, ear, cpc, info={"data": {"kind": "none"}})
    return path


@pytest.fixture(scope="session")
def tiny_ear():
    """The tiny calibrated ear, in eval mode (shared: do not train it)."""
    return make_tiny_ear()


@pytest.fixture
def engine(tmp_path):
    """The whole engine with offline audio and OSC on a free loopback port (no worker)."""
    from earengine.engine import Engine, EngineConfig

    config = EngineConfig(audio="offline", osc_port=0, preset_dir=tmp_path / "presets")
    with open(os.devnull, "w") as out, Engine(config, out=out) as eng:
        yield eng


@pytest.fixture
def peer(engine):
    """A UDP peer talking to ``engine``."""
    from tests.helpers.osc import Peer

    p = Peer(engine.osc.address)
    yield p
    p.close()


@pytest.fixture(scope="module")
def corpus():
    """A small synthetic corpus (16 tracks of 8 s), rendered once per module."""
    from earengine.corpus.synthetic import SyntheticCorpus

    c = SyntheticCorpus(n_tracks=16, seed=0, track_duration_s=8.0)
    for t in range(c.n_tracks):
        c.track(t)
    return c
