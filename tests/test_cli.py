"""The command line: params listings, docs kept current, one-line errors (a missing file named on
the command line before anything starts)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from earengine.cli import main
from earengine.params import default_registry
from earengine.params.docs import markdown

ROOT = Path(__file__).resolve().parents[1]


def test_docs_osc_md_is_current():
    """docs/osc.md is generated from the registry; regenerate with `make docs`."""
    assert (ROOT / "docs" / "osc.md").read_text() == markdown(default_registry()), "run: make docs"


def test_params_json_lists_every_row(capsys):
    assert main(["params", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    reg = default_registry()
    assert [p["address"] for p in data["params"]] == list(reg.specs)
    assert {c["address"] for c in data["commands"]} == set(reg.commands)


def test_params_plain_lines_read_well(capsys):
    assert main(["params"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("/loop/gain: float, default -3 dB") for line in lines)
    assert all("\x1b" not in line for line in lines)  # no colour codes


@pytest.mark.parametrize("argv, reason", [
    (["run", "--audio", "offline", "--no-dream", "--set", "/clock/bpm=fast"], "must be a number"),
    (["run", "--audio", "offline", "--no-dream", "--set", "/no/such=1"], "is not a parameter"),
    (["run", "--audio", "offline", "--no-dream", "--set", "/clock/bpm"], "must look like"),
    (["run", "--audio", "offline", "--no-dream", "--reply-port", "99999"], "--reply-port"),
    (["run", "--audio", "offline", "--no-dream", "--osc-port", "0", "--loop", "/no/such.wav", "--duration", "1"], "no such file"),
])
def test_run_errors_are_one_line(argv, reason, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and reason in err[0] and "Traceback" not in err[0]


NO_EAR = "no such ear (expected a folder with config.json and model.safetensors)"


@pytest.mark.integration
@pytest.mark.parametrize("argv, line", [
    (["run", "--ear", "{tmp}/no-such-ear"], f"earengine run: --ear {{tmp}}/no-such-ear: {NO_EAR}"),
    (["run", "--ear", "{tmp}"], f"earengine run: --ear {{tmp}}: {NO_EAR}"),  # a folder, but no ear
    (["run", "--no-dream", "--ear", "{tmp}/x", "--loop", "{tmp}/drums.wav"],  # --no-dream waives --ear
     "earengine run: --loop {tmp}/drums.wav: no such file"),
    (["run", "--preset", "warm-padd"], "earengine run: --preset warm-padd: no such preset (in {tmp}/presets or "),
    (["run", "--midi-map", "bcf"], "earengine run: --midi-map bcf: no such MIDI map (in "),
    (["run", "--record", "{tmp}/no/rec.wav"],
     "earengine run: --record {tmp}/no/rec.wav: no such folder to write it in"),
    (["render", "--model", "{tmp}/ear", "--out", "{tmp}/out"], f"earengine render: --model {{tmp}}/ear: {NO_EAR}"),
    (["train", "--data", "{tmp}/music", "--out", "{tmp}/out"], "earengine train: --data {tmp}/music: no such folder"),
    (["probe", "--model", "{tmp}/ear"], f"earengine probe: --model {{tmp}}/ear: {NO_EAR}"),
    (["layout", "--model", "{tmp}/ear"], f"earengine layout: --model {{tmp}}/ear: {NO_EAR}"),
])
def test_a_missing_input_is_one_line_before_anything_starts(argv, line, tmp_path):
    """The real command, as a user runs it: status 2, one line naming the option and the path as
    typed, and nothing started (no OSC, no audio, nothing written)."""
    argv = [a.format(tmp=tmp_path) for a in argv]
    if argv[0] == "run":
        argv += ["--audio", "offline", "--osc-port", "0", "--no-oscquery", "--duration", "1",
                 "--preset-dir", str(tmp_path / "presets")]
    before = sorted(tmp_path.rglob("*"))
    done = subprocess.run([sys.executable, "-m", "earengine", *argv], capture_output=True, text=True, timeout=60)
    err = done.stderr.splitlines()
    assert done.returncode == 2 and len(err) == 1 and err[0].startswith(line.format(tmp=tmp_path)), done.stderr
    assert done.stdout == "" and "osc:" not in done.stderr and "listening" not in done.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_every_checked_input_is_an_option_of_its_command(monkeypatch):
    from earengine import cli

    cli.build_parser()  # the shipped table fits the options
    monkeypatch.setitem(cli.INPUTS, "layout", {"modell": (cli._ear, None)})
    with pytest.raises(RuntimeError, match="layout has no option --modell"):
        cli.build_parser()


@pytest.mark.integration
def test_run_offline_records_a_loop(tmp_path):
    import numpy as np
    import soundfile as sf

    loop = tmp_path / "loop.wav"
    sf.write(str(loop), 0.3 * np.sin(np.arange(88200) * 2 * np.pi * 220 / 44100), 44100)
    rec = tmp_path / "rec.wav"
    done = subprocess.run(
        [sys.executable, "-m", "earengine", "run", "--audio", "offline", "--no-dream", "--osc-port", "0", "--loop", str(loop),
         "--duration", "3", "--record", str(rec), "--set", "/clock/bpm=120"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "audio: offline" in done.stdout and "loop 1 loop.wav (1 bars)" in done.stdout
    x, sr = sf.read(str(rec))
    assert x.shape[0] >= 2.9 * sr and np.abs(x).max() > 0.1


def test_readme_parameter_tables_are_current():
    """The README's parameter tables are generated from the registry; regenerate with `make docs`."""
    from earengine.params.docs import fill_readme

    text = (ROOT / "README.md").read_text()
    assert text.count("<!-- params ") >= 4
    assert text == fill_readme(text, default_registry()), "run: make docs"
