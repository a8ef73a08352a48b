"""The installable package: a wheel, installed (not editable) into a fresh environment, runs
``earengine params`` and a short offline render of the shipped ear, from its own files.

The wheel is built the way ``python -m build`` builds it: a source distribution from a copy of
the working tree (so the build leaves no ``build/`` or egg-info behind in the checkout), then the
wheel from that. Both must carry the shipped ears of the top-level ``models/`` folder: the
sdist as ``models/``, the wheel inside the package as ``earengine/models/`` (``setup.py``).

The fresh environment has no packages of its own: a ``.pth`` file makes this environment's
site-packages reachable for the dependencies (torch, pyo, numpy…). Python does not process the
``.pth`` files inside a folder a ``.pth`` file adds, so the editable install's finder stays out
and ``earengine`` comes from the wheel; the first test checks that.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, *, cwd, env, timeout=180.0):
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(sdist, wheel, environment): the source distribution of a copy of the working tree, and
    the wheel built from that source distribution."""
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("earengine", "models"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(EARENGINE_HOME=str(tmp / "home"), PYTHONNOUSERSITE="1")
    dist = tmp / "dist"
    _run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})"],
         cwd=src, env=env)
    (sdist,) = dist.glob("earengine-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp / "unpacked", filter="data")
    (unpacked,) = (tmp / "unpacked").iterdir()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, "."],
         cwd=unpacked, env=env)
    (wheel,) = dist.glob("earengine-*.whl")
    return sdist, wheel, env


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory):
    """(venv folder, environment, working folder) with the wheel installed in the venv."""
    _, wheel, env = built
    tmp = tmp_path_factory.mktemp("wheel")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp, env=env)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
         cwd=tmp, env=env)
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp,
                     env=env).strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_earengine_test_deps.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    cwd = tmp / "elsewhere"  # not the checkout: nothing of it may be found through the cwd
    cwd.mkdir()
    return venv, env, cwd


def test_earengine_and_its_data_come_from_the_wheel(installed):
    venv, env, cwd = installed
    code = ("import json, earengine, earengine.resources as r; print(json.dumps([earengine.__file__, "
            "str(r.DEFAULT_EAR), sorted(p.name for p in r.MIDI_MAPS.glob('*.json')), "
            "sorted(p.name for p in r.PRESETS.glob('*.json')), (r.DEFAULT_EAR / 'model.safetensors').is_file()]))")
    module, ear, maps, presets, weights = json.loads(_run([venv / "bin" / "python", "-c", code], cwd=cwd, env=env))
    assert Path(module).is_relative_to(venv) and Path(ear).is_relative_to(venv), module
    assert maps == ["bcf2000.json", "launch-control-xl.json"] and "default.json" in presets and weights


def test_the_sdist_and_the_wheel_carry_the_shipped_ears_byte_for_byte(built):
    sdist, wheel, _ = built
    shipped = {p.relative_to(ROOT / "models").as_posix(): p.read_bytes()
               for p in sorted((ROOT / "models").rglob("*")) if p.is_file()}
    assert {"ear-default/config.json", "ear-default/model.safetensors", "ear-default/README.md"} <= set(shipped)
    with tarfile.open(sdist) as tar:
        in_sdist = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}
    assert {f"models/{name}" for name in shipped} <= in_sdist
    with zipfile.ZipFile(wheel) as whl:
        assert {name: whl.read(f"earengine/models/{name}") for name in shipped} == shipped
        assert not [n for n in whl.namelist() if n.startswith("models/") or "/data/ears/" in n]


def test_the_wheel_carries_the_web_page(built):
    _, wheel, _ = built
    page = {p.name: p.read_bytes() for p in (ROOT / "earengine" / "control" / "web").iterdir() if p.is_file()}
    assert {"index.html", "controls.js", "style.css"} <= set(page)
    with zipfile.ZipFile(wheel) as whl:
        assert {name: whl.read(f"earengine/control/web/{name}") for name in page} == page


def test_params_runs_from_the_wheel(installed):
    venv, env, cwd = installed
    out = _run([venv / "bin" / "earengine", "params"], cwd=cwd, env=env)
    assert any(line.startswith("/loop/gain: float") for line in out.splitlines())


def test_offline_render_of_the_shipped_ear(installed):
    venv, env, cwd = installed
    out = cwd / "render"
    _run([venv / "bin" / "earengine", "render", "--bars", "1", "--loops", "1", "--steps-per-loop", "1",
          "--out", out], cwd=cwd, env=env)
    record = json.loads((out / "render.json").read_text())
    assert Path(record["model"]).is_relative_to(venv)  # the shipped ear, from the installed package
    x, sr = sf.read(str(out / "loop-000.wav"))
    assert x.shape[0] == 2 * sr  # one bar at 120 BPM
    assert np.all(np.isfinite(x)) and np.sqrt(np.mean(x ** 2)) > 1e-3
