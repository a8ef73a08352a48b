import pytest


@pytest.fixture(scope="session")
def tiny_ear_dir(tmp_path_factory):
    """A tiny, randomly initialised ear saved as a real checkpoint (safetensors + config)."""
    import torch

    from earengine.ear.checkpoint import save_ear
    from earengine.ear.cpc import CPCHead
    from earengine.ear.model import Ear, EarConfig

    torch.manual_seed(0)
    config = EarConfig.preset("small", width=1 / 16)
    ear = Ear(config).eval()
    cpc = CPCHead(ear.context_channels, ear.encoding_channels, config.cpc)
    path = tmp_path_factory.mktemp("ears") / "tiny"
    save_ear(path, ear, cpc, info={"data": {"kind": "none"}})
    return path
