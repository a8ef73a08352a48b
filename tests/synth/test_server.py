"""The audio server's modes: each row says how pyo starts and what paces it, and acts so."""

from __future__ import annotations

import pytest

from earengine.errors import DeviceError, ParameterError
from earengine.synth.server import AUTO, DEVICES, MODES, AudioServer, resolve_mode
from tests.helpers.waits import wait_until


def test_every_choice_resolves_and_a_stray_one_is_refused_in_one_line():
    assert MODES == ("auto", "jack", "portaudio", "offline", "null")
    for mode in DEVICES:
        assert resolve_mode(mode) == (mode, f"audio: {mode} (as asked)")
    assert resolve_mode("auto")[0] in DEVICES and AUTO[-1][1]()  # auto always lands somewhere
    with pytest.raises(ParameterError, match="--audio=wave must be one of auto, jack"):
        resolve_mode("wave")


def test_offline_renders_on_demand_and_null_keeps_time_by_itself():
    with AudioServer("offline", sr=44100, buffersize=256) as offline:
        assert not offline.realtime
        offline.render(44100)
        assert offline.buffers == 173  # ceil(44100 / 256): nothing sounds unless asked
    with AudioServer("null", sr=44100, buffersize=256) as null:
        assert null.realtime
        with pytest.raises(DeviceError, match="needs --audio offline"):
            null.render(256)
        assert wait_until(lambda: null.buffers >= 20)  # its pacer asks for buffers on its own
        assert null.xruns == 0  # a paced mode catches up; it never counts a late buffer


def test_a_device_with_deadlines_freezes_the_start_up_heap_and_a_paced_one_does_not():
    """pyo holds the interpreter lock for every buffer: a real-time device's start-up heap is
    frozen so that no collection walks it again while the audio waits (settle_heap)."""
    import gc

    gc.unfreeze()
    try:
        AudioServer("null").settle_heap()  # paced: a late buffer is caught up, nothing to freeze for
        assert gc.get_freeze_count() == 0
        AudioServer("jack").settle_heap()  # constructed only: the heap is what this process holds now
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
