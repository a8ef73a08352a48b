"""The remote worker's link cut: engine and ``earengine worker --listen`` as two processes on
loopback, through a relay (tests.helpers.relay) that adds a venue's delay and rate and is cut for
5 s. The last good loop keeps playing all along; the engine reconnects, sends its settings again
(a loop length changed during the cut is the one dreamed after it), and new loops come again."""

from __future__ import annotations

import time

import numpy as np
import pytest

from earengine.engine import Engine, EngineConfig
from earengine.worker.wire import new_secret
from tests.helpers.relay import Relay
from tests.helpers.waits import wait_until
from tests.helpers.worker_server import WorkerProcess as Server
from tests.test_remote_worker import _Lines


def _watch_player(engine, seconds: float) -> list[tuple]:
    """What the player does every 50 ms for ``seconds``: (a dreamed loop is current, the clock
    plays, unmuted, the loop's peak, its read position)."""
    player, seen = engine.player, []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        loop = player.current
        seen.append((loop is not None and loop.source == "dream", player.clock.playing,
                     not engine.registry.get("/loop/mute"), float(np.abs(loop.samples).max()) if loop else 0.0,
                     player.phase))
        time.sleep(0.05)
    return seen


@pytest.mark.integration
@pytest.mark.slow
def test_a_link_cut_for_5_s_keeps_the_last_loop_playing_and_the_dream_comes_back(tiny_ear_dir, tmp_path):
    key = tmp_path / "worker.key"
    new_secret(key)
    server = Server(tiny_ear_dir, key)
    relay = Relay(server.port, delay_s=0.025, bits_per_s=20e6)
    values = {"/loop/bars": 1, "/clock/bpm": 240.0, "/target/layer": "enc.2", "/target/channel_width": 1.0}
    config = EngineConfig(audio="null", osc_port=0, oscquery_port=None, stream_ws_port=None, ear=tiny_ear_dir,
                          overrides=values, preset_dir=tmp_path, worker=f"127.0.0.1:{relay.port}", secret_file=key)
    lines = []
    try:
        with Engine(config, out=_Lines(lines)) as engine:
            player = engine.player
            assert wait_until(lambda: engine.dream.loops >= 2 and player.loops_started >= 1, 90), (server.lines, lines)
            connections = relay.connections

            relay.cut()
            assert wait_until(lambda: engine.dream.state == "link down", 10), lines
            assert any("link" in line and "dropped" in line for line in lines)
            engine.registry.set("/loop/bars", 2)  # while the link is down: sent again when it is back
            loops = engine.dream.loops
            seen = _watch_player(engine, 5.0)
            # the sound never stopped: a dreamed, audible loop was current at every look, the
            # clock ran, and the loop's read position moved on
            assert all(dream and playing and unmuted and peak > 0 for dream, playing, unmuted, peak, _ in seen), seen
            assert len({round(phase, 3) for *_, phase in seen}) > len(seen) // 2
            assert engine.dream.loops == loops  # nothing came through a cut link

            relay.restore()
            # reconnected, the settings sent again: the next loops are dreamed two bars long
            assert wait_until(lambda: engine.dream.loops > loops, 20), (server.lines, lines)
            assert wait_until(lambda: player.current is not None and player.current.source == "dream"
                              and player.current.bars == 2, 20), lines
            assert relay.connections > connections and engine.counts()["worker_reconnects"] >= 1
            assert engine.dream.restarts == 0 and engine.dream.state == "dreaming"
    finally:
        relay.close()
        server.close()
