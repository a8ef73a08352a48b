"""The step control alone: a strict climb while the dream rises, the fixed way's steps once settled."""

import math

from earengine.optvis.stepsize import SETTLE_AFTER, FixedStep, StepControl


def climb(c: StepControl, scores) -> list:
    return [c.judge(s) for s in scores]


def test_a_climbing_dream_takes_back_every_step_that_scores_worse():
    c = StepControl(start=4.0, cap=8.0)
    assert climb(c, [0.0, 0.5, 0.4, 0.6, 0.55]) == [True, True, False, True, False]
    assert not c.roaming and c.best == 0.6 and c.scale < 8.0


def test_a_settled_dream_keeps_every_step_at_the_fixed_length_until_restarted():
    c = StepControl(start=4.0, cap=8.0)
    # a fast rise that stops: settled passes 0.9 once the gains have died away
    climb(c, [0.1 * min(i, 8) for i in range(SETTLE_AFTER + 30)])
    assert c.roaming and c.settled > 0.9 and c.scale == 1.0
    assert c.judge(c.best - 0.05) and c.scale == 1.0  # a dip is kept: the loop may wander upward
    assert not c.judge(math.nan)  # a loop that is not finite never is
    c.restart()
    assert not c.roaming and c.scale == 4.0 and c.best is None and c.settled == 0.0
    assert climb(c, [1.0, 0.9]) == [True, False]  # strict again for the new target


def test_a_rise_too_short_to_tell_does_not_settle():
    c = StepControl(start=4.0, cap=8.0)
    climb(c, [0.0] + [1.0] * (SETTLE_AFTER - 1))
    assert not c.roaming  # a few gains say little of the rest


def test_the_fixed_way_and_a_strict_climb_never_roam():
    f = FixedStep()
    climb(f, [0.1 * i for i in range(40)] + [0.0])
    assert not f.roaming and f.scale == 1.0 and f.best == 0.0
    s = StepControl(start=4.0, cap=8.0, settle=None)
    climb(s, [0.1 * min(i, 8) for i in range(SETTLE_AFTER + 30)])
    assert not s.roaming and not s.judge(s.best - 0.05)
