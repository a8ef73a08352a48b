"""The /stream/reduce choices dispatch through a table with one entry per choice."""

import numpy as np
import pytest

from earengine.errors import ParameterError
from earengine.params import default_registry
from earengine.streams.frames import REDUCTIONS, frame_size, reduce_frame, reduce_mask


def test_every_reduce_choice_has_a_reduction():
    assert set(REDUCTIONS) == set(default_registry().spec("/stream/reduce").choices)


@pytest.mark.parametrize("mode", sorted(REDUCTIONS))
def test_a_frame_and_its_mask_have_the_size_the_shape_announces(mode):
    acts = np.random.default_rng(0).standard_normal((3, 5, 10)).astype(np.float32)
    assert reduce_frame(acts, 0.2, 0.3, mode).shape == (frame_size(acts.shape, mode),)
    assert reduce_mask(np.ones((3, 5), bool), mode).shape == (frame_size(acts.shape, mode),)


def test_an_unknown_reduction_is_refused_in_one_line():
    for call in (lambda: frame_size((3, 5, 10), "median"), lambda: reduce_mask(np.ones((3, 5), bool), "median")):
        with pytest.raises(ParameterError, match="/stream/reduce='median' must be one of raw, channel, channel_freq"):
            call()
