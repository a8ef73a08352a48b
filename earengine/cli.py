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
    "earengine.engine.commands",
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
    """Run one command. Ctrl-C or SIGTERM stops it cleanly (one line, status 0); a closed pipe
    on stdout ends it silently (see :mod:`earengine.stops`)."""
    from earengine.stops import quiet_stdout, stop_signals

    command = "?"
    try:
        with stop_signals():
            parser = build_parser()
            try:
                args = parser.parse_args(argv)
            except SystemExit:  # --help, --version, a usage error: their output is flushed here
                sys.stdout.flush()
                raise
            command = args.command
            if not getattr(args, "func", None):
                parser.print_help()
                return 2
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
            return code
    except EarEngineError as exc:
        print(f"earengine {command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"earengine {command}: stopped", file=sys.stderr)
        return 0
    except BrokenPipeError:
        quiet_stdout()
        return 0
