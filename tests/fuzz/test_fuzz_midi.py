"""Fuzzing MIDI at the boundary: byte streams (running status, realtime bytes inside messages,
SysEx, cut short, garbage) through the parser, and whatever comes out through a controller map.
Nothing escapes and every parameter keeps a valid value."""

from hypothesis import given
from hypothesis import strategies as st

from earengine.midi.bindings import MapStore
from earengine.midi.control import MidiControl
from earengine.midi.wire import DATA_BYTES, SYSTEM_BYTES, MidiParser
from earengine.params import default_registry
from tests.helpers.fuzz import fuzz, registry_is_valid

data_byte = st.integers(0, 127)


@st.composite
def channel_message(draw):
    status = draw(st.sampled_from(sorted(DATA_BYTES))) | draw(st.integers(0, 15))
    return (status,) + tuple(draw(data_byte) for _ in range(DATA_BYTES[status & 0xF0]))


@st.composite
def stream(draw):
    """Channel messages (written with running status where it applies), with realtime bytes
    anywhere and SysEx blocks between them; returns (bytes, the channel messages in order)."""
    out, messages, running = [], [], None
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["channel", "channel", "realtime", "sysex", "common"]))
        if kind == "channel":
            msg = draw(channel_message())
            body = list(msg[1:]) if msg[0] == running and draw(st.booleans()) else list(msg)
            running = msg[0]
            for byte in body:  # a clock byte may come between any two
                if draw(st.integers(0, 5)) == 0:
                    out.append(0xF8)
                out.append(byte)
            messages.append(msg)
        elif kind == "realtime":
            out.append(draw(st.sampled_from([0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF])))
        elif kind == "sysex":
            out += [0xF0, *draw(st.lists(data_byte, max_size=20)), 0xF7]
            running = None
        else:
            status = draw(st.sampled_from(sorted(SYSTEM_BYTES)))
            out += [status, *(draw(data_byte) for _ in range(SYSTEM_BYTES[status]))]
            running = None
    return bytes(out), messages


def well_formed(msg):
    status = msg[0]
    if not 0x80 <= status <= 0xFF or any(not 0 <= b < 0x80 for b in msg[1:]):
        return False
    if status >= 0xF8:
        return len(msg) == 1
    if status >= 0xF0:
        return len(msg) == 1 + SYSTEM_BYTES.get(status, 0)
    return len(msg) == 1 + DATA_BYTES[status & 0xF0]


@fuzz(300)
@given(stream())
def test_running_status_realtime_and_sysex_parse_back_to_the_messages(sample):
    data, messages = sample
    out = MidiParser().feed(data)
    assert [m for m in out if m[0] < 0xF0] == messages
    assert all(well_formed(m) for m in out)


@fuzz(300)
@given(st.one_of(st.binary(max_size=300), stream().map(lambda s: s[0])), st.data())
def test_any_bytes_in_any_chunks_give_whole_messages_and_never_raise(data, draw):
    whole = MidiParser().feed(data)
    assert all(well_formed(m) for m in whole)
    # fed in pieces (as a port delivers them), the result is the same
    parser, pieces, i = MidiParser(), [], 0
    while i < len(data):
        n = draw.draw(st.integers(1, 16))
        pieces += parser.feed(data[i:i + n])
        i += n
    assert pieces == whole
    # cut short anywhere: what came out is the beginning of what the whole stream gives
    cut = draw.draw(st.integers(0, len(data)))
    assert whole[:len(MidiParser().feed(data[:cut]))] == MidiParser().feed(data[:cut])


@fuzz(100)
@given(st.lists(st.one_of(st.binary(max_size=3), st.lists(st.integers(-300, 300), max_size=4)), max_size=6))
def test_values_that_are_not_bytes_are_dropped(chunks):
    parser = MidiParser()
    for chunk in chunks:
        assert all(well_formed(m) for m in parser.feed(chunk))


def test_a_controller_map_turns_any_stream_into_valid_values_only():
    registry = default_registry()
    commands = []
    control = MidiControl(registry, dispatch=lambda address, args: commands.append((address, args)))
    control.set_bindings(MapStore().load("bcf2000", registry))
    assert control.bindings

    @fuzz(300)
    @given(st.one_of(st.binary(max_size=120), stream().map(lambda s: s[0])))
    def feed(data):
        for msg in MidiParser().feed(data):
            control.handle(msg)
        assert registry_is_valid(registry) == []
        assert control.counts["failed"] == 0

    try:
        feed()
    finally:
        control.close()
