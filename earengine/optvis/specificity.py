"""Specificity: how much the *other* channels of a target's tap fire.

With ``/target/specificity`` above 0 the dreamer adds this, weighted, to its penalties, so a dream
excites the channels that were asked for and not the whole tap. Targets that take a whole tap
(``ar.3``) or the CPC loss (``surprise``) leave no other channels, and add nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from earengine.optvis.objectives import Channels, Layer, Neuron, Objective, Region, Scaled, Sum, View

__all__ = ["target_channels", "others", "split_rise"]


def target_channels(objective: Objective, channels: dict) -> dict:
    """``{tap: set of channel indices}`` an objective targets; ``channels`` maps a tap to its count.

    A tap given whole maps to every channel.

    >>> sorted(target_channels(Channels("enc.5", 2, 4) + Neuron("enc.5", 9, 0), {"enc.5": 16})["enc.5"])
    [2, 3, 4, 9]
    """
    out: dict = {}

    def walk(o: Objective) -> None:
        if isinstance(o, Sum):
            for part in o.parts:
                walk(part)
        elif isinstance(o, Scaled):
            walk(o.inner)
        elif isinstance(o, (Region, Channels, Neuron, Layer)) and o.tap in channels:
            n = channels[o.tap]
            if isinstance(o, Region):
                span = o._span(n, o.channel, o.channel_width)
                chosen = range(span.start, span.stop)
            elif isinstance(o, Channels):
                chosen = range(o.first, min(n, o.last + 1))
            elif isinstance(o, Neuron):
                chosen = (o.channel,)
            else:
                chosen = range(n)
            out.setdefault(o.tap, set()).update(chosen)

    walk(objective)
    return out


def others(objective: Objective, view: View) -> Tensor:
    """(B,) mean normalised activation of the channels of the targets' taps that are not targeted
    (0 where every channel is)."""
    taps = [t for t in dict.fromkeys(objective.taps) if t in view.acts]
    counts = {t: view.normalised(t).shape[1] for t in taps}
    chosen = target_channels(objective, counts)
    total, parts = None, 0
    for tap, picked in chosen.items():
        rest = [c for c in range(counts[tap]) if c not in picked]
        if not rest:
            continue
        a = view.normalised(tap)[:, rest]
        score = a.mean(dim=(1, 2, 3))
        total = score if total is None else total + score
        parts += 1
    if total is None:
        b = view.shifts.shape[0]
        return torch.zeros(b, device=view.shifts.device)
    return total / parts


def split_rise(objective: Objective, before: View, after: View) -> tuple[float, float]:
    """How much the targeted channels and the rest of their taps rose from ``before`` to ``after``
    (mean normalised activation of the clean copy, element 0)."""
    def means(view: View) -> tuple[float, float]:
        taps = [t for t in dict.fromkeys(objective.taps) if t in view.acts]
        counts = {t: view.normalised(t).shape[1] for t in taps}
        chosen = target_channels(objective, counts)
        hit, rest = [], []
        for tap, picked in chosen.items():
            a = view.normalised(tap)[0].mean(dim=(1, 2))  # (C,)
            mask = torch.zeros(a.numel(), dtype=torch.bool)
            mask[sorted(picked)] = True
            hit.append(float(a[mask].mean()))
            if (~mask).any():
                rest.append(float(a[~mask].mean()))
        return (sum(hit) / max(1, len(hit)), sum(rest) / max(1, len(rest)))

    h0, r0 = means(before)
    h1, r1 = means(after)
    return h1 - h0, r1 - r0
