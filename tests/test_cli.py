"""The command line: params listings, docs kept current, run's one-line errors."""

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
    (["run", "--audio", "offline", "--no-dream", "--osc-port", "0", "--loop", "/no/such.wav", "--duration", "1"], "is not a file"),
])
def test_run_errors_are_one_line(argv, reason, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and reason in err[0] and "Traceback" not in err[0]


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
