"""The ear on a live input, one hop at a time: only what the newest hop changes is computed.

Heard whole, the last few seconds of input (the receptive field of the ear's deepest tap, 187
scaleogram frames for the paper's layout) cost the listener a full forward per frame: about
20 ms on one core of a laptop, so about 20 frames a second once the dream has its share.
Yet a new hop of input changes little: the scaleogram's newest frames, the encoder's newest
steps, and the autoregressive model's newest context. :class:`StreamingEar` computes exactly
that:

- the scaleogram and the encoder run on a short *tail* of the input only: the frames shown
  (:attr:`StreamingEar.show_frames`), plus the encoder's receptive field (19 frames), plus the
  longest scaleogram kernel's half (its frames nearest the tail's start are not exact);
- the encoder's last block (``enc.7``) gives one step per :attr:`~earengine.ear.model.Ear.FRAMES_PER_STEP`
  frames, each ending on a frame of the hop grid. The exact steps of each tail are kept by the
  frame they end on, so the autoregressive model's input (its receptive field, 43 steps, plus the
  steps shown) is read from what earlier hops computed; the steps ending on the grid's other
  phases come from the tails of those phases. A step that is missing (at the start, or after the
  listener fell behind by more than a tail covers) is filled by one forward of the encoder over
  the whole field, once;
- the autoregressive model (cheap: a few dozen steps) runs on that sequence.

Every tap's newest ``show_frames`` frames equal those of a full forward over the same input,
ending on the same hop, up to the scaleogram's own rounding (its fast path keeps within 1e-3 of
the exact transform). The pooling of the encoder and the model pairs columns ending on the newest,
whatever the length, so tails and full windows line up.

torch is imported here: the listener process uses this, never the engine.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor

from earengine.ear.model import Ear
from earengine.ear.scaleogram import kernel_lengths
from earengine.errors import ParameterError

__all__ = ["StreamingEar"]

#: Frames shown by default: 16 hops (0.37 s at the paper's rate), one column of the coarsest tap.
SHOW_FRAMES = 16


class StreamingEar:
    """Activations of every tap over the newest ``show_frames`` frames of a live input.

    Parameters
    ----------
    ear : Ear
        In eval mode (it is put there).
    show_frames : int, optional
        Scaleogram frames each set covers; a multiple of the coarsest tap's frames per column.

    Notes
    -----
    Call :meth:`hear` with the input ending on the hop grid (sample ``k * hop_length`` of the ear's
    rate, counted from any fixed origin) and a reader of longer spans for the rare full fill. Grid
    indices ``k`` must only grow; a smaller one (the input restarted) clears what was kept.
    """

    def __init__(self, ear: Ear, *, show_frames: int = SHOW_FRAMES) -> None:
        self.ear = ear.eval()
        self.hop = int(ear.hop_length)
        self.step = int(ear.FRAMES_PER_STEP)
        self.taps = tuple(ear.tap_names())
        self._per_column = self._frames_per_column()
        self.coarsest = self._per_column[self.taps[-1]]
        if show_frames < self.coarsest or show_frames % self.coarsest:
            raise ParameterError(f"show_frames={show_frames} must be a positive multiple of {self.coarsest}")
        self.show_frames = int(show_frames)
        config = ear.scaleogram.config
        self.lookback = int(math.ceil(float(kernel_lengths(config).max()) / 2.0 / self.hop)) + 1
        self.enc_rf = int(ear.encoder_receptive_field_frames())
        self.tail_frames = self._round_up(self.show_frames + self.enc_rf + self.lookback)
        #: Steps the autoregressive model runs on: its receptive field plus the steps shown.
        self.ar_steps = int(ear.ar_receptive_field_steps()) + self.show_frames // self.step
        self.full_frames = self._round_up(self.ar_steps * self.step + self.enc_rf + self.lookback)
        self._kept: dict[int, Tensor] = {}  # enc.7's exact steps, by the grid index they end on
        self._newest = -1
        self.fills = 0  # full forwards of the encoder made to fill missing steps

    def _frames_per_column(self) -> dict[str, int]:
        """Scaleogram frames per time column of each tap."""
        out, frames = {"scaleogram": 1}, 1
        for i, block in enumerate(self.ear.encoder):
            frames *= int(block.pool)
            out[f"enc.{i}"] = frames
        for i, block in enumerate(self.ear.ar):
            frames *= int(block.pool)
            out[f"ar.{i}"] = frames
        return out

    def _round_up(self, frames: int) -> int:
        return -(-frames // self.step) * self.step

    @property
    def tail_samples(self) -> int:
        """Samples of input each :meth:`hear` takes."""
        return self.tail_frames * self.hop

    @property
    def full_samples(self) -> int:
        """Samples of input a full fill reads."""
        return self.full_frames * self.hop

    @property
    def window_s(self) -> float:
        """Seconds of input each set covers."""
        return self.show_frames * self.hop / float(self.ear.scaleogram.config.sr)

    def _encode(self, x: Tensor, k: int) -> dict[str, Tensor]:
        """Scaleogram and encoder over ``x`` (ending on grid index ``k``); keeps enc.7's exact steps."""
        frames = x.shape[-1] // self.hop
        acts = self.ear.forward_scaleogram(self.ear.scaleogram(x), taps=self.taps[: 1 + len(self.ear.encoder)])
        last = acts[f"enc.{len(self.ear.encoder) - 1}"][0, :, 0, :]
        exact = (frames - self.lookback - self.enc_rf) // self.step + 1
        for j in range(min(exact, last.shape[-1])):
            self._kept[k - j * self.step] = last[:, last.shape[-1] - 1 - j]
        return acts

    def hear(self, x: Tensor, k: int, read: Callable[[int], Optional[Tensor]]) -> Optional[dict[str, Tensor]]:
        """Every tap over the newest :attr:`show_frames` frames, shaped (1, …, columns).

        Parameters
        ----------
        x : Tensor, shape (1, tail_samples)
            The input at the ear's rate, ending on grid index ``k``.
        k : int
            Grid index of the input's end (its last sample is ``k * hop_length - 1``).
        read : callable(n_samples) -> Tensor of shape (1, n_samples), or None
            The input's last ``n_samples`` ending on ``k``, for a full fill (None: not available).

        Returns
        -------
        dict of Tensor, or None when a full fill was needed and ``read`` had nothing.
        """
        if x.shape != (1, self.tail_samples):
            raise ParameterError(f"x.shape={tuple(x.shape)} must be (1, {self.tail_samples})")
        if k < self._newest:
            self._kept.clear()
        self._newest = k
        with torch.no_grad():
            acts = self._encode(x, k)
            wanted = [k - j * self.step for j in range(self.ar_steps)][::-1]
            if any(i not in self._kept for i in wanted):
                long = read(self.full_samples)
                if long is None:
                    return None
                self.fills += 1
                self._encode(long, k)
            for i in [i for i in self._kept if i < k - self.ar_steps * self.step * 2]:
                del self._kept[i]  # older than any phase can ask for
            h = torch.stack([self._kept[i] for i in wanted], dim=-1)[None]
            for i, block in enumerate(self.ear.ar):
                h = block(h)
                acts[f"ar.{i}"] = h
        return {tap: acts[tap][..., -(self.show_frames // self._per_column[tap]):] for tap in self.taps}
