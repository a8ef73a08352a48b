"""Checkpoints: exact round trip, pickles refused, wrong shapes and hashes named in one line."""

import json
import pickle

import pytest
import torch

from earengine.ear.checkpoint import load_ear, read_config, save_ear, weights_hash
from earengine.ear.model import EarConfig, build_ear
from earengine.ear.stats import channel_stats, stats_from_json, stats_to_json
from earengine.errors import CheckpointError

SR = 44100


@pytest.fixture()
def saved(tmp_path):
    ear, head = build_ear(EarConfig.preset("small", width=1 / 64), seed=3)
    # Give the batch-norm statistics something other than their initial values.
    ear.train()
    with torch.no_grad():
        ear(0.1 * torch.randn(2, SR, generator=torch.Generator().manual_seed(0)))
    ear.eval()
    path = tmp_path / "ear"
    digest = save_ear(path, ear, head, info={"training": {"seed": 3}})
    return ear, head, path, digest


def test_round_trip_reproduces_every_tap_exactly(saved):
    ear, head, path, digest = saved
    loaded = load_ear(path)
    assert loaded.config["weights_sha256"] == digest
    assert not loaded.ear.training
    x = 0.1 * torch.randn(2, SR, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ear(x), loaded.ear(x)
    for name in ear.tap_names():
        assert torch.equal(a[name], b[name]), name
    assert torch.equal(loaded.cpc.predictor.weight, head.predictor.weight)
    cfg = read_config(path)
    assert cfg["format"] == "earengine-ear" and cfg["earengine_version"]
    assert EarConfig.from_dict(cfg["ear"]) == ear.config


def test_scaleogram_kernels_are_not_stored(saved):
    from safetensors.torch import load_file

    _, _, path, _ = saved
    assert not any(k.startswith("scaleogram.") for k in load_file(str(path / "model.safetensors")))


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "weights.pkl"])
def test_pickle_files_are_refused_with_one_line(tmp_path, saved, name):
    ear, *_ = saved
    bad = tmp_path / name
    torch.save(ear.state_dict(), bad)
    with pytest.raises(CheckpointError) as info:
        load_ear(bad)
    assert "pickle" in str(info.value) and "\n" not in str(info.value)


def test_pickle_content_under_any_name_is_refused(tmp_path):
    bad = tmp_path / "innocent.safetensors"
    bad.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="pickle"):
        load_ear(bad)
    folder = tmp_path / "folder"
    folder.mkdir()
    torch.save({"a": torch.zeros(1)}, folder / "model.pt")
    with pytest.raises(CheckpointError, match="pickle"):
        load_ear(folder)


def test_weights_of_the_wrong_shape_fail_with_one_line(saved):
    _, _, path, _ = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["ear"]["width"] = 1 / 32  # the config now asks for twice the channels
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as info:
        load_ear(path)
    message = str(info.value)
    assert "must" in message and "width" in message and "\n" not in message


def test_a_tensor_of_the_wrong_shape_is_named(saved):
    from safetensors.torch import load_file, save_file

    _, _, path, _ = saved
    state = load_file(str(path / "model.safetensors"))
    state["ar.8.conv.weight"] = torch.zeros(2, 2, 4)
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError) as info:
        load_ear(path, check_hash=False)
    message = str(info.value)
    assert "ar.8.conv.weight" in message and "shape" in message and "\n" not in message


def test_hash_mismatch_is_caught(saved):
    _, _, path, _ = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["weights_sha256"] = "0" * 64
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="weights_sha256"):
        load_ear(path)


def test_missing_folder_is_one_line(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_ear(tmp_path / "nowhere")
    assert "\n" not in str(info.value)


def test_hash_depends_on_values_names_and_shapes():
    a = {"w": torch.zeros(2, 3)}
    assert weights_hash(a) == weights_hash({"w": torch.zeros(2, 3)})
    assert weights_hash(a) != weights_hash({"w": torch.zeros(3, 2)})
    assert weights_hash(a) != weights_hash({"v": torch.zeros(2, 3)})
    b = torch.zeros(2, 3)
    b[1, 2] = 1e-30
    assert weights_hash(a) != weights_hash({"w": b})


def test_stats_per_channel_and_json_round_trip(saved):
    ear, *_ = saved
    x = 0.1 * torch.randn(3, SR, generator=torch.Generator().manual_seed(4))
    stats = channel_stats(ear, [x[:2], x[2:]], taps=("enc.0", "ar.8"))
    acts = ear(x, taps=("enc.0",))["enc.0"]
    expected_mean = acts.double().mean(dim=(0, 2, 3))
    assert torch.allclose(stats["enc.0"]["mean"].double(), expected_mean, rtol=1e-4, atol=1e-6)
    assert stats["ar.8"]["std"].shape == (ear.context_channels,)
    back = stats_from_json(stats_to_json({"silence": stats, "clip_s": 1.0}))
    assert back["clip_s"] == 1.0
    assert torch.allclose(back["silence"]["enc.0"]["std"], stats["enc.0"]["std"], rtol=1e-5)
