"""A computed neuron layout, its files (JSON and CSV), and its cache beside the ear.

:class:`NeuronLayout` (numpy only, loaded by the engine process) holds the positions; it is
computed once per ear and cached beside it, keyed by the ear's weights hash
(:func:`cached_layout`, :func:`read_cached_layout`), and exported as CSV or JSON by
``earengine layout --model M --out F``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np

from earengine.ear.checkpoint import load_ear, read_config
from earengine.errors import ConfigError, ParameterError
from earengine.files import atomic_write_bytes, user_dir
from earengine.viz.layout.forces import compute_layout
from earengine.viz.layout.graph import LayoutConfig, ear_graph

__all__ = ["NeuronLayout", "cached_layout", "read_cached_layout", "layout_cache_path", "FORMAT"]

FORMAT = "earengine-layout"
FORMAT_VERSION = 1
CACHE_FILE = "layout.json"


@dataclass(frozen=True, eq=False)
class NeuronLayout:
    """Positions of every neuron of an ear, in [-1, 1], numbered as in :class:`NeuronGraph`.

    Examples
    --------
    >>> lay = NeuronLayout(("a", "b"), ((2, 1), (1, 2)), np.zeros((4, 2), np.float32))
    >>> lay.tap_positions("b").shape
    (2, 2)
    >>> NeuronLayout.from_dict(lay.to_dict()).shapes
    ((2, 1), (1, 2))
    """

    taps: tuple
    shapes: tuple
    positions: np.ndarray
    ear_sha256: str = ""
    config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "taps", tuple(self.taps))
        object.__setattr__(self, "shapes", tuple((int(c), int(f)) for c, f in self.shapes))
        pos = np.ascontiguousarray(self.positions, dtype=np.float32)
        total = sum(c * f for c, f in self.shapes)
        if pos.ndim != 2 or pos.shape[0] != total or pos.shape[1] not in (2, 3):
            raise ParameterError(f"positions shape={pos.shape} must be ({total}, 2 or 3) for these taps")
        pos.setflags(write=False)
        object.__setattr__(self, "positions", pos)

    @property
    def dims(self) -> int:
        return int(self.positions.shape[1])

    def tap_positions(self, tap: str) -> np.ndarray:
        """``(channels * freq, dims)`` positions of one tap's neurons, channel-major."""
        k = 0
        for name, (c, f) in zip(self.taps, self.shapes):
            if name == tap:
                return self.positions[k:k + c * f]
            k += c * f
        raise ParameterError(f"tap={tap!r} must be one of {', '.join(self.taps)}")

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "ear_sha256": self.ear_sha256,
            "config": dict(self.config),
            "taps": [{"name": t, "channels": c, "freq": f} for t, (c, f) in zip(self.taps, self.shapes)],
            "dims": self.dims,
            "positions": [[round(float(v), 6) for v in row] for row in self.positions],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NeuronLayout":
        if data.get("format") != FORMAT:
            raise ConfigError(f"layout format={data.get('format')!r} must be {FORMAT!r}")
        taps = tuple(t["name"] for t in data["taps"])
        shapes = tuple((int(t["channels"]), int(t["freq"])) for t in data["taps"])
        return cls(taps, shapes, np.asarray(data["positions"], dtype=np.float32),
                   str(data.get("ear_sha256", "")), dict(data.get("config", {})))

    def to_csv(self) -> str:
        """One row per neuron: ``index,tap,channel,freq,x,y[,z]``."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        axes = ["x", "y", "z"][: self.dims]
        writer.writerow(["index", "tap", "channel", "freq", *axes])
        k = 0
        for tap, (c, f) in zip(self.taps, self.shapes):
            for ci in range(c):
                for fi in range(f):
                    writer.writerow([k, tap, ci, fi, *(f"{v:.6f}" for v in self.positions[k])])
                    k += 1
        return buf.getvalue()

    def save(self, path: Union[str, Path]) -> None:
        """Write as JSON (``.json``) or CSV (``.csv``), atomically."""
        path = Path(path)
        if path.suffix.lower() == ".csv":
            atomic_write_bytes(path, self.to_csv().encode())
        elif path.suffix.lower() == ".json":
            atomic_write_bytes(path, (json.dumps(self.to_dict(), separators=(",", ":")) + "\n").encode())
        else:
            raise ParameterError(f"--out={str(path)!r} must end in .csv or .json")

    @classmethod
    def load(cls, path: Union[str, Path]) -> "NeuronLayout":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"layout {str(path)!r} must be a layout JSON file ({exc})") from None


def _ear_weights(ear) -> dict:
    """Per tap, |weights| from the previous tap's channels to this tap's, summed over kernels."""
    out = {}
    for i, block in enumerate(ear.encoder):
        out[f"enc.{i}"] = block.conv1.weight.detach().abs().sum(dim=(2, 3)).cpu().numpy()
    for i, block in enumerate(ear.ar):
        out[f"ar.{i}"] = block.conv.weight.detach().abs().sum(dim=2).cpu().numpy()
    return out


def layout_cache_path(ear_dir: Union[str, Path], ear_sha256: str = "") -> Path:
    """Where an ear's layout is cached: beside it, or, if that folder is read-only, under
    ``$EARENGINE_HOME/layouts`` (``~/.local/share/earengine/layouts``) by weights hash."""
    ear_dir = Path(ear_dir)
    if os.access(ear_dir, os.W_OK) or (ear_dir / CACHE_FILE).exists():
        return ear_dir / CACHE_FILE
    return user_dir("layouts") / f"{ear_sha256 or ear_dir.name}.json"


def read_cached_layout(ear_dir: Union[str, Path]) -> Optional[NeuronLayout]:
    """The cached layout of a checkpoint folder if there is one for these weights (no torch)."""
    sha = read_config(ear_dir).get("weights_sha256", "")
    path = layout_cache_path(ear_dir, sha)
    if not path.is_file():
        return None
    try:
        layout = NeuronLayout.load(path)
    except ConfigError:
        return None
    return layout if layout.ear_sha256 == sha else None


def cached_layout(ear_dir: Union[str, Path], *, config: LayoutConfig = LayoutConfig(), device: str = "cpu",
                  fresh: bool = False, progress: Optional[Callable[[str], None]] = None) -> NeuronLayout:
    """The layout of a checkpoint's ear: from the cache beside it, else computed and cached."""
    if not fresh:
        layout = read_cached_layout(ear_dir)
        if layout is not None and layout.config == config.to_dict():
            return layout
    loaded = load_ear(ear_dir, device="cpu")
    ear = loaded.ear
    n = ear.samples_per_step * 8
    shapes = {t: (s[0], s[1] if len(s) == 3 else 1) for t, s in ear.tap_shapes(n).items()}
    stats = loaded.stats.get("data", {}) if loaded.stats else {}
    charge = {t: v["std"].numpy() for t, v in stats.items()}
    graph = ear_graph(shapes, config=config, weights=_ear_weights(ear), charge=charge)
    positions = compute_layout(graph, config=config, device=device, progress=progress)
    sha = loaded.config.get("weights_sha256", "")
    layout = NeuronLayout(graph.taps, graph.shapes, positions, sha, config.to_dict())
    path = layout_cache_path(ear_dir, sha)
    try:
        layout.save(path)
    except OSError as exc:
        if progress is not None:
            progress(f"layout: cannot cache it at {path} ({exc.strerror}); it will be computed again next time")
    return layout
