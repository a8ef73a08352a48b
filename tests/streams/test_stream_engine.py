"""The whole path, engine + worker + player + UDP: a streamed frame is the ear's activation of the
loop being heard at the step being heard; the layout reaches a new destination."""

import os
import time

import numpy as np
import pytest

from earengine.engine import Engine, EngineConfig
from earengine.viz.layout import read_cached_layout
from tests.helpers.osc import Peer, wait_for
from tests.helpers.streams import Receiver, arrays, frames

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def ear_dir(tiny_ear_dir):
    return tiny_ear_dir




def test_frames_of_a_dreaming_engine_are_the_activations_heard(ear_dir):
    from earengine.ear.checkpoint import load_ear
    from earengine.viz.frames import loop_activations

    values = {"/loop/bars": 1, "/clock/bpm": 240.0, "/stream/fps": 30.0, "/stream/reduce": "raw",
              "/stream/layers": "scaleogram enc.5 ar.8", "/target/spec": "enc.5:1-2", "/loop/xfade": 0.0}
    with Engine(EngineConfig(audio="null", osc_port=0, ear=ear_dir, overrides=values), out=open(os.devnull, "w")) as engine:
        peer, rx = Peer(engine.osc.address), Receiver()
        try:
            peer.send("/stream/add", rx.dest)
            assert peer.replies(5.0, until=lambda a, args: a in ("/done", "/fail"))[-1] == ("/done", ("/stream/add",))
            # the worker publishes activations once someone looks; frames then carry them
            assert rx.wait_for(lambda r: any(f.get("step", (-1,))[0] > 0 and f["acts"] for f in frames(r.items).values()), 90)
            # hold the dream so the loop heard stays the same while we listen
            peer.send("/opt/run", 0)
            assert wait_for(lambda: engine.dream.state == "paused", 10)
            # a step in flight when the pause arrived may still publish one loop: wait until none comes
            # for a bar and a half (a loop made meanwhile starts at the next bar line, 1 s)
            for _ in range(5):
                loops = engine.dream.loops
                time.sleep(1.5)
                if engine.dream.loops == loops and not engine.player.pending:
                    break
            assert engine.dream.loops == loops and not engine.player.pending
            heard = engine.player.current
            since = len(rx.items)  # keep what came before: the layout may already be here
            assert rx.wait_for(lambda r: len(frames(r.items[since:])) >= 20, 5)
            everything = frames(rx.items[since:])
            got = [f for f in everything.values() if f["acts"]]
            # frames follow the sound: the loop (1 bar at 240 BPM: 1 s) moves 1/30 of itself per frame
            numbers = sorted(n for n in everything if "phase" in everything[n])
            steps = [(everything[b]["phase"] - everything[a]["phase"]) % 1.0 for a, b in zip(numbers, numbers[1:]) if b == a + 1]
            assert np.mean(np.abs(np.array(steps) - 1 / 30) < 0.004) >= 0.9, steps
            expect = loop_activations(load_ear(ear_dir).ear, heard.samples, context=1)
            checked = 0
            for f in got:
                assert f["step"][0] == engine.dream.last["step"]
                for tap, a in f["acts"].items():
                    c, fr, t = expect[tap].shape
                    x = f["phase"] * t
                    if abs(x - round(x)) < 1e-3:
                        continue  # on a step boundary
                    column = expect[tap][:, :, int(x) % t].reshape(-1)
                    if a.size < column.size:
                        continue  # its last datagram was lost (UDP on a loaded machine); many others are checked
                    assert np.allclose(a, column, rtol=1e-3, atol=1e-4 * np.abs(expect[tap]).max()), (tap, f["phase"])
                    checked += 1
            assert checked >= 30
            # the target mask marks the target's channels
            # (masks are repeated: a copy recorded only in part does not count)
            cells = {tap: a.shape[0] * a.shape[1] for tap, a in expect.items()}
            assert rx.wait_for(lambda r: "enc.5" in arrays(r.items, "/stream/mask/", cells), 5)
            mask = arrays(rx.items, "/stream/mask/", cells)["enc.5"].reshape(expect["enc.5"].shape[:2])
            assert mask[1:3].all() and not mask[0].any() and not mask[3:].any()
            # a new ear's layout is computed once, cached (not in the ear's folder), and sent to the destination
            twice = {tap: 2 * n for tap, n in cells.items()}
            assert rx.wait_for(lambda r: len(arrays(r.items, "/stream/layout/", twice)) == 18, 150)  # niced: slow when busy
            layout = arrays(rx.items, "/stream/layout/", twice)
            assert layout["enc.5"].size == 2 * expect["enc.5"].shape[0] * expect["enc.5"].shape[1]
            assert not (ear_dir / "layout.json").exists() and read_cached_layout(ear_dir) is not None
            _, listing = peer.ask("/stream/list", reply="/stream/list.reply")
            assert listing == (rx.dest,)
            peer.send("/stream/remove", rx.dest)
            peer.ask("/sync", 1, reply="/synced")
            made = engine.streams.frame  # frames numbered below were made before the removal
            time.sleep(0.5)  # deliberately: half a second of frames that must not come
            after = {args[0] for _, _, a, args in rx.items if a == "/stream/phase" and args[0] >= made}
            assert after == set(), after  # nothing made once removed (one already on its way may land)
        finally:
            peer.close()
            rx.close()
