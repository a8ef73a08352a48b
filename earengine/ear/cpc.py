"""Contrastive predictive coding: k-step linear predictors and the InfoNCE loss.

From each context vector ``c_t`` (the autoregressive output whose receptive field ends at
encoding step ``t``) one linear map per horizon ``k`` predicts the encoding
``z_{t + gap + k}``, ``k = 1 … K``. The prediction is scored against candidate encodings by a dot
product and the loss is the cross-entropy of picking the true one (InfoNCE, Oord et al. 2018):

- ``score_across_time=False``: the candidates are the encodings of every example of the batch at
  the same horizon (the paper's ``L_CPC``);
- ``score_across_time=True``: the candidates are every example × every horizon (``L_CPC SAT``),
  a harder task with ``batch × K`` candidates.

As in the paper's formula, the softmax runs over candidates for each prediction. The accuracy of
the contrastive task (how often the true candidate scores highest) is reported with the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple

import torch
from torch import Tensor, nn

from earengine.errors import ConfigError, check_config_keys

__all__ = ["CPCConfig", "CPCHead", "CPCResult"]


@dataclass(frozen=True)
class CPCConfig:
    """Predictor and loss settings.

    Parameters
    ----------
    prediction_steps : int > 0
        Number of future encodings predicted from each context (``K``; 16 in the paper).
    prediction_gap : int >= 0
        Encodings skipped between the last one the context saw and the first predicted (4).
    score_across_time : bool
        Contrast against all examples × all horizons (True) or all examples only (False).
    """

    prediction_steps: int = 16
    prediction_gap: int = 4
    score_across_time: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.prediction_steps, int) or self.prediction_steps <= 0:
            raise ConfigError(f"prediction_steps={self.prediction_steps} must be an integer > 0")
        if not isinstance(self.prediction_gap, int) or self.prediction_gap < 0:
            raise ConfigError(f"prediction_gap={self.prediction_gap} must be an integer >= 0")

    @property
    def horizon_steps(self) -> int:
        """Encoding steps after a context's last one that its predictions reach."""
        return self.prediction_gap + self.prediction_steps

    def to_dict(self) -> dict:
        return {
            "prediction_steps": self.prediction_steps,
            "prediction_gap": self.prediction_gap,
            "score_across_time": bool(self.score_across_time),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "CPCConfig":
        check_config_keys(data, {"prediction_steps", "prediction_gap", "score_across_time"}, what="cpc")
        return cls(**dict(data))


class CPCResult(NamedTuple):
    loss: Tensor  # scalar, differentiable
    accuracy: Tensor  # scalar in [0, 1], no gradient
    n_contexts: int  # context positions that contributed


class CPCHead(nn.Module):
    """The ``K`` linear predictors (context channels → encoding channels) and the loss.

    Parameters
    ----------
    context_channels : int > 0
        Channels of the autoregressive output ``c``.
    encoding_channels : int > 0
        Channels of the encoder output ``z``.
    config : CPCConfig
    """

    def __init__(self, context_channels: int, encoding_channels: int, config: CPCConfig = CPCConfig()) -> None:
        super().__init__()
        self.config = config
        self.encoding_channels = int(encoding_channels)
        # One bias-free linear map per horizon, stored as a single matrix for one matmul.
        self.predictor = nn.Linear(context_channels, encoding_channels * config.prediction_steps, bias=False)
        # Start at zero: every candidate scores the same and the first loss is exactly
        # log(candidates). With random predictors the first scores are large and random, and the
        # quickest way down to chance is to make the encodings alike across the batch, a
        # collapse that tiny ears often never leave.
        with torch.no_grad():
            self.predictor.weight.zero_()

    def forward(self, z: Tensor, c: Tensor, context_end: Tensor) -> CPCResult:
        """Loss and accuracy for a batch.

        Parameters
        ----------
        z : Tensor, shape (batch, encoding_channels, steps)
            Encodings.
        c : Tensor, shape (batch, context_channels, contexts)
            Contexts.
        context_end : LongTensor, shape (contexts,)
            Index into ``steps`` of the last encoding each context depends on.

        Returns
        -------
        CPCResult
        """
        cfg = self.config
        batch, enc_ch, n_steps = z.shape
        if batch < 2 and not cfg.score_across_time:
            raise ConfigError(f"batch_size={batch} must be >= 2 for a contrastive loss over the batch")
        context_end = context_end.to(z.device)
        valid = context_end + cfg.horizon_steps <= n_steps - 1
        idx = torch.nonzero(valid).flatten()
        if idx.numel() == 0:
            raise ConfigError(
                f"clip of {n_steps} encoding steps must be longer than the receptive field plus "
                f"the prediction horizon of {cfg.horizon_steps} steps"
            )
        k = cfg.prediction_steps
        ctx = c[:, :, idx].permute(2, 0, 1)  # (J, B, A)
        pred = self.predictor(ctx).view(idx.numel(), batch, k, enc_ch)  # (J, B, K, E)
        offsets = cfg.prediction_gap + torch.arange(1, k + 1, device=z.device)
        target_idx = context_end[idx][:, None] + offsets[None, :]  # (J, K)
        targets = z[:, :, target_idx].permute(2, 0, 3, 1)  # (J, B, K, E)
        n_ctx = idx.numel()
        if cfg.score_across_time:
            # Candidates: every example × every horizon of the same context position.
            p = pred.reshape(n_ctx, batch * k, enc_ch)
            t = targets.reshape(n_ctx, batch * k, enc_ch)
            scores = p @ t.transpose(1, 2)  # (J, B*K predictions, B*K candidates)
            truth = torch.arange(batch * k, device=z.device)
        else:
            p = pred.permute(0, 2, 1, 3)  # (J, K, B, E)
            t = targets.permute(0, 2, 1, 3)
            scores = p @ t.transpose(2, 3)  # (J, K, B predictions, B candidates)
            truth = torch.arange(batch, device=z.device)
        log_prob = torch.log_softmax(scores, dim=-1)
        positive = torch.diagonal(log_prob, dim1=-2, dim2=-1)
        loss = -positive.mean()
        with torch.no_grad():
            accuracy = (scores.argmax(dim=-1) == truth).float().mean()
        return CPCResult(loss, accuracy, n_ctx)
