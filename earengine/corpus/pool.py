"""The training pool: every soundtrack and the composers' training works, in one folder.

The pool holds links, not copies: ``pool/soundtracks/...`` and ``pool/composers/...`` point into
the two corpora, and ``manifest.json`` lists what each link is. Held-out composer works stay out,
so the composer probe tests the ear on music it never heard; the soundtracks go in whole, and
training itself keeps off the last 20 % of every track (see :class:`earengine.corpus.splits.Split`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Optional

from earengine.corpus.manifest import MANIFEST_FILE, Manifest
from earengine.errors import ConfigError

__all__ = ["build_pool"]


def build_pool(root: Path, *, stream: Optional[IO[str]] = None) -> Manifest:
    """(Re)make ``root/pool`` from ``root/soundtracks`` and ``root/composers``."""
    stream = stream if stream is not None else sys.stderr
    root = Path(root)
    pool = root / "pool"
    manifest = Manifest.new("pool")
    for kind in ("soundtracks", "composers"):
        if not (root / kind / MANIFEST_FILE).is_file():
            raise ConfigError(f"corpus {kind} must be built before the pool; run 'earengine corpus {kind}'")
        part = Manifest.load(root / kind, kind)
        manifest.sources[kind] = {"kind": "corpus", "tracks": len(part.tracks)}
        for t in part.tracks:
            if t.get("split", "train") != "train":
                continue
            link = pool / kind / t["out"]
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(os.path.relpath(root / kind / t["out"], link.parent))
            manifest.add_track(dict(t, out=f"{kind}/{t['out']}"))
    manifest.save(pool)
    print(f"corpus: pool: {len(manifest.tracks)} tracks, {manifest.total_s() / 3600:.2f} h; {pool}", file=stream)
    return manifest
