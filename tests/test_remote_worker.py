"""The worker on another machine: the wire's schema and keys, and engine + worker server as two
processes on loopback (a loop dreamed there plays here; wrong keys and bad frames are refused and
change nothing; a worker killed and started again is followed, the last loop sounding meanwhile)."""

from __future__ import annotations

import os
import re

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from earengine.cli import main
from earengine.engine import Engine, EngineConfig
from earengine.errors import ParameterError
from earengine.worker.messages import Ready, Reset, Settings, StreamActivations
from earengine.worker.remote import WorkerServer
from earengine.worker.wire import (
    FROM_WORKER,
    MAX_SAMPLES,
    TO_WORKER,
    StreamView,
    WireError,
    decode,
    encode,
    floats_to_bytes,
    new_secret,
    read_secret,
)
from tests.helpers.osc import Peer
from tests.helpers.worker_server import WorkerProcess as Server
from tests.helpers.waits import wait_until



# -- the schema -----------------------------------------------------------------------------------
def test_every_message_round_trips_through_its_schema():
    x = np.linspace(-1, 1, 100, dtype=np.float32)
    kind, fields = decode(encode("reset", kind="file", samples=floats_to_bytes(x)), TO_WORKER)
    assert kind == "reset" and np.array_equal(fields["samples"], x)
    assert decode(encode("settings", values={"/opt/lr": 0.01, "/opt/run": True, "/target/spec": "enc.2"}),
                  TO_WORKER)[1]["values"] == {"/opt/lr": 0.01, "/opt/run": True, "/target/spec": "enc.2"}
    acts = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    frame = encode("loop", seq=3, samples=floats_to_bytes(x), notes=None,
                   stats={"step": 5, "bars": 1, "sr": 16000, "loss": -1.0, "target": 1.0, "steps_per_s": 4.0, "settled": 0.5},
                   acts={"enc.0": [2, 3, 3, 4, acts.astype("<f2").tobytes()]},
                   mask={"enc.0": [2, 3, np.eye(2, 3, dtype=np.uint8).tobytes()]})
    kind, loop = decode(frame, FROM_WORKER)
    assert loop["seq"] == 3 and loop["stats"]["sr"] == 16000 and np.array_equal(loop["acts"]["enc.0"], acts)
    assert loop["mask"]["enc.0"].tolist() == [[True, False, False], [False, True, False]]


@pytest.mark.parametrize("frame, why", [
    (encode("want", after=-1), "type"),  # out of range
    (encode("want", after="3"), "type"),  # wrong type
    (encode("streams", on=1), "type"),  # an int is no bool
    (encode("settings", values={"/opt/lr": float("nan")}), "type"),
    (encode("settings", values={"/opt/lr": [1, 2]}), "type"),
    (encode("reset", kind="file", samples=b"\0" * 6), "type"),  # not whole float32
    (encode("reset", kind="file", samples=floats_to_bytes(np.array([np.nan], np.float32))), "type"),
    (encode("reset", kind="file", samples=b"\0" * 4 * (MAX_SAMPLES + 1)), "size"),
    (encode("settings", values={f"/a/{i}": 1 for i in range(600)}), "size"),
    (encode("hello", extra=1), "type"),  # unknown field
    (encode("loop", seq=1), "type"),  # the worker's message, sent to the worker
    (msgpack.packb({"v": 1, "t": "hello"}), "type"),  # another schema version
    (msgpack.packb({"v": 2, "t": "hello", "x": msgpack.ExtType(1, b"x")}), "type"),
    (msgpack.packb([1, 2]), "type"),
    (encode("ping", t0=1.0)[:-3], "type"),  # truncated
])
def test_bad_frames_are_refused_for_size_or_type(frame, why):
    with pytest.raises(WireError) as caught:
        decode(frame, TO_WORKER)
    assert caught.value.why == why, str(caught.value)


class _Socket:
    """What the server sends, kept (the unit tests' stand-in for its ZeroMQ socket)."""

    def __init__(self):
        self.sent = []

    def send_multipart(self, frames, flags=0):
        self.sent.append(frames)


def _bare_server():
    server = WorkerServer("127.0.0.1", 0, "no-ear", say=lambda line: None)
    server.outlet.ready = Ready(("enc.0",), {"enc.0": [2, 3, 4]})
    server._sock = _Socket()
    return server


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300),
                 st.builds(lambda f, n: f[:n], st.sampled_from([encode("ping", t0=1.5), encode("want", after=2),
                                                                 encode("settings", values={"/opt/lr": 0.1})]),
                           st.integers(0, 40)),
                 st.lists(st.binary(max_size=20), min_size=0, max_size=4)))
def test_garbage_truncated_or_split_frames_never_crash_the_server(data):
    server = _bare_server()
    frames = [b"peer", data] if isinstance(data, bytes) else [b"peer", *data]
    server._frame(frames)  # never raises
    refused = server.counts["frames_refused_size"] + server.counts["frames_refused_type"]
    applied = server.inbox.qsize() + len(server._sock.sent) + (server._want is not None)
    assert refused + applied == 1  # each frame is either refused (and counted) or used


