"""What the ear makes of a loop, for the views of it: every tap's activation over the loop as it
is heard while it repeats (:func:`loop_activations`), and which neurons the dream's target reads
(:func:`target_mask`).

The streams show both (:mod:`earengine.streams.activations` carries them from the worker, where
these run, to the engine process; :mod:`earengine.streams.frames` cuts frames from them). torch is
imported when these are called, in the worker: importing this module costs numpy only.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from earengine.errors import ParameterError

__all__ = ["loop_activations", "target_mask"]


def loop_activations(ear, waveform, *, context: int = 1, taps: Optional[Sequence[str]] = None) -> dict:
    """Every tap's activation over one loop, heard after ``context`` periodic copies of itself.

    The ear runs on the loop repeated ``1 + context`` times; the time positions of the last
    repetition are kept, the same split the dream optimizes over, so the autoregressive taps at
    the start of the loop hear its end as they do while it repeats.

    Parameters
    ----------
    ear : Ear
    waveform : array-like or Tensor, shape (n_samples,)
    context : int >= 0
    taps : sequence of str, optional
        All taps by default.

    Returns
    -------
    dict[str, ndarray]
        ``(channels, freq, time)`` float32 per tap (``freq`` is 1 for ``ar.*``).
    """
    import torch

    if context < 0:
        raise ParameterError(f"context={context} must be >= 0")
    device = next(ear.parameters()).device
    x = waveform if torch.is_tensor(waveform) else torch.from_numpy(np.array(waveform, dtype=np.float32))
    x = x.detach().float().to(device).reshape(-1)
    reps = 1 + int(context)
    with torch.no_grad():
        acts = ear(x.repeat(reps)[None, :], taps=taps)
    out = {}
    for tap, a in acts.items():
        total = a.shape[-1]
        start = int(round(total * (reps - 1) / reps))
        a = a[0, ..., start:]
        if a.dim() == 2:
            a = a[:, None, :]
        out[tap] = a.float().cpu().numpy()
    return out


def target_mask(objective, shapes: Mapping[str, Sequence[int]], *, stats=None) -> dict:
    """Which neurons an objective reads: ``{tap: bool array (channels, freq)}``.

    Found by differentiation, so it holds for any objective (regions, channels, neurons, sums):
    the objective is evaluated on stand-in activations of the given shapes and a neuron is in the
    mask when the score depends on it at some time step. An objective that cannot be evaluated
    that way (``surprise`` without predictors) marks its whole taps.
    """
    import torch

    from earengine.optvis.objectives import View

    taps = tuple(dict.fromkeys(objective.taps))
    g = torch.Generator().manual_seed(0)
    acts = {}
    for tap in taps:
        c, f, t = (int(v) for v in shapes[tap])
        size = (1, c, t) if tap.startswith("ar.") else (1, c, f, t)
        # positive and varied, so no mean or power sits at a point where its slope vanishes
        acts[tap] = (torch.rand(size, generator=g) + 0.5).requires_grad_(True)
    view = View(acts, {tap: (0, acts[tap].shape[-1]) for tap in taps}, torch.zeros(1), stats=stats)
    out = {}
    try:
        score = objective(view).sum()
        grads = torch.autograd.grad(score, [acts[t] for t in taps], allow_unused=True)
    except Exception:
        for tap in taps:
            c, f, _ = shapes[tap]
            out[tap] = np.ones((int(c), int(f)), dtype=bool)
        return out
    for tap, grad in zip(taps, grads):
        c, f, _ = (int(v) for v in shapes[tap])
        if grad is None:
            continue
        touched = grad[0].abs() > 0
        touched = touched.any(dim=-1)
        out[tap] = touched.reshape(c, f).cpu().numpy() if touched.dim() == 2 else touched.reshape(c, 1).cpu().numpy()
    return out
