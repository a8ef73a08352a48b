"""Clean stops: Ctrl-C and SIGTERM end every command with one line and status 0, no traceback, no
process or shared memory left behind; a closed pipe ends a command silently; files honour the umask."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from earengine.stops import stop_signals
from tests.helpers.waits import wait_until

ROOT = Path(__file__).resolve().parents[1]


def shm_names():
    """Shared memory blocks and semaphores now in /dev/shm."""
    return set(os.listdir("/dev/shm"))


def shm_of(sid):
    """The shared memory blocks and semaphores in /dev/shm that the processes of session ``sid``
    have mapped, JACK's own aside: the ones this engine made. (Other processes on the machine,
    other tests' or other suites', make their own meanwhile: /dev/shm as a whole says nothing
    about this engine.) Found by inode: a semaphore is mapped under the temporary name it was
    made with."""
    inodes = set()
    for line in session_left(sid):
        try:
            with open(f"/proc/{line.split()[0]}/maps") as maps:
                for row in maps:
                    fields = row.split(None, 5)
                    if len(fields) == 6 and fields[5].startswith("/dev/shm/"):
                        inodes.add(int(fields[4]))
        except OSError:  # gone meanwhile
            continue
    names = set()
    for name in shm_names():
        try:
            if os.stat(f"/dev/shm/{name}").st_ino in inodes and not name.startswith(("jack", "sem.jack")):
                names.add(name)
        except OSError:
            continue
    return names


def start(args, **kwargs):
    """``earengine ARGS`` in a session of its own, with Ctrl-C at its default (a shell started in
    the background would have it ignored), output in one stream."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "earengine", *args], cwd=str(ROOT), env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def read_until(proc, text, seconds):
    lines = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if text in line:
            return lines
    raise AssertionError(f"no line with {text!r} within {seconds} s:\n" + "\n".join(lines))


def interrupted_within(seconds):
    """Sleep until a signal's KeyboardInterrupt ends the sleep: a signal sent to this process is
    handled as soon as it arrives, so ``seconds`` only bounds a failure."""
    time.sleep(seconds)
    raise AssertionError(f"no KeyboardInterrupt within {seconds} s")


def importing_torch(sid):
    """True once a process of session ``sid`` other than its leader (the worker) has torch's
    library mapped: the worker is importing torch."""
    for line in session_left(sid):
        pid = int(line.split()[0])
        if pid == sid:
            continue
        try:
            with open(f"/proc/{pid}/maps") as maps:
                if "libtorch" in maps.read():
                    return True
        except OSError:  # gone meanwhile
            continue
    return False


def session_left(sid):
    out = subprocess.run(["ps", "-o", "pid=,stat=,cmd=", "-s", str(sid)], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split()[1][0] != "Z"]  # zombies are init's to reap


