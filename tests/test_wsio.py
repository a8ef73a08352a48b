"""The gate of the engine's HTTP/WebSocket servers, as a unit: which Host names and page origins
count as the engine's own, bound to loopback, to one interface or to all; what a request without
them gets; and that refusals are counted every time but said once, in bounded memory."""

import logging
import socket

import pytest

from earengine.wsio import LOGGED_MAX, Gate, _local_ips


def request(host=None, origin=None, upgrade=True):
    from websockets.datastructures import Headers
    from websockets.http11 import Request

    headers = Headers()
    if host is not None:
        headers["Host"] = host
    if origin is not None:
        headers["Origin"] = origin
    if upgrade:
        headers["Upgrade"] = "websocket"
    return Request("/", headers)


def a_local_ip():
    ips = sorted(ip for ip in _local_ips() if ":" not in ip and not ip.startswith("127."))
    if not ips:
        pytest.skip("this machine has no address but loopback")
    return ips[0]


def test_on_loopback_the_loopback_names_of_its_own_port_are_its_own():
    gate = Gate("127.0.0.1", 9001)
    for host in ("127.0.0.1:9001", "localhost:9001", "LOCALHOST:9001", "[::1]:9001"):
        assert gate.host_allowed(host), host
    for host in ("127.0.0.1:9002", "localhost", "rebound.example:9001", "127.0.0.1.nip.io:9001", "[::1]",
                 "localhost:9001/x", "user@localhost:9001", "localhost:http", ""):
        assert not gate.host_allowed(host), host
    assert gate.host_allowed(None)  # no Host: no browser sent it
    for origin in ("http://127.0.0.1:9001", "http://localhost:9001", "http://[::1]:9001"):
        assert gate.origin_allowed(origin), origin
    for origin in ("http://127.0.0.1:9002", "https://localhost:9001", "http://localhost", "null", "file://",
                   "http://evil.example:9001", "ws://localhost:9001", "", "http://localhost:99999"):
        assert not gate.origin_allowed(origin), origin
    assert gate.origin_allowed(None)  # a native client


def test_bound_to_one_interface_only_its_address_and_given_names_are_its_own():
    gate = Gate("192.0.2.10", 9001, names=["earengine.local"])
    assert gate.host_allowed("192.0.2.10:9001") and gate.host_allowed("earengine.local:9001")
    assert not gate.host_allowed("localhost:9001") and not gate.host_allowed("192.0.2.11:9001")
    assert gate.origin_allowed("http://earengine.local:9001") and not gate.origin_allowed("http://localhost:9001")


def test_bound_to_every_interface_any_address_of_this_machine_and_its_name_are_its_own():
    gate = Gate("0.0.0.0", 9001)
    ip = a_local_ip()
    name = socket.gethostname().lower()
    for host in (f"{ip}:9001", "127.0.0.1:9001", "localhost:9001", f"{name}:9001", f"{name}.local:9001"):
        assert gate.host_allowed(host), host
    # an address that is not this machine's is no name of it: a page elsewhere on that port
    assert not gate.host_allowed("203.0.113.7:9001") and not gate.origin_allowed("http://203.0.113.7:9001")
    assert gate.origin_allowed(f"http://{ip}:9001") and not gate.origin_allowed(f"http://{ip}:8000")


def test_allowed_origins_and_the_engines_other_pages_are_let_in():
    gate = Gate("127.0.0.1", 9002, allow_origins=["http://Studio.example:8080/"])
    assert gate.origin_allowed("http://studio.example:8080") and not gate.origin_allowed("http://studio.example:8081")
    assert gate.host_allowed("studio.example:9002")  # the allowed page's host may name this machine
    assert not gate.origin_allowed("http://localhost:9001")
    gate.trust_page_port(9001)  # the engine's own page, served on OSCQuery's port
    assert gate.origin_allowed("http://localhost:9001")
    assert not gate.host_allowed("localhost:9001")  # a request to this server still names its port


def test_check_refuses_with_403_and_lets_the_rest_through():
    gate = Gate("127.0.0.1", 9001)
    assert gate.check(None, request("127.0.0.1:9001")) is None
    assert gate.check(None, request("127.0.0.1:9001", "http://localhost:9001")) is None
    # a plain GET from a foreign page changes nothing: it is answered (without CORS, by the server)
    assert gate.check(None, request("127.0.0.1:9001", "http://evil.example", upgrade=False)) is None
    response = gate.check(None, request("127.0.0.1:9001", "http://evil.example"))
    assert response.status_code == 403 and b"--allow-origin http://evil.example" in response.body
    assert gate.check(None, request("rebound.example:9001", upgrade=False)).status_code == 403
    assert gate.counts() == {"origin_refused": 1, "host_refused": 1}


def test_refusals_are_counted_every_time_and_said_once_in_bounded_memory(caplog):
    caplog.set_level(logging.WARNING)
    log = logging.getLogger("earengine.test-gate")
    gate = Gate("127.0.0.1", 9001, log=log)
    for _ in range(3):
        gate.check(None, request(origin="http://evil.example"))
    for i in range(3 * LOGGED_MAX):
        gate.check(None, request(origin=f"http://evil{i}.example"))
    said = [r.getMessage() for r in caplog.records if r.name == log.name]
    assert gate.counts()["origin_refused"] == 3 + 3 * LOGGED_MAX
    assert sum("http://evil.example:" in line for line in said) == 1
    assert len(said) == LOGGED_MAX + 1  # one line each up to the limit, then one saying so
    assert "only counted" in said[-1]
    assert len(gate._logged) <= LOGGED_MAX + 1
