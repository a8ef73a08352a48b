"""PyTorch Lightning adapter: a ``Callback`` that sonifies every optimizer step.

Import this module only where Lightning is installed (``lightning`` or ``pytorch_lightning``)::

    from earengine.sonify.lightning import SonifyCallback
    trainer = Trainer(callbacks=[SonifyCallback(sink="engine", run="mnist")])

Lightning calls ``on_before_optimizer_step`` once the gradients of an optimizer step are complete:
after gradient accumulation, after unscaling under mixed precision, and before gradient clipping.
So what is heard is the raw gradient of each optimizer step.
"""

from __future__ import annotations

from typing import Any, Optional

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name
    import pytorch_lightning as pl  # noqa: F401  (re-raises ImportError when neither is present)

from earengine.sonify.capture import GradientSonifier, LayerSpec

__all__ = ["SonifyCallback"]


class SonifyCallback(pl.Callback):
    """Sonify the gradient norms of the ``LightningModule`` being fitted.

    Parameters
    ----------
    sink : sink or str
        As for :class:`~earengine.sonify.capture.GradientSonifier` (``"engine"`` by default).
    run : str, optional
        Run name; the module's class name by default.
    layers : optional
        Which layers, see :func:`~earengine.sonify.capture.layer_groups`.
    every : int > 0
        One frame every ``every`` optimizer steps.
    """

    def __init__(self, sink: Any = "engine", *, run: Optional[str] = None, layers: LayerSpec = None,
                 every: int = 1) -> None:
        super().__init__()
        self.sink, self.run, self.layers, self.every = sink, run, layers, every
        self.sonifier: Optional[GradientSonifier] = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.global_rank != 0:  # one voice per run, not one per process
            return
        self.sonifier = GradientSonifier(pl_module, sink=self.sink, run=self.run or type(pl_module).__name__,
                                         layers=self.layers, every=self.every)
        self.sonifier.open()

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self.sonifier is not None:
            self.sonifier.step(step=int(trainer.global_step))

    def _close(self) -> None:
        if self.sonifier is not None:
            self.sonifier.close()
            self.sonifier = None

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._close()
