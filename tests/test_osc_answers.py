"""One reply rule for every command row, over a real UDP socket to an engine: a command answers
``/done <address>`` once it has done its work, a query its own reply, data rows nothing (as
scsynth's ``/b_setn``); setting a parameter is silent."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from earengine.audiofile import write_wav
from earengine.params.catalog import COMMANDS

#: Commands whose work needs an ear (a dreaming engine): this engine has none, so they are refused
#: with the reason; their /done is checked where a dream runs (tests/optvis/test_dream_engine.py,
#: test_grid_engine.py) and comes from the same place as every other command's (OscRouter.answer).
#: Commands this engine (no ear, no worker, no --input) refuses with /fail: checked that they do.
NEEDS_AN_EAR = {"/opt/reset", "/reg/reference", "/loop/save_midi", "/stream/layout", "/loop/capture"}


def walk(tmp_path, stream_dest: str) -> list[tuple[str, tuple]]:
    """Every command row with valid arguments, in an order where each can do its work."""
    loop = tmp_path / "loop.wav"
    t = np.arange(44100) / 44100
    write_wav(str(loop), (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr=44100)
    return [
        ("/target/set", ("enc.5:12",)), ("/target/add", ("ar.3", 0.5)), ("/target/clear", ()),
        ("/opt/reset", ("noise",)), ("/reg/reference", ()),
        ("/loop/load", (str(loop),)), ("/loop/save", (str(tmp_path / "saved.wav"),)),
        ("/preset/save", ("walk",)), ("/preset/load", ("walk",)), ("/preset/list", ()),
        ("/get", ("/loop/gain",)), ("/status", ()), ("/notify", (0,)), ("/sync", (7,)), ("/reply/port", (0,)),
        ("/son/begin", ("walk", 2)), ("/son/frame", ("walk", 1, 0.5, 0.25)),
        ("/son/part", ("walk", 2, 0, 2, 0.5, 0.25)), ("/son/nan", ("walk", 3, 1)), ("/son/mute", ("walk", 1)),
        ("/son/solo", ("walk", 0)), ("/son/runs", ()), ("/son/end", ("walk",)),
        ("/midi/learn", ("/loop/gain",)), ("/midi/cancel", ()), ("/midi/forget", ("/loop/gain",)),
        ("/midi/clear", ()), ("/midi/save", ("walk",)), ("/midi/load", ("walk",)), ("/midi/maps", ()),
        ("/midi/bindings", ()), ("/midi/ports", ()),
        ("/stream/add", (stream_dest,)), ("/stream/list", ()), ("/stream/layout", ()),
        ("/stream/remove", (stream_dest,)), ("/loop/save_midi", (str(tmp_path / "loop.mid"),)), ("/counts", ()),
        ("/loop/capture", (1,)),
    ]


def test_every_command_row_answers_done_or_its_reply_and_data_rows_nothing(engine, peer, tmp_path):
    rows = {c.address: c for c in COMMANDS}
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # where the stream goes
    receiver.bind(("127.0.0.1", 0))
    try:
        messages = walk(tmp_path, f"127.0.0.1:{receiver.getsockname()[1]}")
        assert sorted(a for a, _ in messages) == sorted(rows), "a command row without valid arguments here"
        for n, (address, args) in enumerate(messages):
            row = rows[address]
            want = args[0] if row.reply == "<address>" else row.answers
            peer.send(address, *args)
            if not want:  # data: nothing comes back, not even a /fail, before the /sync after it
                peer.send("/sync", 1000 + n)
                got = peer.replies(10.0, until=lambda a, g: a == "/synced" and g == (1000 + n,))
                assert got[-1] == ("/synced", (1000 + n,)) and [a for a, _ in got[:-1]] == [], (address, got)
                continue
            got = peer.replies(30.0, until=lambda a, g: a == "/fail" or (a == want and (want != "/done" or g == (address,))))
            assert got, f"{address} answered nothing"
            if address in NEEDS_AN_EAR:
                assert got[-1][0] == "/fail" and got[-1][1][0] == address, got
                continue
            assert got[-1][0] == want, (address, got[-1])
            if want == "/done":
                assert got[-1][1] == (address,)
            if address == "/loop/load":
                engine.audio.render(3 * engine.audio.sr)  # past the next bar line: the loop plays
        assert (tmp_path / "saved.wav").stat().st_size > 44100  # /done came once the work was done
    finally:
        receiver.close()


def test_setting_a_parameter_stays_silent(engine, peer):
    peer.send("/loop/gain", -6.0)
    assert peer.ask("/sync", 1, reply="/synced") == ("/synced", (1,))  # and nothing before it
    assert engine.registry.get("/loop/gain") == -6.0


@pytest.mark.parametrize("address", ["/stream/remove", "/son/end"])
def test_the_commands_that_were_silent_answer_done(engine, peer, address):
    if address == "/son/end":
        peer.ask("/son/begin", "r", 1, reply="/son/pace")
        args = ("r",)
    else:
        args = ("all",)
    assert peer.ask(address, *args, reply="/done") == ("/done", (address,))
