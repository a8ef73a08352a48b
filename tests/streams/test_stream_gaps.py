"""A real engine dreaming, a real UDP receiver: every frame of the loop playing carries that loop's
activations, however many newer loops the worker dreams meanwhile, and a new loop's activations
take over at the bar line where its audio enters."""

import pytest

from earengine.process import EngineProcess
from tests.helpers.osc import Peer, wait_for
from tests.helpers.streams import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: One bar at 60 BPM: a 4 s loop, and quick steps (one copy, no context), so the tiny ear dreams
#: many loops while one plays (about 12 here; before the loops travelled with their activations,
#: the streams lost the playing loop's after the fourth newer one and sent frames without
#: activations until the next bar line: 80 % of the frames with 6 loops a bar, 25 % for a user).
SETTINGS = {"/loop/bars": 1, "/clock/bpm": 60.0, "/opt/batch": 1, "/opt/context": 0,
            "/stream/fps": 30.0, "/stream/reduce": "channel"}


def frame_table(items):
    """{frame: {"phase": p, "step": s, "acts": bool}} from the receiver's messages, kept whole
    or not (a datagram lost on a loaded machine still leaves the frame's other messages)."""
    out = {}
    for _, _, address, args in items:
        f = out.setdefault(args[0], {"acts": False})
        if address == "/stream/phase":
            f["phase"] = args[1]
        elif address == "/stream/step":
            f["step"] = args[1]
        elif address.startswith("/stream/act/"):
            f["acts"] = True
    return {n: f for n, f in out.items() if "phase" in f and "step" in f}


def dreaming(ear_dir) -> list[str]:
    """``earengine run``'s arguments: the null device, dreaming with :data:`SETTINGS`."""
    args = ["--audio", "null", "--ear", str(ear_dir), "--status-every", "1000"]
    for address, value in SETTINGS.items():
        args += ["--set", f"{address}={value}"]
    return args


def test_frames_carry_the_playing_loops_activations_while_the_engine_dreams(tiny_ear_dir):
    rx = Receiver()
    with EngineProcess(dreaming(tiny_ear_dir), ready_s=60.0) as engine:
        peer = Peer(engine.address)
        try:
            peer.send("/stream/add", rx.dest)
            assert peer.replies(5.0, until=lambda a, _: a in ("/done", "/fail"))[-1] == ("/done", ("/stream/add",))
            # the worker loads the ear and publishes activations once someone looks; its first loop
            # with them enters at a bar line
            assert rx.wait_for(lambda r: any(f["acts"] and f["step"] > 0 for f in frame_table(r.items).values()), 120), \
                engine.output()
            since = len(rx.items)

            def steps_heard(r):
                return {f["step"] for f in frame_table(r.items[since:]).values() if f["step"] > 0}

            # three loops heard in turn: two bar lines where a newer dreamed loop came in
            assert rx.wait_for(lambda r: len(steps_heard(r)) >= 3, 60), engine.output()
            table = frame_table(rx.items[since:])
        finally:
            peer.close()
            rx.close()
    numbers = sorted(table)
    with_acts = [n for n in numbers if table[n]["acts"]]
    share = len(with_acts) / len(numbers)
    assert len(numbers) >= 60 and share >= 0.9, f"{len(with_acts)} of {len(numbers)} frames carry activations"
    # a loop's activations change where its audio enters: at the bar line (the loop's start), a
    # frame or two late at most (the frame is cut for the lookahead, 30 ms, from the loop playing now)
    changes = [b for a, b in zip(with_acts, with_acts[1:]) if b == a + 1 and table[a]["step"] != table[b]["step"]]
    assert changes, "no new loop entered while we listened"
    assert all(table[n]["phase"] < 0.05 or table[n]["phase"] > 0.98 for n in changes), \
        [(n, table[n]["phase"]) for n in changes]


def test_a_stream_added_while_the_loop_is_held_gets_its_activations(tiny_ear_dir):
    # The loop playing was dreamed before anyone asked for activations; held (/opt/run 0), no newer
    # loop will bring them: the worker sends the held loop again, with them.
    rx = Receiver()
    with EngineProcess(dreaming(tiny_ear_dir), ready_s=60.0) as engine:
        peer = Peer(engine.address)
        try:
            assert wait_for(lambda: peer.ask("/status", reply="/status.reply")[1][4] >= 2, 120), engine.output()
            peer.send("/opt/run", 0)
            assert peer.ask("/sync", 1, reply="/synced") == ("/synced", (1,))
            held = peer.ask("/status", reply="/status.reply")[1][1]
            peer.send("/stream/add", rx.dest)
            assert rx.wait_for(lambda r: sum(f["acts"] for f in frame_table(r.items).values()) >= 30, 60), \
                engine.output()
            since = len(rx.items)
            assert rx.wait_for(lambda r: len(frame_table(r.items[since:])) >= 30, 30)
            table = frame_table(rx.items[since:])
        finally:
            peer.close()
            rx.close()
    steps = {f["step"] for f in table.values()}
    share = sum(f["acts"] for f in table.values()) / len(table)
    assert share >= 0.9, f"{share:.0%} of the held loop's frames carry activations"
    assert len(steps) == 1 and steps.pop() >= held - 1  # the held loop, not a newer one
