"""A WebSocket receiver that never reads: the others get every frame on time, the engine's memory
stays bounded (the slow one loses its oldest frames), and the drops are counted in /counts."""

import base64
import os
import socket
import time

import numpy as np
import pytest

from earengine.osc.wire import encode_message
from earengine.control.osc import OscRouter
from earengine.streams.hub import StreamHub
from earengine.streams.position import Position
from earengine.streams.websocket import WS_FRAMES, WebSocketStreams
from earengine.params import default_registry
from earengine.streams.activations import ActivationSet

pytestmark = pytest.mark.integration

FPS = 60.0
# raw frames of about 130 KB: at 60 frames/s a receiver that never reads owes 8 MB/s
SHAPES = {"enc.3": (256, 128, 10), "ar.8": (64, 1, 11)}


def rss_mb():
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0


def activation_set(key):
    rng = np.random.default_rng(0)
    acts = {tap: rng.standard_normal(shape).astype(np.float32) for tap, shape in SHAPES.items()}
    return ActivationSet(key=key, step=1, loss=-1.0, acts=acts, mask={})


def never_reads(address):
    """A WebSocket client that shakes hands and then never reads again, with a tiny receive
    buffer, as a frozen browser tab would."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(address)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET / HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # one byte at a time: nothing after the headers is read
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def test_a_receiver_that_never_reads_stalls_nobody_and_costs_bounded_memory():
    from websockets.sync.client import connect

    registry = default_registry()
    registry.update({"/stream/fps": FPS, "/stream/reduce": "raw", "/stream/layers": "enc.3 ar.8"})
    pos = Position(time.time(), 0.0, 2.0, key=1, acts=activation_set(1))
    with StreamHub(registry, position=lambda: pos) as hub, WebSocketStreams(hub, port=0) as ws:
        router = OscRouter(registry)
        router.count_sources.append(hub.all_counts)
        slow = never_reads(ws.address)
        try:
            with connect("ws://%s:%d" % ws.address, max_size=None) as good:
                # let the slow one's kernel buffers fill, then measure
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline:
                    good.recv(timeout=5)
                rss0, got, t0 = rss_mb(), 0, time.monotonic()
                while time.monotonic() - t0 < 4.0:
                    got += len(good.recv(timeout=5)) > 100_000  # a whole frame (not decoded: too slow in Python)
                elapsed = time.monotonic() - t0
                growth = rss_mb() - rss0
            counts = ws.counts()
            waiting = ws.waiting()
        finally:
            slow.close()
        # the good receiver kept its rate (a busy 2-core machine may skip a few frames)
        assert got >= 0.6 * FPS * elapsed, (got, elapsed)
        # the slow one lost its oldest frames, counted, and never owed more than WS_FRAMES
        assert counts["ws_frames_dropped"] > 0.5 * FPS * elapsed
        assert waiting <= WS_FRAMES
        # 4 s of frames for it is 30 MB; bounded, the engine holds a few frames at most
        assert growth < 10.0, growth
        (reply,) = router.handle_datagram(encode_message("/counts"), ("127.0.0.1", 1))
        named = dict(zip(reply.args[::2], reply.args[1::2]))
        assert named["ws_frames_dropped"] >= counts["ws_frames_dropped"] and named["stream_frames"] > 0
        router.close()


def test_closing_cuts_off_a_send_blocked_on_a_receiver_that_never_reads():
    registry = default_registry()
    registry.update({"/stream/fps": FPS, "/stream/reduce": "raw", "/stream/layers": "enc.3"})
    pos = Position(time.time(), 0.0, 2.0, key=1, acts=activation_set(1))
    with StreamHub(registry, position=lambda: pos) as hub:
        ws = WebSocketStreams(hub, port=0)
        slow = never_reads(ws.address)
        try:
            deadline = time.monotonic() + 10
            while ws.counts()["ws_frames_dropped"] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)  # its sending thread is blocked in a send by now
            t0 = time.monotonic()
            ws.close()
            assert time.monotonic() - t0 < 5.0
            deadline = time.monotonic() + 5
            while ws.count() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert ws.count() == 0  # its thread has ended
        finally:
            slow.close()
