"""Hugging Face adapter: a ``TrainerCallback`` that sonifies every optimizer step.

Import this module only where ``transformers`` is installed::

    from earengine.sonify.huggingface import SonifyTrainerCallback
    trainer = Trainer(model, args, callbacks=[SonifyTrainerCallback(sink="engine", run="bert")])

The ``Trainer`` calls ``on_pre_optimizer_step`` once the gradients of an optimizer step are
complete: after gradient accumulation and after unscaling under mixed precision — but also after
its own gradient clipping (``TrainingArguments.max_grad_norm``, 1.0 unless you change it). With
clipping on, every layer's norm is what the optimizer receives, so a gradient explosion is heard
as norms pinned at the clipping level; set ``max_grad_norm=0`` to hear the raw gradients.
"""

from __future__ import annotations

from typing import Any, Optional

from transformers import TrainerCallback

from earengine.sonify.capture import GradientSonifier, LayerSpec

__all__ = ["SonifyTrainerCallback"]


class SonifyTrainerCallback(TrainerCallback):
    """Sonify the gradient norms of the model a ``transformers.Trainer`` trains.

    Parameters
    ----------
    sink : sink or str
        As for :class:`~earengine.sonify.capture.GradientSonifier` (``"engine"`` by default).
    run : str, optional
        Run name; ``TrainingArguments.run_name`` (or the model's class name) by default.
    layers : optional
        Which layers, see :func:`~earengine.sonify.capture.layer_groups`.
    every : int > 0
        One frame every ``every`` optimizer steps.
    """

    def __init__(self, sink: Any = "engine", *, run: Optional[str] = None, layers: LayerSpec = None,
                 every: int = 1) -> None:
        self.sink, self.run, self.layers, self.every = sink, run, layers, every
        self.sonifier: Optional[GradientSonifier] = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is None or not getattr(state, "is_world_process_zero", True):
            return
        run = self.run or getattr(args, "run_name", None) or type(model).__name__
        self.sonifier = GradientSonifier(model, sink=self.sink, run=str(run)[:64], layers=self.layers,
                                         every=self.every)
        self.sonifier.open()

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.sonifier is not None:
            self.sonifier.step(step=int(state.global_step))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.sonifier is not None:
            self.sonifier.close()
            self.sonifier = None
