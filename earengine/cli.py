"""The ``earengine`` command.

Each sub-command lives beside the code it drives, in a ``commands`` module exposing
``register(subparsers)``; this file only gathers them. Heavy imports (torch, pyo) happen inside
the command functions, so ``earengine --help`` and ``earengine params`` stay fast.

Every user error ends in one plain line on stderr and exit status 2; no tracebacks for mistakes.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from earengine import __version__
from earengine.errors import EarEngineError

# Modules that contribute sub-commands, in the order they appear in --help.
COMMAND_MODULES = (
    "earengine.engine_commands",
    "earengine.params.commands",
    "earengine.ear.commands",
    "earengine.corpus.commands",
    "earengine.optvis.commands",
    "earengine.sonify.commands",
    "earengine.viz.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="earengine",
        description="A headless sound engine that dreams through an artificial ear.",
    )
    parser.add_argument("--version", action="version", version=f"earengine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a capability not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EarEngineError as exc:
        print(f"earengine {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"earengine {args.command}: stopped", file=sys.stderr)
        return 130
