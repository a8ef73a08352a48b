"""Shared settings and strategies of the fuzz suite (Hypothesis).

Every boundary decoder is given well-formed input, input cut short, input with wrong sizes and
plain garbage; each must raise nothing but its own refusal, leave the state unchanged or validly
changed, and give a reason for every refusal. The examples are drawn derandomized (the same on
every run, so CI is stable) and bounded, so the whole suite runs in well under a minute.
"""

import math
import struct
import time

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from earengine.osc.wire import encode_bundle, encode_message, osc_string
from earengine.params.catalog import COMMANDS, PARAMS


def fuzz(max_examples: int):
    """Settings for one fuzz test: ``max_examples`` derandomized examples, no deadline."""
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


ADDRESSES = tuple(p.address for p in PARAMS) + tuple(c.address for c in COMMANDS)

#: OSC arguments of every type the engine reads (and some it does not: bools, None, doubles...)
osc_args = st.lists(st.one_of(
    st.integers(-2**31, 2**31 - 1),
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.sampled_from([True, False]),
), max_size=5)

osc_address = st.one_of(st.sampled_from(ADDRESSES), st.text(max_size=30).map(lambda t: "/" + t))


@st.composite
def osc_message(draw) -> bytes:
    """A message: well formed by our encoder, or with type tags our encoder never writes."""
    address, args = draw(osc_address), draw(osc_args)
    if draw(st.booleans()):
        return encode_message(address, args)
    # raw type tags: T F N I (no payload), h t d (8 bytes), c r m (4 bytes), unknown letters
    tags = draw(st.text(alphabet="ifsbTFNIhtdcrmS[]xq", max_size=6))
    payload = b"".join(draw(st.binary(min_size=0, max_size=12)) for _ in tags)
    return osc_string(address.encode("utf-8", "replace")) + osc_string(("," + tags).encode()) + payload


def timetags():
    """None (immediately), the past, now, soon, beyond the horizon, and the extremes of NTP time."""
    return st.one_of(st.none(), st.floats(-3e9, 5e9, allow_nan=False),
                     st.sampled_from(["past", "soon", "far", "zero", "max"]))


def _unix(tag, now=None):
    now = time.time() if now is None else now
    if tag is None or isinstance(tag, float):
        return tag
    return {"past": now - 5.0, "soon": now + 0.05, "far": now + 1e8, "zero": -2208988800.0,
            "max": 4294967295.0 - 2208988800.0}[tag]


@st.composite
def osc_bundle(draw, depth: int = 3, now=None) -> bytes:
    """A bundle of messages and nested bundles (a nested one may even come before its parent)."""
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        if depth > 0 and draw(st.booleans()):
            parts.append(draw(osc_bundle(depth=depth - 1, now=now)))
        else:
            parts.append(draw(osc_message()))
    when = _unix(draw(timetags()), now)
    try:
        return encode_bundle(when, parts)
    except (struct.error, OverflowError):  # a time NTP cannot carry: send the extreme tag
        return b"#bundle\x00" + b"\xff" * 8 + b"".join(struct.pack(">i", len(p)) + p for p in parts)


@st.composite
def mutated(draw, packets) -> bytes:
    """A packet, then maybe cut short, with a byte changed, or with an element size lying."""
    data = bytearray(draw(packets))
    how = draw(st.sampled_from(["as is", "truncate", "flip", "size", "append"]))
    if how == "truncate" and data:
        del data[draw(st.integers(0, len(data) - 1)):]
    elif how == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    elif how == "size" and data.startswith(b"#bundle") and len(data) >= 20:
        data[16:20] = struct.pack(">i", draw(st.sampled_from([-1, 0, 3, 2**31 - 1, len(data)])))
    elif how == "append":
        data += draw(st.binary(max_size=16))
    return bytes(data)


osc_packets = st.one_of(mutated(osc_message()), mutated(osc_bundle()), st.binary(max_size=200),
                        st.binary(max_size=40).map(lambda b: b"#bundle\x00" + b))


def registry_is_valid(registry) -> list:
    """Addresses whose value does not validate against its own row (should be none)."""
    bad = []
    for spec in registry:
        value = registry.get(spec.address)
        try:
            spec.validate((value,))
        except ValueError:
            bad.append((spec.address, value))
        if isinstance(value, float) and not math.isfinite(value):
            bad.append((spec.address, value))
    return bad
