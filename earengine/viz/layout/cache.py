"""A computed neuron layout, its files (JSON and CSV), and its cache.

:class:`NeuronLayout` (numpy only, loaded by the engine process) holds the positions; it is
computed once per ear and layout settings, and exported as CSV or JSON by ``earengine layout
--model M --out F``.

Where a layout is found (:func:`read_cached_layout`): the ``layout.json`` an ear's folder carries
(the shipped ears do), when it was made from these weights with these settings; else the cache,
``$EARENGINE_HOME/cache/layouts/<weights hash>-<settings key>.json``. A computed layout goes to
the cache (:func:`cached_layout`); nothing is written into an ear's folder unless asked
(``save_to_ear``, ``earengine layout --save-to-ear``), so a shipped or shared ear stays as it came.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np

from earengine.ear.checkpoint import load_ear, read_config
from earengine.errors import ConfigError, ParameterError
from earengine.files import atomic_write_bytes, user_dir
from earengine.viz.layout.forces import compute_layout
from earengine.viz.layout.graph import LayoutConfig, ear_graph

__all__ = ["NeuronLayout", "cached_layout", "read_cached_layout", "layout_cache_path", "FORMAT", "EAR_FILE"]

FORMAT = "earengine-layout"
FORMAT_VERSION = 1
#: The layout an ear's folder may carry (the shipped ears do); written only when asked.
EAR_FILE = "layout.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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


def _settings_key(config: LayoutConfig) -> str:
    """12 hex digits naming the layout settings and the file format (a new format, a new key)."""
    text = json.dumps({"format_version": FORMAT_VERSION, **config.to_dict()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def layout_cache_path(ear_sha256: str, config: LayoutConfig = LayoutConfig()) -> Path:
    """Where the layout of an ear (by its weights hash) with these settings is cached:
    ``$EARENGINE_HOME/cache/layouts/<ear_sha256>-<settings key>.json``
    (``~/.local/share/earengine/cache/…`` without ``$EARENGINE_HOME``).

    >>> flat, deep = layout_cache_path("ab" * 32), layout_cache_path("ab" * 32, LayoutConfig(dims=3))
    >>> flat.parent.name, flat.name.startswith("ab" * 32), flat != deep
    ('layouts', True, True)
    """
    if not isinstance(ear_sha256, str) or not _SHA256.match(ear_sha256):
        raise ConfigError(f"weights_sha256={ear_sha256!r} must be 64 lowercase hex digits (the ear's config.json)")
    return user_dir("cache") / "layouts" / f"{ear_sha256}-{_settings_key(config)}.json"


def _ear_folder(ear_dir: Union[str, Path]) -> Path:
    """The checkpoint folder (a path to its config.json or weights names the folder too)."""
    path = Path(ear_dir)
    return path.parent if path.is_file() else path


def _find_layout(ear_dir: Union[str, Path], config: LayoutConfig) -> tuple[Optional[NeuronLayout], Optional[Path]]:
    """(layout, file) of the first stored layout of these weights and settings: the ear's own
    file, then the cache; (None, None) when there is none."""
    sha = read_config(ear_dir).get("weights_sha256", "")
    for path in (_ear_folder(ear_dir) / EAR_FILE, layout_cache_path(sha, config)):
        if not path.is_file():
            continue
        try:
            layout = NeuronLayout.load(path)
        except ConfigError:
            continue  # a damaged or foreign file is computed again, not trusted
        if layout.ear_sha256 == sha and layout.config == config.to_dict():
            return layout, path
    return None, None


def read_cached_layout(ear_dir: Union[str, Path], config: LayoutConfig = LayoutConfig()) -> Optional[NeuronLayout]:
    """The stored layout of a checkpoint folder for these weights and settings, if there is
    one: the ear's own ``layout.json`` when it matches, else the cache (no torch)."""
    return _find_layout(ear_dir, config)[0]


def cached_layout(ear_dir: Union[str, Path], *, config: LayoutConfig = LayoutConfig(), device: str = "cpu",
                  fresh: bool = False, save_to_ear: bool = False,
                  progress: Optional[Callable[[str], None]] = None) -> NeuronLayout:
    """The layout of a checkpoint's ear: stored (:func:`read_cached_layout`), else computed and
    cached under ``$EARENGINE_HOME/cache/layouts``.

    Parameters
    ----------
    fresh : bool
        Compute it again even when one is stored.
    save_to_ear : bool
        Also write it into the ear's folder as ``layout.json`` (the file shipped with an ear), in
        place of the cache; the only way anything is written there. A folder that cannot be
        written is a one-line :class:`~earengine.errors.ConfigError`.
    progress : callable, optional
        Told, in one line each, where the layout came from and where it went.
    """
    say = progress or (lambda line: None)
    layout, found = (None, None) if fresh else _find_layout(ear_dir, config)
    if layout is None:
        layout = _compute(ear_dir, config, device, progress)
        say(f"layout: computed ({layout.positions.shape[0]} neurons)")
    else:
        say(f"layout: read from {found}")
    ear_file = _ear_folder(ear_dir) / EAR_FILE
    if save_to_ear and found != ear_file:
        try:
            layout.save(ear_file)
        except OSError as exc:
            why = exc.strerror or exc
            raise ConfigError(f"cannot save the layout into the ear's folder, {ear_file} ({why})") from None
        say(f"layout: saved in the ear's folder, {ear_file}")
    elif found is None:
        path = layout_cache_path(layout.ear_sha256, config)
        try:
            layout.save(path)
            say(f"layout: cached at {path}")
        except OSError as exc:
            say(f"layout: cannot cache it at {path} ({exc.strerror or exc}); it will be computed again next time")
    return layout


def _compute(ear_dir, config: LayoutConfig, device: str, progress) -> NeuronLayout:
    """Lay out the ear's neurons (loads torch and the weights)."""
    loaded = load_ear(ear_dir, device="cpu")
    ear = loaded.ear
    n = ear.samples_per_step * 8
    shapes = {t: (s[0], s[1] if len(s) == 3 else 1) for t, s in ear.tap_shapes(n).items()}
    stats = loaded.stats.get("data", {}) if loaded.stats else {}
    charge = {t: v["std"].numpy() for t, v in stats.items()}
    graph = ear_graph(shapes, config=config, weights=_ear_weights(ear), charge=charge)
    positions = compute_layout(graph, config=config, device=device, progress=progress)
    sha = loaded.config.get("weights_sha256", "")
    return NeuronLayout(graph.taps, graph.shapes, positions, sha, config.to_dict())
