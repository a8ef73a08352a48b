"""A gradient frame: one training step's per-layer gradient norms, as a plain immutable value.

Frames are what the capture side produces and every sink consumes; they carry no tensors, so
they cross threads, processes and the network as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from earengine.errors import ParameterError

__all__ = ["GradientFrame", "check_run_name"]


def check_run_name(run: str) -> str:
    """Return ``run`` if it can name a run (1–64 printable characters), else raise."""
    if not isinstance(run, str) or not 1 <= len(run) <= 64 or not run.isprintable():
        raise ParameterError(f"run={run!r} must be 1-64 printable characters")
    return run


@dataclass(frozen=True)
class GradientFrame:
    """The gradient norms of one training step.

    Parameters
    ----------
    run : str
        Name of the training run (several runs may sound at once).
    step : int >= 0
        Training step the norms belong to.
    norms : tuple of float
        One L2 norm per layer (or group), in layer order; NaN or inf where the gradient was not
        finite.
    names : tuple of str
        Layer names, in the same order (may be empty when unknown, e.g. frames from OSC).

    Examples
    --------
    >>> f = GradientFrame("mnist", 3, (0.5, float("nan")), ("conv1", "fc2"))
    >>> f.bad
    (1,)
    >>> GradientFrame.from_dict(f.to_dict()).bad == f.bad
    True
    """

    run: str
    step: int
    norms: tuple
    names: tuple = ()

    def __post_init__(self) -> None:
        check_run_name(self.run)
        object.__setattr__(self, "norms", tuple(float(n) for n in self.norms))
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        if not self.norms:
            raise ParameterError("a frame needs at least one norm")
        if self.names and len(self.names) != len(self.norms):
            raise ParameterError(f"names has {len(self.names)} entries but norms has {len(self.norms)}")

    @classmethod
    def trusted(cls, run: str, step: int, norms: tuple, names: tuple) -> "GradientFrame":
        """A frame from values already checked (the capture's own), without checking them again:
        this runs once per training step."""
        frame = object.__new__(cls)
        object.__setattr__(frame, "run", run)
        object.__setattr__(frame, "step", step)
        object.__setattr__(frame, "norms", norms)
        object.__setattr__(frame, "names", names)
        return frame

    @property
    def bad(self) -> tuple:
        """Indices of the layers whose norm is NaN or inf."""
        return tuple(i for i, n in enumerate(self.norms) if not math.isfinite(n))

    def layer_name(self, index: int) -> str:
        return self.names[index] if self.names else f"layer {index}"

    def to_dict(self) -> dict:
        """JSON-able: non-finite norms become the strings ``"nan"``, ``"inf"``."""
        return {"run": self.run, "step": int(self.step),
                "norms": [n if math.isfinite(n) else repr(n) for n in self.norms],
                "names": list(self.names)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GradientFrame":
        return cls(str(data["run"]), int(data["step"]), tuple(float(n) for n in data["norms"]),
                   tuple(data.get("names", ())))

    def same(self, other: "GradientFrame") -> bool:
        """Equality that treats NaN as equal to NaN (``==`` does not)."""
        return (self.run, self.step, self.names) == (other.run, other.step, other.names) and all(
            a == b or (a != a and b != b) for a, b in zip(self.norms, other.norms)
        ) and len(self.norms) == len(other.norms)
