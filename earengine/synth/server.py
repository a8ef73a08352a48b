"""The audio server: pyo on JACK, PortAudio, or no device at all.

Modes (rows of :data:`DEVICES`, each saying how pyo starts and what paces it)
-----------------------------------------------------------------------------
``jack``       a running JACK server (never starts one).
``portaudio``  the default PortAudio output device.
``offline``    no device, no pacing: the caller renders buffers as fast as it likes
               (:meth:`AudioServer.render`), for tests and renders; ``earengine run --audio
               offline --duration S`` renders S seconds as fast as it can.
``null``       no device, still in real time: a thread paces pyo buffer by buffer.
``auto``       JACK if a server is running, else a PortAudio device, else ``null`` (:data:`AUTO`).

Per-buffer callbacks registered with :meth:`AudioServer.add_callback` run on the audio thread
before each buffer is computed; they must be short and must not block.
"""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from earengine.errors import ConfigError, DeviceError, ParameterError

os.environ.setdefault("PYO_GUI_WX", "0")  # headless: never look for wxPython

__all__ = ["AudioServer", "AudioMode", "DEVICES", "MODES", "AUTO", "resolve_mode"]

log = logging.getLogger("earengine.audio")
#: SCHED_FIFO priority the PortAudio audio thread asks for (below JACK's usual 70-95 and the
#: kernel's interrupt threads at 50: above every ordinary thread, below the system's own).
RT_PRIORITY = 40
#: SCHED_RR priority of the engine's other threads where its audio thread runs real-time: above
#: every ordinary thread, so that none of them is set aside while it holds Python's lock (which the
#: audio thread takes for every buffer), and below the audio thread (a JACK client's runs at
#: jackd's priority less 5, 5 at jackd's default; PortAudio's at RT_PRIORITY).
THREAD_PRIORITY = 1
#: How long (s) a thread of the engine holds Python's interpreter lock before it must hand it over
#: when another asks. The audio thread asks for it every buffer (its per-buffer callbacks are
#: Python); at Python's default, 5 ms, a busy thread (the streams, OSC, listening) can keep it
#: waiting most of a 256-sample buffer (5.8 ms), and JACK counts an xrun.
GIL_SWITCH_S = 0.0005


@dataclass(frozen=True)
class AudioMode:
    """How the server runs in one mode: one row of :data:`DEVICES`.

    Parameters
    ----------
    pyo_audio : str
        pyo's ``audio=`` backend (``manual``: pyo computes a buffer when asked).
    realtime : bool
        Buffers follow the wall clock (else the caller renders them, :meth:`AudioServer.render`).
    paced : bool
        A thread of ours asks for each buffer on time (no device does); it catches up on a late
        buffer, so a late one is no under-run.
    jack : bool
        Into a JACK server: outputs connected, inputs not, and xruns as JACK counts them.
    doc : str
    """

    pyo_audio: str
    realtime: bool = True
    paced: bool = False
    jack: bool = False
    doc: str = ""

    @property
    def deadlines(self) -> bool:
        """A device asks for each buffer by a deadline (real time, and no pacer of ours to catch up):
        where a late buffer is an xrun, and the audio thread must not wait for anything."""
        return self.realtime and not self.paced


#: The modes that name a way to sound, by name (``auto`` picks one of them).
DEVICES: dict[str, AudioMode] = {
    "jack": AudioMode("jack", jack=True, doc="a running JACK server (never starts one)"),
    "portaudio": AudioMode("portaudio", doc="the default PortAudio output device"),
    "offline": AudioMode("manual", realtime=False,
                         doc="no device, no pacing: buffers are rendered as fast as the caller asks"),
    "null": AudioMode("manual", paced=True, doc="no device, still in real time: a thread paces the buffers"),
}
#: Every ``--audio`` choice.
MODES = ("auto",) + tuple(DEVICES)


def _jack_running() -> bool:
    """True when a JACK server answers (jack_lsp exits 0); never starts one."""
    env = dict(os.environ, JACK_NO_START_SERVER="1")
    try:
        done = subprocess.run(["jack_lsp"], env=env, capture_output=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _portaudio_outputs() -> int:
    """Number of PortAudio output devices, probed in a child process: PortAudio with no device
    can take the whole process down, and it prints pages of ALSA noise."""
    code = "from pyo import pa_get_output_devices as g; print(len(g()[0]))"
    env = dict(os.environ, PYO_GUI_WX="0")
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=20)
        return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else 0
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return 0


#: What ``auto`` tries, in order: the first mode whose probe answers yes, with the line that says
#: so; the last probe always does.
AUTO: tuple[tuple[str, Callable[[], bool], str], ...] = (
    ("jack", lambda: _jack_running(), "audio: JACK server found, playing into it"),
    ("portaudio", lambda: _portaudio_outputs() > 0, "audio: no JACK server; playing to the default PortAudio device"),
    ("null", lambda: True, "audio: no JACK server and no sound device; running in real time with no output (null)"),
)
if any(name not in DEVICES for name, _, _ in AUTO):  # a choice of auto's without its row fails at import
    raise ConfigError(f"audio: auto tries {', '.join(n for n, _, _ in AUTO if n not in DEVICES)}, not in DEVICES")


