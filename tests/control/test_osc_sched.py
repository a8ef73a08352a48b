"""The bounded scheduler of future-timetagged bundles, over real UDP sockets on loopback."""

import time

import pytest

from earengine.osc.wire import bundle_time, encode_bundle, encode_message
from earengine.control.jobs import JobQueue
from earengine.control.osc import OscRouter, OscServer
from earengine.control.params import FAIL_PER_S
from earengine.params import default_registry
from tests.helpers.osc import Peer, wait_for

pytestmark = pytest.mark.integration

YEAR_S = 365 * 24 * 3600.0


@pytest.fixture
def server():
    reg = default_registry()
    with JobQueue() as jobs:
        router = OscRouter(reg, jobs=jobs)
        with OscServer(router, port=0) as srv:
            yield srv
        router.close()


def bpm_bundle(when_s, bpm=101.0):
    return encode_bundle(when_s, [encode_message("/clock/bpm", (bpm,))])


def sync(peer, n=1):
    """Replies until ``/synced n``: everything sent before it has been handled."""
    peer.send("/sync", n)
    got = peer.replies(5.0, until=lambda a, args: a == "/synced" and args == (n,))
    assert got and got[-1] == ("/synced", (n,))
    return got


def next_datagram_bytes(sock):
    """Size of the next datagram waiting in ``sock``'s receive buffer; 0 when none waits."""
    import fcntl
    import struct
    import termios

    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def counts(peer):
    address, args = peer.ask("/counts", reply="/counts.reply")
    assert address == "/counts.reply" and len(args) % 2 == 0
    return dict(zip(args[::2], args[1::2]))


def test_a_bundle_beyond_the_horizon_is_refused_with_a_reason_and_changes_nothing(server, peer):
    reg = server.router.registry
    peer.send_raw(bpm_bundle(time.time() + 3 * YEAR_S))
    got = peer.replies(2.0, until=lambda a, _: a == "/fail")
    assert got and got[-1][0] == "/fail" and got[-1][1][0] == "#bundle"
    assert "/osc/horizon_s=60" in got[-1][1][1]
    assert reg.get("/clock/bpm") == 120.0
    c = counts(peer)
    assert c["refused_far"] == 1 and c["pending"] == 0 and c["scheduled"] == 0


def test_the_horizon_is_a_parameter(server, peer):
    peer.send("/osc/horizon_s", 0.2)
    peer.send_raw(bpm_bundle(time.time() + 1.0))
    sync(peer)
    assert server.counts["refused_far"] == 1
    peer.send_raw(bpm_bundle(time.time() + 0.1, 99.0))
    assert wait_for(lambda: server.router.registry.get("/clock/bpm") == 99.0, 2.0)
    assert server.counts["scheduled"] == 1


def test_a_full_scheduler_refuses_more_and_runs_what_it_holds(server, peer):
    reg = server.router.registry
    peer.send("/osc/sched_max", 3)
    due = time.time() + 0.5
    for k in range(5):
        peer.send_raw(bpm_bundle(due, 100.0 + k))
    fails = peer.replies(0.3, until=None)
    assert [a for a, _ in fails].count("/fail") == 2
    assert all(args[0] == "#bundle" and "/osc/sched_max=3" in args[1] for a, args in fails if a == "/fail")
    assert server.all_counts()["pending"] == 3
    # the three it holds run at their time, in the order they came
    assert wait_for(lambda: reg.get("/clock/bpm") == 102.0, 3.0)
    assert server.all_counts()["pending"] == 0
    assert server.counts["refused_full"] == 2 and server.counts["scheduled"] == 3


def test_late_bundles_run_at_once_and_are_counted(server, peer):
    peer.send_raw(bpm_bundle(time.time() - 2.0, 111.0))
    assert wait_for(lambda: server.router.registry.get("/clock/bpm") == 111.0, 2.0)
    assert counts(peer)["late"] == 1


