"""The linear probe end to end at tiny size, and the shipped default ear with its model card."""

import json
from pathlib import Path

import pytest
import torch

from earengine.ear.checkpoint import load_ear, save_ear
from earengine.ear.data import SyntheticCorpus
from earengine.ear.model import EarConfig
from earengine.ear.probe import ProbeConfig, _calibrate_batchnorm, format_probe_table, run_probe, write_probe
from earengine.ear.train import build_ear
from earengine.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "models" / "ear-default"


def test_probe_runs_end_to_end_and_prints_three_rows(tmp_path):
    ear, head = build_ear(EarConfig.preset("small", width=1 / 64), seed=0)
    corpus = SyntheticCorpus(n_tracks=3, seed=1, track_duration_s=30.0)
    path = tmp_path / "ear"
    save_ear(path, ear.eval(), head, info={"data": corpus.describe(), "training": {"seed": 0}})
    loaded = load_ear(path)
    config = ProbeConfig(clips_per_track=2, steps=5, batch_size=4)
    result = run_probe(loaded, corpus, config, stream=open("/dev/null", "w"))
    assert [r["model"] for r in result["rows"]] == ["cpc", "random", "supervised"]
    assert result["train_clips"] == result["heldout_clips"] == 6
    for row in result["rows"]:
        assert 0.0 <= row["heldout_accuracy"] <= 1.0 and row["heldout_loss"] > 0
        assert row["weight_decay"] in config.weight_decays
    table = format_probe_table(result)
    assert sum(line.endswith(tuple("0123456789")) for line in table.splitlines()) == 3
    assert "chance 33.3%" in table
    write_probe(path, result)
    again = load_ear(path)  # the weights hash still holds after the config gained the probe
    assert again.config["probe"] == json.loads(json.dumps(result))


def test_random_baseline_gets_batchnorm_statistics_from_data():
    ear, _ = build_ear(EarConfig.preset("small", width=1 / 32), seed=0)
    s = torch.rand(4, 1, 216, 60, generator=torch.Generator().manual_seed(0))
    _calibrate_batchnorm(ear, s)
    bn = ear.encoder[0].bn1
    assert not ear.training
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert bn.momentum == 0.1  # restored


@pytest.mark.parametrize("bad", [{"clips_per_track": 0}, {"feature": "max"}, {"clip_s": -1.0}, {"steps": 0},
                                 {"weight_decays": ()}, {"weight_decays": (0.1, -1.0)}])
def test_bad_probe_config_is_one_line(bad):
    with pytest.raises(ConfigError) as info:
        ProbeConfig(**bad)
    assert "\n" not in str(info.value)


def test_probe_config_round_trip():
    cfg = ProbeConfig(clips_per_track=3, feature="mean", steps=7, weight_decays=(0.5, 2.0))
    assert ProbeConfig.from_dict(cfg.to_dict()) == cfg
    assert ProbeConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# -- the shipped default ear ------------------------------------------------------------------
def test_default_ear_loads_and_its_hash_matches_its_weights():
    loaded = load_ear(DEFAULT)  # verifies weights_sha256 against model.safetensors
    size = (DEFAULT / "model.safetensors").stat().st_size
    assert size <= 20 * 1024 * 1024
    assert loaded.config["training"]["steps_done"] >= 500
    taps = set(loaded.ear.tap_names())
    assert set(loaded.stats["silence"]) == taps and set(loaded.stats["data"]) == taps
    with torch.no_grad():
        acts = loaded.ear(torch.zeros(1, 44100 * 4), taps=("ar.8",))
    assert torch.isfinite(acts["ar.8"]).all()


def test_default_ear_card_shows_the_probe_table_of_its_config():
    config = json.loads((DEFAULT / "config.json").read_text())
    card = (DEFAULT / "README.md").read_text()
    assert format_probe_table(config["probe"]) in card
    assert str(config["training"]["steps_done"]) in card


def test_default_ear_beats_the_random_ear_by_15_points_on_held_out_clips():
    config = json.loads((DEFAULT / "config.json").read_text())
    rows = {r["model"]: r for r in config["probe"]["rows"]}
    assert rows["cpc"]["heldout_accuracy"] >= rows["random"]["heldout_accuracy"] + 0.15
