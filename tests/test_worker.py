"""The shared-memory loop buffer between the worker and the engine (no torch, no processes)."""

import numpy as np

from earengine.worker import LoopBuffer


def test_loops_round_trip_and_only_newer_ones_are_read():
    writer = LoopBuffer(capacity=1000)
    reader = LoopBuffer(name=writer.name)
    try:
        assert reader.read() is None  # nothing written yet
        x = np.linspace(-1, 1, 500, dtype=np.float32)
        writer.write(x, step=3, loss=-0.5, target=0.5, steps_per_s=10.0, bars=2, sr=44100)
        seq, samples, stats = reader.read()
        assert np.array_equal(samples, x) and stats["step"] == 3 and stats["bars"] == 2
        assert reader.read(seq) is None  # not newer
        writer.write(x[:10], step=4, loss=0, target=0, steps_per_s=0, bars=1, sr=44100)
        seq2, samples, stats = reader.read(seq)
        assert seq2 > seq and samples.size == 10 and stats["step"] == 4
    finally:
        reader.close()
        writer.close()


def test_a_write_cut_off_halfway_is_never_read_and_the_next_one_is():
    writer = LoopBuffer(capacity=100)
    reader = LoopBuffer(name=writer.name)
    try:
        writer.header[0] += 1  # a writer killed in the middle leaves an odd sequence number
        assert reader.read() is None
        writer.write(np.ones(5, np.float32), step=1, loss=0, target=0, steps_per_s=0, bars=1, sr=44100)
        got = reader.read()
        assert got is not None and np.array_equal(got[1], np.ones(5, np.float32))
    finally:
        reader.close()
        writer.close()
