"""What a training run writes beside its checkpoints and reads back to resume: each rank's random
states, the optimizer's tensors and plain values, the pointer to the latest checkpoint, and the
loss plot (see :func:`earengine.ear.train.train`). safetensors and JSON only, never pickle."""

from __future__ import annotations

import base64
import os
import json
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import torch

__all__: list = []  # pieces of the trainer's own, imported by name there


def _rank_state(np_rng: np.random.Generator, generator) -> dict:
    return {
        "numpy": np_rng.bit_generator.state,
        "torch": base64.b64encode(generator.get_state().numpy().tobytes()).decode(),
    }


def _restore_rank_state(state: Mapping, np_rng: np.random.Generator, generator) -> None:
    np_rng.bit_generator.state = state["numpy"]
    raw = np.frombuffer(base64.b64decode(state["torch"]), dtype=np.uint8).copy()
    generator.set_state(torch.from_numpy(raw))


def _optimizer_tensors(opt) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def _load_optimizer(opt, tensors: Mapping, meta: Mapping) -> None:
    state: dict = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _plot_loss(history: list, path: Path) -> None:
    # matplotlib loads only when a plot is drawn, and its backend must be chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    steps = np.array([h[0] for h in history])
    loss = np.array([h[1] for h in history])
    acc = np.array([h[2] for h in history])
    k = max(1, len(history) // 50)
    kernel = np.ones(k) / k
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    a1.plot(steps, loss, color="0.75", lw=0.6, label="per step")
    if len(loss) >= k:
        a1.plot(steps[k - 1 :], np.convolve(loss, kernel, mode="valid"), color="C0", lw=1.5, label=f"mean of {k}")
    a1.set_ylabel("CPC loss (InfoNCE)")
    a1.legend(loc="upper right")
    a2.plot(steps, acc, color="0.75", lw=0.6)
    if len(acc) >= k:
        a2.plot(steps[k - 1 :], np.convolve(acc, kernel, mode="valid"), color="C1", lw=1.5)
    a2.set_ylabel("contrastive accuracy")
    a2.set_xlabel("step")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def _latest_checkpoint(out: Path) -> Optional[Path]:
    pointer = out / "checkpoints" / "latest.json"
    if not pointer.is_file():
        return None
    name = json.loads(pointer.read_text())["dir"]
    return out / "checkpoints" / name


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
