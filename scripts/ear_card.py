"""Write the model card (README.md) of a trained ear from its config.json and the pool manifest.

Usage: python scripts/ear_card.py MODEL_DIR --name NAME [--manifest POOL/manifest.json]
       --commands FILE [--notes FILE]

``--commands`` is a text file of the exact commands that made the ear (one per line); ``--notes``
a Markdown fragment placed after the probe tables (what limits the figures, the curve). Without
``--manifest`` the card keeps its "Music heard" section (new probes do not change what the ear heard).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from earengine.ear.card import write_card


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--name", required=True)
    ap.add_argument("--manifest", default=None, help="the pool manifest; leave out to keep the music heard")
    ap.add_argument("--commands", required=True)
    ap.add_argument("--notes", default=None)
    args = ap.parse_args()
    manifest = json.loads(Path(args.manifest).read_text()) if args.manifest else None
    commands = Path(args.commands).read_text().strip().splitlines()
    notes = Path(args.notes).read_text().rstrip().splitlines() if args.notes else None
    out = write_card(Path(args.model), name=args.name, commands=commands, manifest=manifest, notes=notes)
    print(f"ear card: wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