def test_a_good_frame_reaches_the_dream_and_nothing_else_does():
    server = _bare_server()
    server._frame([b"peer", encode("settings", values={"/opt/lr": 0.1})])
    server._frame([b"peer", encode("streams", **StreamView(True, ("enc.0",), "channel", 30.0).to_fields())])
    server._frame([b"peer", encode("reset", kind="noise", samples=None)])
    got = [server.inbox.get_nowait() for _ in range(3)]
    assert got[0] == Settings({"/opt/lr": 0.1}) and got[1] == StreamActivations("wire")
    assert isinstance(got[2], Reset) and got[2].kind == "noise"
    server._frame([b"peer", encode("hello")])
    kind, ready = decode(server._sock.sent[-1][1], FROM_WORKER)
    assert kind == "ready" and ready["taps"] == ["enc.0"] and ready["shapes"] == {"enc.0": [2, 3, 4]}


# -- keys and refusals at start ---------------------------------------------------------------------
def test_a_new_secret_is_readable_by_its_owner_only_and_never_overwritten(tmp_path, capsys):
    path = tmp_path / "worker.key"
    assert main(["worker", "--new-secret", str(path)]) == 0
    assert os.stat(path).st_mode & 0o777 == 0o600
    secret = read_secret(path)
    assert secret.client_public != secret.server_public and "secret" not in repr(secret).replace("Secret(", "")
    assert main(["worker", "--new-secret", str(path)]) == 2
    assert "exists" in capsys.readouterr().err
    os.chmod(path, 0o644)
    with pytest.raises(ParameterError, match="chmod 600"):
        read_secret(path)


def test_serving_or_connecting_beyond_loopback_without_keys_is_refused_in_one_line(tmp_path, capsys):
    assert main(["worker", "--listen", "0.0.0.0:5555"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--secret-file" in err and "0.0.0.0" in err
    with pytest.raises(ParameterError, match="--secret-file"):
        EngineConfig(audio="offline", worker="192.0.2.7:5555")
    with pytest.raises(ParameterError, match="HOST:PORT"):
        EngineConfig(audio="offline", worker="gpu-box")
    EngineConfig(audio="offline", worker="127.0.0.1:5555")  # this machine: no keys needed


# -- two processes on loopback ----------------------------------------------------------------------
class _Lines:
    """The engine's console, kept."""

    def __init__(self, lines):
        self.lines = lines

    def write(self, text):
        self.lines.extend(line for line in text.splitlines() if line)

    def flush(self):
        pass


def _dealer(port, secret, *, client=None):
    import zmq

    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    public, private = client or (secret.client_public, secret.client_secret)
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, private, secret.server_public
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


@pytest.mark.integration
@pytest.mark.slow
def test_a_remote_dream_plays_refuses_strangers_and_bad_frames_and_outlives_its_worker(tiny_ear_dir, tmp_path):
    import zmq

    key = tmp_path / "worker.key"
    secret = new_secret(key)
    server = Server(tiny_ear_dir, key)
    values = {"/loop/bars": 1, "/clock/bpm": 240.0, "/target/layer": "enc.2", "/target/channel_width": 1.0}
    config = EngineConfig(audio="offline", osc_port=0, ear=tiny_ear_dir, overrides=values, preset_dir=tmp_path,
                          worker=f"127.0.0.1:{server.port}", secret_file=key)
    lines = []
    try:
        with Engine(config, out=_Lines(lines)) as engine:
            peer = Peer(engine.osc.address)
            sr = engine.audio.sr

            def playing(loops):  # renders as it waits: offline audio moves the bar clock
                engine.audio.render(int(0.05 * sr))
                return engine.dream.loops >= loops and engine.player.loops_started >= 1

            # a loop dreamed remotely plays, and the status says where it comes from
            assert wait_until(lambda: playing(2), 90, step_s=0.05), (server.lines, lines)
            assert engine.player.current.source == "dream"
            _, status = peer.ask("/status", reply="/status.reply")
            assert re.match(r"(dreaming|paused), worker remote 127\.0\.0\.1:\d+, rtt \d+ ms", status[0]), status
            assert "worker remote" in engine.status_line()

            # a stranger's key is refused; what it sends changes nothing
            stranger = _dealer(server.port, secret, client=zmq.curve_keypair())
            stranger.send(encode("settings", values={"/opt/run": False}))
            assert wait_until(lambda: engine.counts()["worker_refused_peers"] >= 1, 20)
            stranger.close()
            # frames that are garbage, truncated, oversized or split, from the right key: refused,
            # counted, and the dream goes on
            insider = _dealer(server.port, secret)
            for frame in (b"\xc1garbage", encode("ping", t0=1.0)[:-2],
                          encode("reference", samples=b"\0" * 4 * (MAX_SAMPLES + 1)), encode("want", after=-5)):
                insider.send(frame)
            insider.send_multipart([b"a", b"b"])
            counts = engine.counts
            assert wait_until(lambda: counts()["worker_remote_frames_refused_size"] >= 1
                              and counts()["worker_remote_frames_refused_type"] >= 4, 20), counts()
            insider.close()
            loops = engine.dream.loops
            assert wait_until(lambda: playing(loops + 2), 30, step_s=0.05)
            assert engine.registry.get("/opt/run") and engine.dream.state == "dreaming"

            # the worker killed: the last loop keeps sounding; started again, the dream resumes
            server.kill()
            assert wait_until(lambda: engine.dream.state == "link down", 10)
            engine.audio.render(sr)
            heard = engine.player.heard()
            assert engine.player.current.source == "dream" and np.abs(heard).max() > 0
            loops = engine.dream.loops
            server = Server(tiny_ear_dir, key, port=server.port)
            assert wait_until(lambda: playing(loops + 1), 60, step_s=0.05), (server.lines, lines)
            assert engine.dream.restarts == 1 and engine.counts()["worker_reconnects"] >= 1
            assert any("restarted" in line for line in lines)
            peer.close()
    finally:
        server.close()
