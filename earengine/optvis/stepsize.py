"""How far the dream steps: a step that made the loop worse is taken back and the next one is shorter.

The dream's objective is rough in the space of waveforms and notes, and a normalised gradient
(``/opt/grad_norm``) moves every value by about ``/opt/lr`` whatever the slope. At a fixed step the
loop therefore climbs for a few steps and then wanders: on a small random ear the target of an
``ar`` layer ended 40 steps lower than it stood after 12, on every seed tried, and which seeds fell
depended on the processor's float kernels. :class:`StepControl` makes the ascent hold on any
machine, after the "bold driver" rule of backpropagation's early days:

- each step is judged by the score of the loop as it is heard — copy 0 of the dream's batch, which
  no transform touches, so the judgement costs nothing extra and does not depend on the jitter;
- a step whose loop scores at least as well as the best kept so far is kept, and the next step is
  longer (``grow``, up to ``cap``);
- a step whose loop scores worse is taken back, and the next step is shorter (``shrink``, down to
  ``floor``): the loop that plays never falls for longer than one step.

A new target or a new start restarts the control (:meth:`restart`): the best score belongs to the
old objective, and the step starts from its first length again. For notes on the grid that first
length is bold (4 × ``/opt/lr``, growing to 8 × while steps are kept: :meth:`bound`) and settles as
steps are taken back: a performer's
new target is heard within the loop that follows (on the shipped ear at the defaults, 90 % of the
way to its plateau in about 19 steps instead of 48 at a fixed ``/opt/lr``: ``bench/responsiveness.py``).

>>> c = StepControl(start=1.0, grow=2.0, shrink=0.5, floor=0.25, cap=2.0)
>>> c.judge(1.0), c.scale        # the first loop is the reference
(True, 2.0)
>>> c.judge(0.5), c.scale        # worse: taken back, shorter step
(False, 1.0)
>>> c.judge(0.9), c.judge(0.8), c.scale   # still worse than the kept 1.0; the floor holds
(False, False, 0.25)
>>> c.judge(1.5), c.best, c.scale
(True, 1.5, 0.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

__all__ = ["StepControl", "FixedStep"]

#: Steps over which :attr:`StepControl.settled` weighs the gain still to come against the gain made.
HORIZON_STEPS = 20
#: Weight of the newest step in the running gain per step.
RATE_WEIGHT = 0.2


@dataclass
class StepControl:
    """The step's length, as a factor of ``/opt/lr``, and the best score kept so far.

    Parameters
    ----------
    start : float, > 0
        Factor of the first step after a restart.
    grow, shrink : float
        Factors applied after a kept (``grow`` ≥ 1) and after a taken-back step (0 < ``shrink`` < 1).
    floor, cap : float
        Bounds of the factor: ``floor`` keeps a settled dream able to move, ``cap`` keeps a lucky
        run from stepping wildly.
    """

    start: float = 1.0
    grow: float = 1.5
    shrink: float = 0.5
    floor: float = 1.0 / 32
    cap: float = 1.0
    scale: float = field(init=False)
    best: Optional[float] = field(init=False, default=None)
    kept: int = field(init=False, default=0)
    taken_back: int = field(init=False, default=0)
    gain: float = field(init=False, default=0.0)
    rate: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if not (0 < self.floor <= self.start <= self.cap and self.grow >= 1 and 0 < self.shrink < 1):
            raise ValueError(f"step control needs 0 < floor <= start <= cap, grow >= 1, 0 < shrink < 1: {self}")
        self.scale = self.start

    def bound(self, start: float, cap: float) -> None:
        """The first step's length and the longest, as factors of ``/opt/lr``, for what is
        optimized (a parameterization's :attr:`~earengine.optvis.param.Parameterization.bold`); restarts."""
        self.start, self.cap = float(start), float(cap)
        self.__post_init__()
        self.restart()

    def restart(self) -> None:
        """Forget the best score (a new objective or a new loop) and step at ``start`` again."""
        self.scale, self.best, self.kept, self.taken_back = self.start, None, 0, 0
        self.gain, self.rate = 0.0, 0.0

    @property
    def settled(self) -> float:
        """How settled the dream is, 0 … 1: the gain made since the restart against that gain plus
        what the recent rate would still add over :data:`HORIZON_STEPS` steps. 0 right after a new
        target; near 1 once steps stop adding (a dream with nothing to gain settles as its steps pass).

        >>> c = StepControl()
        >>> c.settled, [c.judge(v) for v in (1.0, 2.0, 3.0)] and round(c.settled, 2)
        (0.0, 0.22)
        >>> for _ in range(30):
        ...     _ = c.judge(3.0)
        >>> c.settled > 0.95
        True
        """
        if self.gain > 0:
            return self.gain / (self.gain + HORIZON_STEPS * self.rate)
        return min(1.0, (self.kept + self.taken_back) / HORIZON_STEPS) if self.rate == 0 else 0.0

    def _count(self, gained: float) -> None:
        self.gain += gained
        self.rate += RATE_WEIGHT * (gained - self.rate)

    def judge(self, score: float) -> bool:
        """Keep (True) or take back (False) the loop that scores ``score``; adapt the next step.

        A score that is not finite is never kept (and never becomes the best)."""
        if math.isfinite(score) and (self.best is None or score >= self.best):
            self._count(0.0 if self.best is None else score - self.best)
            self.best = score
            self.scale = min(self.cap, self.scale * self.grow)
            self.kept += 1
            return True
        self._count(0.0)
        self.scale = max(self.floor, self.scale * self.shrink)
        self.taken_back += 1
        return False

    def rebase(self) -> None:
        """The dream changed the loop on purpose (e.g. mixed it toward a reference): whatever the
        next loop scores is kept and becomes the best to beat; the step keeps its length."""
        self.best = None


class FixedStep(StepControl):
    """Every step kept, at ``/opt/lr`` itself: the dream as it stepped before :class:`StepControl`
    (``/opt/step fixed``), for comparison. Its :attr:`settled` figure still follows the score.

    >>> c = FixedStep()
    >>> c.judge(1.0), c.judge(0.5), c.scale, c.best
    (True, True, 1.0, 0.5)
    """

    def __init__(self) -> None:
        super().__init__(start=1.0, grow=1.0, shrink=0.5, floor=1.0, cap=1.0)

    def bound(self, start: float, cap: float) -> None:
        self.restart()  # always /opt/lr itself

    def judge(self, score: float) -> bool:
        if math.isfinite(score):
            self._count(0.0 if self.best is None else max(0.0, score - self.best))
            self.best = score
            self.kept += 1
        return True
