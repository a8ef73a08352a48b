"""Ear checkpoints: ``model.safetensors`` + ``config.json``, never pickle.

A checkpoint is a folder holding

- ``model.safetensors``: the encoder, autoregressive model and CPC predictor weights and batch-norm
  statistics (the scaleogram's fixed kernels are rebuilt from the config, not stored);
- ``config.json``: the format and earengine version, the ear configuration (architecture, width,
  scaleogram), the data ``describe()``, training facts (steps, wall time, …), per-tap activation
  statistics, probe results when run, and ``weights_sha256``, a content hash of the weights.

Loading checks the hash and every tensor's name and shape against the configuration, and refuses
pickle-based files (``.pt``, ``.pth``, ``.pkl``, zip or pickle content) with one line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from earengine.errors import CheckpointError
from earengine.files import atomic_write_bytes, atomic_write_json

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LoadedEar",
    "save_ear",
    "load_ear",
    "read_config",
    "weights_hash",
    "atomic_write_bytes",
    "atomic_write_json",
]

FORMAT = "earengine-ear"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar"}


@dataclass
class LoadedEar:
    """An ear read from a checkpoint.

    Attributes
    ----------
    ear : Ear
        In eval mode, on the requested device.
    cpc : CPCHead
        The trained predictors (useful to continue training or to score predictions).
    config : dict
        The whole ``config.json``.
    path : Path
        The checkpoint folder.
    """

    ear: Any
    cpc: Any
    config: dict
    path: Path
    stats: dict = field(default_factory=dict)


def weights_hash(tensors: Mapping[str, Any]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order.

    Independent of how the file was serialised, so equal weights always hash equal.
    """
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def ear_state(ear, cpc=None) -> dict:
    """The tensors a checkpoint stores: everything but the scaleogram's derived kernels."""
    state = {k: v.detach().cpu().contiguous() for k, v in ear.state_dict().items() if not k.startswith("scaleogram.")}
    if cpc is not None:
        state.update({f"cpc.{k}": v.detach().cpu().contiguous() for k, v in cpc.state_dict().items()})
    return state


def save_ear(path: Union[str, Path], ear, cpc=None, *, info: Optional[Mapping[str, Any]] = None) -> str:
    """Write ``ear`` (and its predictors) as a checkpoint folder; return the weights hash.

    Parameters
    ----------
    path : path-like
        Folder to write (created if needed); ``model.safetensors`` and ``config.json`` inside are
        replaced atomically, weights first.
    ear : Ear
    cpc : CPCHead, optional
    info : mapping, optional
        Further JSON-able entries for ``config.json`` (``data``, ``training``, ``stats``,
        ``probe``, …).
    """
    from safetensors.torch import save

    from earengine import __version__

    path = Path(path)
    if path.suffix in _PICKLE_SUFFIXES or path.suffix == ".safetensors":
        raise CheckpointError(f"path={str(path)!r} must be a folder name, e.g. models/my-ear")
    state = ear_state(ear, cpc)
    digest = weights_hash(state)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "earengine_version": __version__,
        "ear": ear.config.to_dict(),
        "has_cpc": cpc is not None,
        "n_parameters": int(sum(v.numel() for k, v in state.items() if "running_" not in k and "num_batches" not in k)),
    }
    for key, value in (info or {}).items():
        config[key] = value
    config["weights_sha256"] = digest
    atomic_write_bytes(path / WEIGHTS_FILE, save(state, metadata={"format": FORMAT, "sha256": digest}))
    atomic_write_json(path / CONFIG_FILE, config)
    return digest


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise CheckpointError(
            f"checkpoint={str(path)!r} must be a safetensors checkpoint folder; pickle files "
            f"({path.suffix}) are refused because loading them can run arbitrary code"
        )
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(4)
        if head[:1] == b"\x80" or head[:2] == b"PK":
            raise CheckpointError(
                f"checkpoint={str(path)!r} must be safetensors; this file is a pickle/zip "
                f"(torch.save) file and is refused because loading it can run arbitrary code"
            )


def _resolve(path: Union[str, Path]) -> Path:
    path = Path(path)
    _refuse_pickle(path)
    if path.is_file() and path.name in (WEIGHTS_FILE, CONFIG_FILE):
        path = path.parent
    if not path.is_dir():
        raise CheckpointError(f"checkpoint={str(path)!r} must be a folder with {WEIGHTS_FILE} and {CONFIG_FILE}")
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (path / name).is_file():
            others = sorted(p.name for p in path.iterdir() if p.suffix.lower() in _PICKLE_SUFFIXES)
            if others:
                _refuse_pickle(path / others[0])
            raise CheckpointError(f"checkpoint={str(path)!r} must contain {name}; it does not")
    return path