def test_refusals_are_answered_at_a_bounded_rate_and_every_one_is_counted(server, peer):
    far = bpm_bundle(time.time() + YEAR_S)
    for _ in range(500):
        peer.send_raw(far)
    got = sync(peer)
    fails = [r for r in got if r[0] == "/fail"]
    c = server.all_counts()
    assert c["refused_far"] + c["dropped"] + c["kernel_dropped"] == 500  # every one accounted for
    assert 1 <= len(fails) <= 2 * FAIL_PER_S
    assert c["fail_unsent"] == c["refused_far"] - len(fails)


def test_a_flood_of_future_bundles_holds_no_more_than_the_bound(server, peer):
    peer.send("/osc/sched_max", 100)
    base = time.time() + 30.0
    for k in range(2000):
        peer.send_raw(bpm_bundle(base + k * 1e-3))
    sync(peer)
    c = server.all_counts()
    assert c["pending"] == 100 and c["scheduled"] == 100
    assert c["refused_full"] + c["dropped"] + c["kernel_dropped"] + c["scheduled"] == 2000


def test_bundle_time_reads_the_outer_timetag_without_decoding():
    assert abs(bundle_time(bpm_bundle(1_900_000_000.25)) - 1_900_000_000.25) < 1e-6
    assert bundle_time(bpm_bundle(None)) is None
    assert bundle_time(encode_message("/clock/bpm", (90.0,))) is None
    assert bundle_time(b"#bundle\x00\x00") is None


def test_the_inbox_drops_and_counts_beyond_its_byte_budget():
    reg = default_registry()
    router = OscRouter(reg)
    with OscServer(router, port=0, inbox_bytes=1) as srv:
        # hold the dispatcher (the first /notify waits for the router's lock): the rest pile up
        peer = Peer(srv.address)
        try:
            with router._lock:
                for _ in range(200):
                    peer.send("/notify", 1)
                assert wait_for(lambda: srv.all_counts()["dropped"] > 0, 10.0)
            assert wait_for(lambda: srv._in_bytes == srv._out_bytes, 2.0)  # the dispatcher has caught up
            assert peer.ask("/sync", 3, reply="/synced") == ("/synced", (3,))
            c = srv.all_counts()
            assert c["received"] + c["dropped"] == 201
        finally:
            peer.close()
    router.close()


def test_datagrams_the_kernel_drops_are_counted_too():
    """A flood while the receive thread cannot read (held here): the kernel's small buffer
    overflows, and /counts says how many datagrams the kernel dropped."""
    import socket as socketlib
    import threading

    class Held(OscServer):
        go = threading.Event()

        def _receive(self):
            self.go.wait(10)
            super()._receive()

    router = OscRouter(default_registry())
    with Held(router, port=0) as srv:
        srv._sock.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_RCVBUF, 4096)
        peer = Peer(srv.address)
        try:
            for _ in range(500):
                peer.send("/notify", 0)
            srv.go.set()
            # the few datagrams the small buffer kept are read at once; only then can /sync fit
            assert wait_for(lambda: srv.all_counts()["received"] > 0, 10.0)
            assert wait_for(lambda: next_datagram_bytes(srv._sock) == 0, 10.0)  # all read
            sync(peer)
            c = srv.all_counts()
            assert c["kernel_dropped"] > 0
            assert c["received"] + c["dropped"] + c["kernel_dropped"] == 501
        finally:
            peer.close()
    router.close()


def test_the_scheduler_holds_no_more_bytes_than_its_bound():
    """No sockets: the door of the scheduler, as the server uses it."""
    from earengine.control.bundles import FutureBundles
    from earengine.control.params import SCHED_MAX_BYTES

    sent = []
    future = FutureBundles(default_registry(), send=lambda *message: sent.append(message))
    try:
        size = 64 * 1024
        fit = SCHED_MAX_BYTES // size
        due = time.time() + 30.0
        assert all(future.hold(due, lambda: None, size=size) is None for _ in range(fit))
        why = future.hold(due, lambda: None, size=size)
        assert why is not None and f"({SCHED_MAX_BYTES})" in why
        assert len(future) == fit and future.counts["scheduled"] == fit and future.counts["refused_full"] == 1
        future.refuse(("127.0.0.1", 9), why)
        assert sent == [(("127.0.0.1", 9), "/fail", ("#bundle", why))]
    finally:
        future.close()