def resolve_mode(mode: str) -> tuple[str, str]:
    """Pick the concrete mode for ``mode`` and say why, in one line.

    >>> resolve_mode("offline")
    ('offline', 'audio: offline (as asked)')
    >>> resolve_mode("wav")
    Traceback (most recent call last):
    ...
    earengine.errors.ParameterError: --audio=wav must be one of auto, jack, portaudio, offline, null
    """
    if mode in DEVICES:
        return mode, f"audio: {mode} (as asked)"
    if mode != "auto":
        raise ParameterError(f"--audio={mode} must be one of {', '.join(MODES)}")
    return next((name, why) for name, probe, why in AUTO if probe())


class AudioServer:
    """A pyo server in one of :data:`MODES`; a context manager.

    Parameters
    ----------
    mode : str
        One of :data:`MODES`.
    sr : int > 0
        Sample rate in Hz (JACK imposes its own).
    buffersize : int > 0
        Samples per buffer (JACK imposes its own period).
    nchnls : int > 0
        Output channels.
    jack_name : str
        JACK client name.
    inputs : int >= 0
        Input channels to open (JACK: capture ports ``<jack_name>:input_1`` …, left unconnected;
        PortAudio: the default input device). The devices without a sound card have none.
    """

    def __init__(
        self,
        mode: str = "auto",
        *,
        sr: int = 44100,
        buffersize: int = 256,
        nchnls: int = 2,
        jack_name: str = "earengine",
        inputs: int = 0,
    ) -> None:
        self.requested = mode
        self.mode, self.reason = resolve_mode(mode)
        self.device = DEVICES[self.mode]
        self.sr = int(sr)
        self.buffersize = int(buffersize)
        self.nchnls = int(nchnls)
        self.jack_name = jack_name
        # only a sound card has inputs: offline and null hear nothing
        self.inputs = int(inputs) if self.mode in ("jack", "portaudio") else 0
        self.server = None
        self.buffers = 0
        self.xruns = 0
        self._callbacks: tuple[Callable[[], None], ...] = ()
        self._pacer: Optional[threading.Thread] = None
        self._running = False
        self._last_cb = 0.0
        self._jack_monitor = None  # a JACK client that only counts the server's xruns
        self._priority: Optional[bool] = None  # the audio thread real-time? (told by its first buffer)
        self._first_buffer = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "AudioServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        import pyo

        os.environ.setdefault("JACK_NO_START_SERVER", "1")
        server = pyo.Server(sr=self.sr, nchnls=self.nchnls, buffersize=self.buffersize, duplex=int(self.inputs > 0),
                            ichnls=max(1, self.inputs), audio=self.device.pyo_audio, jackname=self.jack_name)
        server.setVerbosity(1)  # errors only
        server.deactivateMidi()  # MIDI is earengine.midi's business, not pyo's
        if self.device.jack:
            server.setJackAuto(False, True)
        server.boot()
        if not server.getIsBooted():
            if self.inputs:
                raise DeviceError(f"audio: cannot start pyo with {self.mode} and {self.inputs} inputs; "
                                  "check the input device, or run without --input")
            raise DeviceError(f"audio: cannot start pyo with {self.mode}; try --audio null or check the device")
        self.server = server
        self.sr = int(server.getSamplingRate())
        self.buffersize = int(server.getBufferSize())
        server.setCallback(self._on_buffer)
        if self.device.deadlines:
            sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_S))
        server.start()
        self._running = True
        if self.device.paced:
            self._pacer = threading.Thread(target=self._pace, name=f"earengine-audio-{self.mode}", daemon=True)
            self._pacer.start()
        if self.device.jack:
            self._watch_jack_xruns()

    def _watch_jack_xruns(self) -> None:
        """Count xruns as JACK itself reports them (a late callback is not an xrun under -S)."""
        try:
            import jack

            client = jack.Client(f"{self.jack_name}-xruns", no_start_server=True)
            client.set_xrun_callback(self._on_jack_xrun)
            client.activate()
            self._jack_monitor = client
        except Exception as exc:  # the count is informative; audio does not depend on it
            log.warning("cannot watch JACK xruns (%s); counting late buffers instead", exc)

    def input_names(self) -> tuple[str, ...]:
        """The input ports others connect to (JACK), else the input channels' names."""
        if self.device.jack:
            return tuple(f"{self.jack_name}:input_{i + 1}" for i in range(self.inputs))
        return tuple(f"input {i + 1}" for i in range(self.inputs))

    def input_sources(self) -> Optional[dict[str, list[str]]]:
        """For each JACK input port, the ports connected to it; None where that cannot be told
        (no JACK, or its watcher did not start). Not for the audio thread."""
        client = self._jack_monitor
        if client is None or not self.inputs:
            return None
        try:
            return {port: [p.name for p in client.get_all_connections(port)] for port in self.input_names()}
        except Exception:  # the port went away with the server: say nothing rather than fail
            return None

    def _on_jack_xrun(self, delay_us: float) -> None:
        self.xruns += 1

    def close(self) -> None:
        self._running = False
        if self._jack_monitor is not None:
            try:
                self._jack_monitor.deactivate()
                self._jack_monitor.close()
            except Exception:
                pass
            self._jack_monitor = None
        if self._pacer is not None:
            self._pacer.join(timeout=2)
            self._pacer = None
        if self.server is not None:
            try:
                self.server.stop()
                time.sleep(0.05)  # let a device callback finish its buffer
                self.server.shutdown()
            finally:
                self.server = None

    @property
    def realtime(self) -> bool:
        return self.device.realtime

    def describe(self) -> str:
        return f"{self.reason}; {self.sr} Hz, {self.buffersize}-sample buffers"

    # -- audio thread -------------------------------------------------------------------------
    def add_callback(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on the audio thread before every buffer. It must not block."""
        self._callbacks = self._callbacks + (fn,)

    def remove_callback(self, fn: Callable[[], None]) -> None:
        self._callbacks = tuple(f for f in self._callbacks if f is not fn)

    def settle_heap(self) -> None:
        """Once the process has started what it runs: collect, then freeze what is left for the
        garbage collector. pyo holds Python's interpreter lock for every buffer, so any thread's
        collection stalls the audio for as long as it takes: a full one walked the engine's whole
        heap in about 30 ms (seen as xruns under a show's load). Frozen, the start-up heap is never
        walked again; collections see only what came later (a few ms at most). Only where buffers
        have deadlines; freezing twice just freezes what came between."""
        if self.device.deadlines:
            gc.collect()
            gc.freeze()

    def raise_threads(self) -> bool:
        """From the main thread, before it starts the others: where the audio thread runs real-time,
        this thread and every thread it starts from now on (they inherit it) run real-time just below
        it (:data:`THREAD_PRIORITY`), so an ordinary process can never set aside an engine thread
        holding the lock pyo waits for. Python's lock lets one of them run at a time: at most a core.
        Children go back to ordinary priority (:func:`~earengine.stops.start_child`). True if raised."""
        if not (self.device.deadlines and self._priority):
            return False
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()  # the child that minds shared memory: started ordinary
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(THREAD_PRIORITY))
        except (OSError, AttributeError):  # not granted (the audio thread's priority came from jackd)
            return False
        return True

    def priority_notice(self, wait_s: float = 2.0) -> Optional[str]:
        """One line when the audio thread does not run at real-time priority (None when it does,
        or on a device without a deadline). JACK's clients get it from jackd (run with -R, by a
        user the system lets: see the README); with PortAudio the thread asks for SCHED_FIFO itself."""
        if not self.device.deadlines:
            return None
        self._first_buffer.wait(wait_s)
        if self._priority is not False:
            return None
        how = ("jackd runs without real-time (start it with -R)" if self.device.jack
               else "the system refused SCHED_FIFO")
        return (f"audio: the audio thread is not real-time ({how}); other work can make it glitch; "
                "grant the audio group rtprio and memlock (README: Listening, real-time)")

    def _thread_priority(self) -> bool:
        """On the audio thread, once: is it real-time? With PortAudio it asks for SCHED_FIFO (JACK's
        priorities are jackd's to give)."""
        try:
            if os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR):
                return True
            if not self.device.jack:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
                return True
        except (OSError, AttributeError):  # not allowed, or not Linux
            pass
        return False

    def _on_buffer(self) -> None:
        if self._priority is None:
            self._priority = self._thread_priority()
            self._first_buffer.set()
        # a paced mode has nothing to under-run: its pacer catches up on a late buffer
        if self.device.deadlines and self._jack_monitor is None:
            now = time.monotonic()
            if self._last_cb and now - self._last_cb > 3.0 * self.buffersize / self.sr:
                self.xruns += 1  # a buffer came late: the device (or pacer) starved
            self._last_cb = now
        self.buffers += 1
        for fn in self._callbacks:
            try:
                fn()
            except Exception:  # keep sounding whatever a callback does
                log.exception("audio callback failed")

    def _pace(self) -> None:
        """The null device: one buffer per buffer-duration of wall time."""
        period = self.buffersize / self.sr
        deadline = time.monotonic()
        while self._running:
            self.server.process()
            deadline += period
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.5:  # far behind (machine suspended): resynchronise rather than race
                deadline = time.monotonic()

    # -- offline ------------------------------------------------------------------------------
    def render(self, n_samples: int) -> None:
        """Compute at least ``n_samples`` of audio now (``offline`` mode only)."""
        if self.device.realtime:
            raise DeviceError(f"render() needs --audio {', '.join(m for m, d in DEVICES.items() if not d.realtime)}")
        for _ in range(-(-int(n_samples) // self.buffersize)):
            self.server.process()

    def record(self, path: str) -> None:
        """Start writing the output to a 32-bit float WAV file."""
        self.server.recordOptions(filename=str(path), fileformat=0, sampletype=3)
        self.server.recstart()

    def stop_recording(self) -> None:
        self.server.recstop()
