"""Capture: every layer's gradient norm per training step, in one fused reduction.

:class:`GradientSonifier` reads the gradients of a model's layers (or of chosen layers or groups
of parameters), computes all their L2 norms with one fused ``torch._foreach_norm``, stacks them
and copies them to the host once, then hands a :class:`~earengine.sonify.frame.GradientFrame` to a
sink. Three ways to drive it:

- **plain loops**: call :meth:`GradientSonifier.step` where ``optimizer.step()`` happens, i.e.
  after ``loss.backward()`` (and after ``scaler.unscale_(optimizer)`` under AMP; after the last
  micro-batch under gradient accumulation);
- **optimizer hook** (``optimizer=opt``): a step pre-hook captures right before each
  ``optimizer.step()``. This is correct under gradient accumulation (one frame per optimizer step)
  and under AMP, because ``GradScaler.step`` unscales before it steps. A step the scaler skips
  because its gradients overflowed makes no frame: the scaler discards that gradient;
- **backward hook** (``hook="backward"``): one frame at the end of every backward pass, with
  nothing else to add to the loop. Under accumulation that is one frame per micro-batch, and under
  AMP the norms are still scaled: use one of the two ways above there.

Hooks are removed when the ``with`` block ends, whatever happens inside it.

**Pace.** A sink that sounds frames in real time keeps only the newest frame of each sounded
step (80 ms by default; the engine tells its step with ``/son/pace``, see the sink's
``sounded_step_s``), while a small model trains hundreds of steps a second. With ``pace=True``
(the default) a step is captured only when the next sounded step would otherwise go without a
fresh frame: captures are at most one sounded step apart, less twice the training step (a running
average) and 10 ms for delivery, and never closer than a quarter step. The steps between cost a
clock read. A NaN or inf that appears between two captures is heard at the next one: a diverged
run's gradients stay non-finite. Sinks that want every step (WAV renders, memory, callables) have
no sounded step and get every step; ``pace=False`` forces every step everywhere.

A layer's norm is the L2 norm of all its parameters' gradients together (``sqrt`` of the sum of
the squared per-tensor norms); a parameter without a gradient counts as zero. A NaN or inf
anywhere in a layer makes that layer's norm NaN or inf: the frame flags it, the sinks sound the cue.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from earengine.errors import ParameterError
from earengine.sonify import sinks
from earengine.sonify.frame import GradientFrame, check_run_name

__all__ = ["GradientSonifier", "layer_groups"]

log = logging.getLogger("earengine.sonify")

#: Time allowed for a frame to reach the sink and be picked up (s); see ``pace``.
DELIVERY_S = 0.010

LayerSpec = Union[None, Sequence[str], Mapping[str, Union[str, Sequence[str]]]]


def layer_groups(model: torch.nn.Module, layers: LayerSpec = None) -> list[tuple[str, list[torch.nn.Parameter]]]:
    """Resolve which parameters make up each sonified layer.

    Parameters
    ----------
    model : torch.nn.Module
    layers : None, sequence of str, or mapping of str to str or sequence of str
        ``None``: every module that owns trainable parameters directly is one layer (its weight
        and bias together), in registration order. A sequence names modules (all their
        parameters) or single parameters (``"fc1.weight"``), one layer each. A mapping names
        groups: ``{"encoder": ["conv1", "conv2"], "head": "fc"}``.

    Returns
    -------
    list of (name, parameters)

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    >>> [(name, len(ps)) for name, ps in layer_groups(net)]
    [('0', 2), ('2', 2)]
    >>> [(name, len(ps)) for name, ps in layer_groups(net, {"all": ["0", "2.weight"]})]
    [('all', 3)]
    """
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())

    def resolve(item: str) -> list[torch.nn.Parameter]:
        if item in params:
            return [params[item]]
        if item in modules:
            found = [p for p in modules[item].parameters() if p.requires_grad]
            if not found:
                raise ParameterError(f"layer {item!r} has no trainable parameters")
            return found
        raise ParameterError(f"layers: {item!r} is neither a module nor a parameter of the model; "
                             f"see model.named_modules() and model.named_parameters()")

    if layers is None:
        groups = []
        for name, module in model.named_modules():
            own = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if own:
                groups.append((name or type(model).__name__, own))
    elif isinstance(layers, Mapping):
        groups = []
        for name, items in layers.items():
            items = [items] if isinstance(items, str) else list(items)
            groups.append((str(name), [p for item in items for p in resolve(item)]))
    elif isinstance(layers, str):
        raise ParameterError(f"layers={layers!r} must be a list of names, a mapping or None")
    else:
        groups = [(str(item), resolve(str(item))) for item in layers]
    if not groups:
        raise ParameterError("the model has no trainable parameters to sonify")
    return groups


def _as_sink(sink: Any) -> tuple[Any, bool]:
    """A sink object (``send``; optional ``begin``, ``end``, ``close``) and whether we own it."""
    if isinstance(sink, str):
        return sinks.open_sink(sink), True
    if isinstance(sink, (list, tuple)):
        parts = [_as_sink(s) for s in sink]
        return sinks.MultiSink([s for s, _ in parts], owned=[o for _, o in parts]), True
    if hasattr(sink, "send"):
        return sink, False
    if callable(sink):
        return sinks.CallableSink(sink), True
    raise ParameterError(f"sink={sink!r} must be a sink, a callable taking a GradientFrame, "
                         "'engine', 'osc://host:port', 'local' or a path ending in .wav")


class GradientSonifier:
    """Sonifies the gradient norms of a model's layers, step by step. A context manager.

    Parameters
    ----------
    model : torch.nn.Module
        The model being trained.
    sink : sink, callable, str or list
        Where frames go: an :class:`~earengine.sonify.sinks.OscSink` (the engine), a
        :class:`~earengine.synth.local.LocalSynthSink` (pyo, no engine), a
        :class:`~earengine.sonify.sinks.WavSink` (offline), any callable taking a frame, or a
        shorthand: ``"engine"`` (127.0.0.1:9000), ``"osc://host:port"``, ``"local"``,
        ``"run.wav"``. Sinks made from shorthands are closed on exit.
    run : str
        Name of this run (several runs can sound at once in the engine).
    layers : None, sequence or mapping
        Which layers, see :func:`layer_groups`.
    optimizer : torch.optim.Optimizer, optional
        Capture automatically right before each ``optimizer.step()``.
    hook : {None, 'backward', 'optimizer'}
        ``'backward'`` captures automatically at the end of every backward pass;
        ``'optimizer'`` needs ``optimizer`` (and is the default when one is given); ``None`` with
        no optimizer means you call :meth:`step`.
    every : int > 0
        Deliver one frame every ``every`` steps (the others cost nothing).
    pace : bool
        Capture no faster than the sink can sound (see the module docstring); steps skipped so
        are counted in :attr:`paced`.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> frames = []
    >>> with GradientSonifier(net, sink=frames.append, run="doc") as son:
    ...     net(torch.ones(3, 4)).sum().backward()
    ...     frame = son.step()
    >>> frame.run, frame.step, len(frame.norms), son.layer_names
    ('doc', 0, 2, ('0', '2'))
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        sink: Any,
        run: str = "run",
        layers: LayerSpec = None,
        optimizer: Optional[torch.optim.Optimizer] = None,
        hook: Optional[str] = None,
        every: int = 1,
        pace: bool = True,
    ) -> None:
        self.run = check_run_name(run)
        if hook is None and optimizer is not None:
            hook = "optimizer"
        if hook not in (None, "backward", "optimizer"):
            raise ParameterError(f"hook={hook!r} must be None, 'backward' or 'optimizer'")
        if hook == "optimizer" and optimizer is None:
            raise ParameterError("hook='optimizer' needs optimizer=<the optimizer that steps this model>")
        if every < 1:
            raise ParameterError(f"every={every} must be >= 1")
        self.model, self.optimizer, self.hook, self.every = model, optimizer, hook, int(every)
        groups = layer_groups(model, layers)
        self.layer_names = tuple(name for name, _ in groups)
        self._params = [p for _, ps in groups for p in ps]
        sizes = [len(ps) for _, ps in groups]
        self._starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.intp)
        self._identity = all(size == 1 for size in sizes)
        self._devices = len({p.device for p in self._params})
        self._sink, self._owns_sink = _as_sink(sink)
        self._sounded_step = getattr(self._sink, "sounded_step_s", None) if pace else None
        self._captured_s = -math.inf
        self._stepped_s: Optional[float] = None
        self._train_step_s = 0.0  # running average of the time between steps
        self._handles: list[Any] = []
        self._counter = itertools.count()
        self._queued = False
        self._open = False
        self.steps = 0
        self.frames = 0
        self.bad_steps = 0
        self.paced = 0
        self.last: Optional[GradientFrame] = None

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "GradientSonifier":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Announce the run to the sink and, in an automatic mode, attach the hooks."""
        if self._open:
            return
        self._stepped_s = None  # the time away does not count as a training step
        begin = getattr(self._sink, "begin", None)
        if begin is not None:
            begin(self.run, self.layer_names)
        try:
            if self.hook == "optimizer":
                self._handles.append(self.optimizer.register_step_pre_hook(self._on_optimizer_step))
            elif self.hook == "backward":
                for p in dict.fromkeys(self._params):  # each parameter once
                    if p.requires_grad:
                        self._handles.append(p.register_post_accumulate_grad_hook(self._on_accumulated))
        except BaseException:
            self._remove_hooks()
            raise
        self._open = True

    def close(self) -> None:
        """Remove every hook, tell the sink the run ended, close the sink if we made it."""
        self._remove_hooks()
        if not self._open:
            return
        self._open = False
        end = getattr(self._sink, "end", None)
        try:
            if end is not None:
                end(self.run)
        finally:
            if self._owns_sink and hasattr(self._sink, "close"):
                self._sink.close()

    def _remove_hooks(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    @property
    def hooks(self) -> int:
        """Hooks currently attached (0 once the ``with`` block has ended)."""
        return len(self._handles)

    # -- hooks -------------------------------------------------------------------------------
    def _on_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.step()

    def _on_accumulated(self, param: torch.Tensor) -> None:
        # Called once per parameter as its gradient lands; the frame is taken when the whole
        # backward pass is over, so every layer's gradient is complete.
        if not self._queued:
            self._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._on_backward_end)

    def _on_backward_end(self) -> None:
        self._queued = False
        self.step()

    # -- capture -----------------------------------------------------------------------------
    def norms(self) -> np.ndarray:
        """Each layer's gradient norm now, as float64 (NaN or inf where not finite).

        One fused ``_foreach_norm`` over every gradient, one stack, one device→host copy.
        """
        grads = [p.grad for p in self._params]
        try:
            per_tensor = torch._foreach_norm(grads, 2, dtype=torch.float32)
            missing = None
        except (TypeError, RuntimeError):  # some parameter has no gradient (an unused layer)
            missing = [i for i, g in enumerate(grads) if g is None]
            if len(missing) == len(grads):
                return np.zeros(len(self._starts))
            per_tensor = torch._foreach_norm([g for g in grads if g is not None], 2, dtype=torch.float32)
        if self._devices > 1:  # model split over devices: gather the norms on one
            per_tensor = [t.to(per_tensor[0].device) for t in per_tensor]
        host = torch.stack(per_tensor).cpu().numpy().astype(np.float64)
        if missing is not None:
            full = np.zeros(len(grads))
            full[np.setdiff1d(np.arange(len(grads)), missing)] = host
            host = full
        if self._identity:
            return host
        with np.errstate(over="ignore", invalid="ignore"):
            return np.sqrt(np.add.reduceat(host * host, self._starts))

    def step(self, step: Optional[int] = None) -> Optional[GradientFrame]:
        """Capture this step's norms and deliver them; returns the frame (None when skipped by
        ``every`` or by the pace). ``step`` overrides the internal step counter."""
        n = next(self._counter) if step is None else int(step)
        self.steps += 1
        if (self.steps - 1) % self.every:
            return None
        if self._sounded_step is not None:
            sounded = self._sounded_step(self.run)
            if sounded:
                now = time.perf_counter()
                if self._stepped_s is not None:  # pauses (evaluation, saving) count as one second at most
                    between = min(now - self._stepped_s, 1.0)
                    self._train_step_s += (0.1 if self._train_step_s else 1.0) * (between - self._train_step_s)
                self._stepped_s = now
                wait = max(0.25 * sounded, sounded - 2.0 * self._train_step_s - DELIVERY_S)
                if now - self._captured_s < wait:
                    self.paced += 1
                    return None
                self._captured_s = now
        norms = tuple(self.norms().tolist())
        frame = GradientFrame.trusted(self.run, n, norms, self.layer_names)
        if not math.isfinite(sum(norms)):  # NaN or inf anywhere makes the sum so (norms are >= 0)
            self.bad_steps += 1
            if self.bad_steps == 1:
                bad = [name for name, v in zip(self.layer_names, norms) if not math.isfinite(v)]
                log.warning("run %s step %d: gradient not finite in %s", self.run, n, ", ".join(bad))
        self.last = frame
        self.frames += 1
        self._sink.send(frame)
        return frame
