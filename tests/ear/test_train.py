"""Training: the CPC loss falls, resuming is exact, nonsense is refused, the CLI and torchrun work."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from earengine.corpus.synthetic import SyntheticCorpus
from earengine.ear.model import Ear, EarConfig
from earengine.ear.train import TrainConfig, check_clip, lr_at, min_clip_s, train
from earengine.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus():
    return SyntheticCorpus(n_tracks=4, seed=0, track_duration_s=20.0)


def _history(out):
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    return json.loads((out / "checkpoints" / latest["dir"] / "train_state.json").read_text())["history"]


def test_cpc_loss_falls_on_the_synthetic_corpus(tmp_path, corpus):
    ear_config = EarConfig.preset("small", width=1 / 8)
    config = TrainConfig(steps=40, batch_size=8, clip_s=6.5, lr=3e-3, warmup_steps=3, seed=0,
                         checkpoint_every=40, stats_clips=2)
    result = train(ear_config, config, tmp_path / "run", source=corpus, stream=open(os.devnull, "w"))
    history = _history(tmp_path / "run")
    losses = np.array([h[1] for h in history])
    accuracy = np.array([h[2] for h in history])
    assert len(losses) == 40 and np.isfinite(losses).all()
    # The predictors start at zero: every candidate scores the same, the loss is exactly chance,
    # log(batch x prediction steps) for score-across-time.
    chance = np.log(8 * 16)
    assert losses[0] == pytest.approx(chance, abs=1e-3)
    first, last = losses[:8].mean(), losses[-8:].mean()
    assert last < first - 0.1, (first, last)
    assert last < chance - 0.1, (last, chance)
    assert accuracy[-8:].mean() > 1.5 / (8 * 16)
    for name in ("model.safetensors", "config.json", "loss.png"):
        assert (tmp_path / "run" / name).is_file()
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["training"]["steps_done"] == 40 and cfg["training"]["wall_s"] > 0
    assert cfg["data"]["kind"] == "synthetic"
    assert set(cfg["stats"]["silence"]) == set(Ear(ear_config).tap_names())
    assert len(cfg["stats"]["data"]["ar.8"]["mean"]) == Ear(ear_config).context_channels
    assert result.steps == 40


def test_resume_continues_exactly(tmp_path, corpus):
    from safetensors.torch import load_file

    ear_config = EarConfig.preset("small", width=1 / 64)
    config = TrainConfig(steps=4, batch_size=2, clip_s=6.4, lr=1e-3, warmup_steps=1, seed=5,
                         checkpoint_every=2, stats_clips=0, cache="off")
    quiet = open(os.devnull, "w")
    train(ear_config, config, tmp_path / "straight", source=corpus, stream=quiet)
    train(ear_config, config, tmp_path / "broken", source=corpus, stream=quiet, stop_after=2)
    assert not (tmp_path / "broken" / "model.safetensors").exists()
    train(ear_config, config, tmp_path / "broken", source=corpus, stream=quiet, resume=True)
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "broken" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k
    assert _history(tmp_path / "straight") == _history(tmp_path / "broken")


def test_resume_without_a_checkpoint_is_one_line(tmp_path, corpus):
    from earengine.errors import CheckpointError

    with pytest.raises(CheckpointError) as info:
        train(EarConfig.preset("small", width=1 / 64), TrainConfig(steps=1, clip_s=6.4), tmp_path,
              source=corpus, resume=True)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [{"steps": -3}, {"steps": 0}, {"batch_size": 1}, {"clip_s": 0.0},
                                 {"lr": float("nan")}, {"cache": "maybe"}])
def test_nonsense_training_config_is_one_line(bad):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**bad)
    assert "\n" not in str(info.value) and list(bad)[0] in str(info.value)


def test_clip_shorter_than_receptive_field_plus_horizon_is_refused():
    ear = Ear(EarConfig.preset("small", width=1 / 64))
    shortest = min_clip_s(ear)
    # 187 frames of receptive field + 20 steps of 4 frames, at 1024 samples per frame.
    assert 6.0 < shortest < 6.5
    check_clip(ear, shortest + 0.01)
    with pytest.raises(ConfigError) as info:
        check_clip(ear, 4.0)
    assert "clip_s=4" in str(info.value) and "\n" not in str(info.value)


def test_learning_rate_warms_up_then_decays():
    cfg = TrainConfig(steps=100, lr=1e-3, warmup_steps=10, final_lr_ratio=0.0)
    rates = [lr_at(s, cfg) for s in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))
    assert rates[-1] < 1e-5


def test_cli_train_and_probe_at_tiny_size(tmp_path, capsys):
    from earengine.cli import main

    out = tmp_path / "cli-ear"
    rc = main(["train", "--data", "synthetic:3", "--width", str(1 / 64), "--steps", "2", "--batch-size", "2",
               "--clip-s", "6.4", "--out", str(out), "--cache", "off", "--stats-clips", "1", "--device", "cpu"])
    assert rc == 0
    assert (out / "model.safetensors").is_file()
    rc = main(["probe", "--model", str(out), "--clips-per-track", "2", "--steps", "3", "--write"])
    assert rc == 0
    printed = capsys.readouterr().out
    for row in ("CPC, scores across time steps (this ear)", "random init", "supervised"):
        assert row in printed
    cfg = json.loads((out / "config.json").read_text())
    assert [r["model"] for r in cfg["probes"]["tracks"]["rows"]] == ["cpc", "random", "supervised"]


def test_cli_reports_nonsense_in_one_line(tmp_path, capsys):
    from earengine.cli import main

    rc = main(["train", "--width", "0", "--out", str(tmp_path / "x")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("earengine train:") and "width=0" in err and "\n" not in err


@pytest.mark.slow
def test_torchrun_ddp_two_processes_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "earengine", "train", "--data", "synthetic:2", "--width", str(1 / 64), "--steps", "3",
           "--batch-size", "2", "--clip-s", "6.4", "--cache", "off", "--stats-clips", "1",
           "--checkpoint-every", "3", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=90, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["world_size"] == 2
    step_dir = out / "checkpoints" / "step-0000003"
    r0 = json.loads((step_dir / "rng.rank0.json").read_text())
    r1 = json.loads((step_dir / "rng.rank1.json").read_text())
    assert r0["numpy"] != r1["numpy"]  # every rank drew its own clips
    assert proc.stdout.count("train: 3 steps") == 1  # rank 0 alone reports and writes