def read_config(path: Union[str, Path]) -> dict:
    """The ``config.json`` of a checkpoint folder, checked for format and version."""
    return _read_config(_resolve(path))


def _read_config(path: Path) -> dict:
    """As :func:`read_config`, for a folder that :func:`_resolve` already checked."""
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{CONFIG_FILE} in {str(path)!r} must be valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{CONFIG_FILE} in {str(path)!r} must have format={FORMAT!r}")
    version = config.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"format_version={version!r} in {str(path)!r} must be an integer")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"format_version={config.get('format_version')} must be <= {FORMAT_VERSION}; upgrade earengine"
        )
    return config


def _least_weights(config) -> int:
    """A lower bound on the weights of an ear of this configuration, from its channel counts
    alone (each layer maps its input channels to its output channels at least once)."""
    enc, ar = config.encoder_channels, config.ar_channels
    chain = (1,) + tuple(enc) + tuple(ar)
    return sum(a * b for a, b in zip(chain[:-1], chain[1:]))


def load_ear(path: Union[str, Path], *, device: str = "cpu", check_hash: bool = True) -> LoadedEar:
    """Read a checkpoint folder written by :func:`save_ear`.

    Parameters
    ----------
    path : path-like
        The folder (or its ``model.safetensors`` / ``config.json``).
    device : str
        Where to put the ear (``"cpu"``, ``"cuda"``, …).
    check_hash : bool
        Verify ``weights_sha256`` against the weights.

    Returns
    -------
    LoadedEar
        With the ear in eval mode.

    Raises
    ------
    CheckpointError
        Pickle files, missing files, a hash that does not match, or weights whose names or
        shapes do not match the configuration — always as one line.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from earengine.ear.cpc import CPCHead
    from earengine.ear.model import Ear, EarConfig

    path = _resolve(path)
    config = _read_config(path)
    try:
        ear_config = EarConfig.from_dict(config["ear"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # ConfigError is a ValueError
        raise CheckpointError(f"ear configuration in {str(path)!r} must be valid ({exc})".splitlines()[0]) from None
    try:
        state = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{WEIGHTS_FILE} in {str(path)!r} must be a valid safetensors file ({exc})") from None
    if check_hash and config.get("weights_sha256") != weights_hash(state):
        raise CheckpointError(
            f"weights_sha256 in {str(path)!r} must match the weights; the files do not belong together"
        )
    # before building the ear the configuration asks for: a config.json that asks for a huge one
    # (width=1000) must not make us allocate it, only to find that the weights do not fit
    least, held = _least_weights(ear_config), sum(int(v.numel()) for v in state.values())
    if least > held:
        raise CheckpointError(
            f"ear configuration in {str(path)!r} (width={ear_config.width:g}) needs at least {least} weights; "
            f"{WEIGHTS_FILE} holds {held}: the files do not belong together"
        )
    ear = Ear(ear_config)
    cpc = CPCHead(ear.context_channels, ear.encoding_channels, ear_config.cpc)
    expected = ear_state(ear, cpc)
    if not config.get("has_cpc", True):
        expected = {k: v for k, v in expected.items() if not k.startswith("cpc.")}
        cpc = None
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise CheckpointError(
            f"weights in {str(path)!r} must match the configuration (width={ear_config.width}); {what}"
        )
    for name, ref in expected.items():
        got = state[name]
        if tuple(got.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"weight {name} shape={tuple(got.shape)} must be {tuple(ref.shape)} for width="
                f"{ear_config.width}; the weights do not match their config.json"
            )
    ear_sd = {k: v for k, v in state.items() if not k.startswith("cpc.")}
    # the names were compared above: only the scaleogram's rebuilt kernels may be missing here
    ear.load_state_dict(ear_sd, strict=False)
    if cpc is not None:
        cpc.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("cpc.")})
        cpc = cpc.to(device).eval()
    ear = ear.to(device).eval()
    from earengine.ear.stats import stats_from_json

    stats = stats_from_json(config.get("stats", {}))
    return LoadedEar(ear=ear, cpc=cpc, config=config, path=path, stats=stats)
