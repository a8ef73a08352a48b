import pytest


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
def tiny_ear_dir(tmp_path_factory):
    """A tiny ear saved as a real checkpoint (safetensors + config)."""
    from earengine.ear.checkpoint import save_ear
    from earengine.ear.cpc import CPCHead

    ear = make_tiny_ear()
    cpc = CPCHead(ear.context_channels, ear.encoding_channels, ear.config.cpc)
    path = tmp_path_factory.mktemp("ears") / "tiny"
    save_ear(path, ear, cpc, info={"data": {"kind": "none"}})
    return path
