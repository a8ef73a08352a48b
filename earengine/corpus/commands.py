"""``earengine corpus``: build the real-music corpora into the cache folder."""

from __future__ import annotations

import argparse

__all__ = ["register"]

_KINDS = ("soundtracks", "composers", "pool", "all")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "corpus",
        help="build the real-music corpora (soundtracks, composers) into the cache folder",
        description="Build the training and probe corpora under $EARENGINE_HOME/corpus (or --root): "
        "soundtracks from Debian's game-music packages (downloaded with apt-get download, never "
        "installed), composers from music21's scores rendered on one piano with FluidSynth. "
        "Resumable: run it again after a stop and it goes on where it stopped.",
    )
    p.add_argument("kind", nargs="?", default="all", choices=_KINDS,
                   help="which corpus; pool links the soundtracks and the composers' training works "
                        "into one folder to train on (default all: the three in turn)")
    p.add_argument("--root", default=None, help="folder holding the corpora (default $EARENGINE_HOME/corpus)")
    p.add_argument("--packages", default=None,
                   help="comma-separated Debian packages or .deb files for the soundtracks "
                        "(default nexuiz-music,warzone2100-music,ufoai-music)")
    p.add_argument("--composers", default=None,
                   help="comma-separated music21 composers (default bach,beethoven,mozart,haydn,monteverdi)")
    p.add_argument("--minutes", type=float, default=None,
                   help="rendered minutes per composer (default 24)")
    p.set_defaults(func=_corpus)


def _names(text) -> list:
    return [n.strip() for n in text.split(",") if n.strip()] if text else []


def _corpus(args: argparse.Namespace) -> int:
    from pathlib import Path

    from earengine.corpus.manifest import corpus_home

    root = Path(args.root).expanduser() if args.root else None
    if args.kind in ("soundtracks", "all"):
        from earengine.corpus.soundtracks import DEFAULT_SOUNDTRACKS, build_soundtracks

        build_soundtracks(corpus_home("soundtracks", root), _names(args.packages) or DEFAULT_SOUNDTRACKS)
    if args.kind in ("composers", "all"):
        from earengine.corpus.composers import DEFAULT_COMPOSERS, build_composers

        kwargs = {"minutes": args.minutes} if args.minutes is not None else {}
        build_composers(corpus_home("composers", root), _names(args.composers) or DEFAULT_COMPOSERS, **kwargs)
    if args.kind in ("pool", "all"):
        from earengine.corpus.pool import build_pool

        build_pool(corpus_home("pool", root).parent)
    return 0
