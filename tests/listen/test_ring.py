"""The input ring: what the audio thread writes, a reader in another process gets whole or not at all."""

import multiprocessing as mp

import numpy as np
import pytest

from earengine.errors import ParameterError
from earengine.listen.ring import MARGIN, InputRing


def test_window_and_span_across_the_wrap():
    with InputRing(3 * MARGIN, sr=100) as ring:
        x = np.arange(5 * MARGIN, dtype=np.float32)
        for i in range(0, x.size, 256):
            ring.write(x[i:i + 256], time_s=float(i), clock_sample=i + 7)
        state = ring.state()
        assert state.head == x.size and state.clock_sample == x.size - 256 + 7 and state.sr == 100
        assert np.array_equal(ring.window(MARGIN), x[-MARGIN:])
        assert np.array_equal(ring.span(x.size - 2 * MARGIN, x.size - MARGIN), x[-2 * MARGIN:-MARGIN])
        assert ring.span(0, 10) is None  # written over long ago
        assert ring.span(x.size - 5, x.size + 5) is None  # not yet written


def test_a_window_before_the_first_samples_is_padded_with_silence():
    with InputRing(4 * MARGIN) as ring:
        ring.write(np.ones(10, np.float32), time_s=1.0, clock_sample=0)
        got = ring.window(16)
        assert got.tolist() == [0.0] * 6 + [1.0] * 10


def test_too_long_a_span_is_refused_in_one_line():
    with InputRing(3 * MARGIN) as ring:
        with pytest.raises(ParameterError, match="at most"):
            ring.span(0, 3 * MARGIN)
    with pytest.raises(ParameterError, match="capacity=1 must be"):
        InputRing(1)


def _reader(name, queue):
    with InputRing(name=name) as ring:
        queue.put((ring.state().head, ring.window(4).tolist()))


def test_another_process_attaches_by_name():
    with InputRing(4 * MARGIN, sr=48000) as ring:
        ring.write(np.arange(8, dtype=np.float32), time_s=2.0, clock_sample=3)
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_reader, args=(ring.name, q))
        p.start()
        head, window = q.get(timeout=60)
        p.join(timeout=10)
        assert head == 8 and window == [4.0, 5.0, 6.0, 7.0]


def test_a_reader_racing_the_writer_gets_whole_copies_or_none():
    """Every copy a reader keeps is a run of consecutive samples, however the writer interleaves."""
    with InputRing(2 * MARGIN + 1024) as ring:
        counter = 0
        rng = np.random.default_rng(0)
        kept = 0
        for _ in range(2000):
            n = int(rng.integers(1, 512))
            ring.write(np.arange(counter, counter + n, dtype=np.float32), time_s=0.0, clock_sample=0)
            counter += n
            got = ring.window(256)
            if got is not None and counter >= 256:
                assert np.array_equal(np.diff(got), np.ones(255, np.float32))
                kept += 1
        assert kept > 1000


def test_at_rate_gives_the_ear_s_samples_ending_on_its_grid_whatever_the_input_s_rate():
    # a 1 kHz sine written at 48 kHz, read at 44.1 kHz: the same sine at the ear's sample times
    rate, sr = 48000, 44100
    with InputRing(4 * rate, sr=rate) as ring:
        t = np.arange(2 * rate) / rate
        ring.write(np.sin(2 * np.pi * 1000 * t).astype(np.float32), time_s=1.0, clock_sample=0)
        state = ring.state()
        end, n = 80000, 4096
        got = ring.at_rate(state, end, n, sr)
        want = np.sin(2 * np.pi * 1000 * (end - n + np.arange(n)) / sr)
        assert got.dtype == np.float32 and got.shape == (n,)
        assert np.max(np.abs(got - want)) < 0.01  # linear interpolation of 48 points a cycle
        # the same rate: the samples themselves; before the first: zeros; not yet written: None
        with InputRing(1000, sr=sr) as same:
            same.write(np.arange(1, 101, dtype=np.float32), time_s=1.0, clock_sample=0)
            s = same.state()
            assert same.at_rate(s, 100, 4, sr).tolist() == [97.0, 98.0, 99.0, 100.0]
            assert same.at_rate(s, 2, 4, sr).tolist() == [0.0, 0.0, 1.0, 2.0]
            assert same.at_rate(s, 101, 4, sr) is None
        assert ring.at_rate(state, int(2.1 * sr), n, sr) is None
