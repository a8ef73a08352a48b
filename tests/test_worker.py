"""The worker's shared memory and messages: loops, the seqlock under them (no torch, no processes)."""

import multiprocessing

import numpy as np
import pytest

from earengine.shm import SeqlockBuffer
from earengine.worker.loops import LoopBuffer
from earengine.worker.messages import Notes, Ready, Reset, Settings, Stop, WorkerError


def test_loops_round_trip_and_only_newer_ones_are_read():
    writer = LoopBuffer(capacity=1000)
    reader = LoopBuffer(name=writer.name)
    try:
        assert reader.capacity == 1000
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
        with pytest.raises(RuntimeError):  # a writer stopped in the middle leaves an odd sequence number
            with writer.block.writing() as slot:
                slot["samples"][:5] = 0.5
                raise RuntimeError("killed")
        assert writer.block.seq() % 2 == 1 and reader.read() is None
        writer.write(np.ones(5, np.float32), step=1, loss=0, target=0, steps_per_s=0, bars=1, sr=44100)
        got = reader.read()
        assert got is not None and np.array_equal(got[1], np.ones(5, np.float32))
    finally:
        reader.close()
        writer.close()


def test_a_heartbeat_does_not_make_a_new_loop():
    with LoopBuffer(10) as writer, LoopBuffer(name=writer.name) as reader:
        writer.write(np.ones(3, np.float32), step=1, loss=0, target=0, steps_per_s=0, bars=1, sr=44100)
        seq, _, _ = reader.read()
        before = reader.heartbeat
        writer.beat()
        assert reader.heartbeat >= before > 0 and reader.read(seq) is None


def test_slots_are_filled_in_turn_and_read_newest_first():
    with SeqlockBuffer({"step": ("int64", (1,))}, slots=2) as writer, SeqlockBuffer(name=writer.name) as reader:
        assert reader.n_slots == 2 and reader.fields["step"][1] == (1,)
        for step in (1, 2):
            with writer.writing() as slot:
                slot["step"][0] = step
        assert reader.read(lambda v: int(v["step"][0]))[1] == 2
        # a reader looking for the older set still finds it after the next one is written
        assert reader.read(lambda v: int(v["step"][0]) if v["step"][0] == 1 else None)[1] == 1
        with writer.writing() as slot:  # the third write replaces the oldest
            slot["step"][0] = 3
        assert reader.read(lambda v: int(v["step"][0]) if v["step"][0] == 1 else None) is None


def test_a_copy_torn_by_the_writer_is_dropped():
    with SeqlockBuffer({"x": ("float32", (4,))}) as buf:
        with buf.writing() as slot:
            slot["x"][:] = 1

        def racing(views):  # the writer comes by while the reader copies
            out = views["x"].copy()
            with buf.writing() as slot:
                slot["x"][:] = 2
            return out

        assert buf.read(racing) is None
        assert buf.read(lambda v: v["x"].tolist())[1] == [2.0] * 4


def test_a_block_closed_by_its_creator_is_gone():
    buf = SeqlockBuffer({"x": ("float32", (4,))})
    name = buf.name
    buf.close()
    buf.close()  # twice is harmless
    with pytest.raises(FileNotFoundError):
        SeqlockBuffer(name=name)


def test_messages_are_frozen_and_cross_processes():
    msgs = [Settings({"/opt/lr": 0.1}), Reset("file", np.ones(3, np.float32)), Stop(),
            Ready(("scaleogram", "enc.0"), {"enc.0": [8, 4, 2]}), Notes(3, {"notes": []}), WorkerError("x", fatal=True)]
    queue = multiprocessing.get_context("spawn").Queue()  # the kind the worker's messages travel on
    for msg in msgs:
        queue.put(msg)
        back = queue.get(timeout=10)
        assert type(back) is type(msg)
        with pytest.raises(AttributeError):
            msg.__setattr__(next(iter(msg.__dataclass_fields__), "x"), None)
    assert Ready(("a",), {"a": (2, 3)}).info() == {"taps": ["a"], "shapes": {"a": [2, 3]}}