@pytest.fixture
def sigint_as_in_a_terminal():
    """Ctrl-C raises KeyboardInterrupt, even when the suite itself runs as a background job
    (which starts with SIGINT ignored, and stop_signals rightly leaves an ignored SIGINT alone)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_the_first_stop_signal_interrupts_and_the_next_ones_are_ignored(sigint_as_in_a_terminal):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with stop_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            interrupted_within(30.0)
    # the handlers of before are back
    assert signal.getsignal(signal.SIGTERM) == before
    stopped = False
    with stop_signals():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            interrupted_within(30.0)
        except KeyboardInterrupt:
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C while stopping: ignored
            # deliberately time for it to do nothing: a signal to this process is handled as it
            # arrives, during this sleep, so an interrupt it wrongly raised would surface here
            time.sleep(0.2)
            stopped = True
    assert stopped


def test_a_closed_pipe_ends_a_command_silently():
    for args in (["params", "--json"], ["params"], ["--help"]):
        proc = subprocess.Popen([sys.executable, "-m", "earengine", *args], cwd=str(ROOT), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        proc.stdout.read(10)
        proc.stdout.close()  # what `| head -c 10` does
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0, err
        assert err == "", err


@pytest.mark.integration
def test_an_engine_whose_output_pipe_closes_stops_quietly():
    """``earengine run | head -3``: the engine ends when its next status line finds nobody."""
    proc = subprocess.Popen([sys.executable, "-m", "earengine", "run", "--audio", "null", "--osc-port", "0",
                             "--no-oscquery", "--no-dream", "--status-every", "0.2"], cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(3):
        proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 0, err
    assert err == "", err


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_to_the_process_group_stops_the_dreaming_engine_cleanly(tiny_ear_dir, sig):
    """As Ctrl-C in a terminal does: the signal reaches the engine, its worker and every other
    process of the group at once. The worker ignores it; the engine stops everything in order."""
    proc = start(["run", "--audio", "null", "--osc-port", "0", "--no-oscquery", "--status-every", "0.5",
                  "--ear", str(tiny_ear_dir)])
    try:
        lines = read_until(proc, "worker: ear loaded", 120)
        lines += read_until(proc, "loops made", 30)  # the worker dreams, its loop buffer is in use
        assert any("xruns 0" in line for line in lines), lines  # no device, nothing to under-run
        ours = shm_of(proc.pid)
        assert ours, "the dreaming engine maps no shared memory"
        os.killpg(proc.pid, sig)
        rest = proc.stdout.read().splitlines()
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    rest = [line for line in rest if not line.startswith("tempo ")]  # a status line may still come
    assert code == 0 and rest == ["stopping"], rest
    # the rest of the group may still be on its way out as the engine exits: wait for it
    wait_until(lambda: session_left(proc.pid) == [] and not ours & shm_names(), 30.0)
    assert session_left(proc.pid) == []
    assert ours & shm_names() == set()


@pytest.mark.integration
def test_ctrl_c_while_the_worker_starts_prints_no_traceback(tiny_ear_dir):
    proc = start(["run", "--audio", "null", "--osc-port", "0", "--no-oscquery", "--status-every", "60",
                  "--ear", str(tiny_ear_dir)])
    try:
        read_until(proc, "osc: listening", 60)
        assert wait_until(lambda: importing_torch(proc.pid), 60.0), session_left(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        rest = proc.stdout.read()
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 0 and "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest
    assert rest.strip().splitlines()[-1] == "stopping"


@pytest.mark.integration
def test_ctrl_c_stops_an_offline_render_with_one_line(tmp_path, tiny_ear_dir):
    proc = start(["render", "--model", str(tiny_ear_dir), "--loops", "1000", "--steps-per-loop", "1",
                  "--out", str(tmp_path / "out")])
    try:
        read_until(proc, "render: ", 120)
        os.killpg(proc.pid, signal.SIGINT)
        rest = proc.stdout.read()
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 0 and rest.strip().splitlines() == ["earengine render: stopped"], rest


def test_wav_files_get_the_mode_of_a_plain_open(tmp_path):
    from earengine import files
    from earengine.audiofile import write_wav

    path = write_wav(tmp_path / "loop.wav", np.zeros(64, dtype=np.float32))
    assert path.stat().st_mode & 0o777 == 0o666 & ~files._UMASK
    assert [p.name for p in tmp_path.iterdir()] == ["loop.wav"]  # no temporary file left


def test_a_wav_that_cannot_be_written_leaves_nothing_behind(tmp_path, monkeypatch):
    import soundfile

    from earengine.audiofile import write_wav
    from earengine.errors import AudioFileError

    def disk_full(path, *args, **kwargs):
        Path(path).write_bytes(b"RIFF")  # half a file, then the error
        raise soundfile.LibsndfileError(0, prefix="Error writing: ")

    monkeypatch.setattr(soundfile, "write", disk_full)
    with pytest.raises(AudioFileError, match="cannot write"):
        write_wav(tmp_path / "loop.wav", np.zeros(64, dtype=np.float32))
    assert list(tmp_path.iterdir()) == []
