"""The Pure Data patch, run by a real ``pd -nogui``: it sets parameters on a running engine, asks
for a stream and receives its frames (phase and activations) in order."""

import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from earengine.engine import Engine, EngineConfig
from earengine.synth.player import Loop
from earengine.streams.activations import ActivationSet
from tests.helpers.osc import wait_for

pytestmark = pytest.mark.integration
PATCH = Path(__file__).resolve().parents[2] / "patches" / "puredata" / "earengine.pd"


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port




def test_pd_sets_parameters_and_receives_stream_frames(tmp_path):
    if shutil.which("pd") is None:
        pytest.skip("pd not found: install Debian's puredata-core (apt-get install puredata-core) for this test")
    with Engine(EngineConfig(audio="null", osc_port=0, preset_dir=tmp_path), out=open(os.devnull, "w")) as engine:
        # a loop playing, with activations the streams can cut frames from
        rng = np.random.default_rng(0)
        acts = {"enc.5": rng.uniform(0, 3, (6, 4, 8)).astype(np.float32)}
        samples = (0.1 * np.sin(np.arange(88200) * 2 * np.pi * 220 / 44100)).astype(np.float32)
        engine.player.queue(Loop(samples, engine.audio.sr, 1, "test",
                                 meta={"key": 7, "acts": ActivationSet(key=7, step=3, loss=-0.5, acts=acts)}))
        listen = free_udp_port()
        cmd = ["pd", "-nogui", "-stderr", "-noaudio", "-nomidi", "-noprefs",
               "-send", f"earengine-port {engine.osc.address[1]}", "-send", "earengine-verbose 1",
               "-send", f"earengine-listen {listen}", "-send", "earengine-bpm 133",
               "-send", "earengine-gain -12", "-send", "earengine-fps 20", "-open", str(PATCH)]
        pd = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(iter(pd.stdout.readline, "")), daemon=True)
        reader.start()
        try:
            # parameters set from the patch's controls
            assert wait_for(lambda: engine.registry.get("/clock/bpm") == 133.0, 10), lines
            assert wait_for(lambda: engine.registry.get("/loop/gain") == -12.0 and engine.registry.get("/stream/fps") == 20.0, 5)
            assert wait_for(lambda: engine.registry.get("/stream/layers") == "enc.5", 5), lines
            assert wait_for(lambda: f"127.0.0.1:{listen}" in engine.streams.destinations(), 5), lines
            # frames received: phase lines and activation parts, frame numbers rising
            assert wait_for(lambda: sum("earengine: act enc.5" in x for x in lines) >= 20, 10), lines[-20:]
        finally:
            pd.terminate()
            pd.wait(timeout=5)
        frames = [int(m.group(1)) for m in (re.match(r"earengine: frame (\d+) ", x) for x in lines) if m]
        parts = [tuple(int(v) for v in m.groups()) for m in (re.match(r"earengine: act enc\.5 (\d+) (\d+) (\d+)", x) for x in lines) if m]
        assert len(frames) >= 20 and frames == sorted(frames)
        assert all(start == 0 and count == 6 for _, start, count in parts)  # one value per channel
        assert not [x for x in lines if x.startswith("error") or "couldn't create" in x], lines
