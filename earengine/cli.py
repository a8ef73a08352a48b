"""The ``earengine`` command.

Each sub-command lives beside the code it drives, in a ``commands`` module exposing
``register(subparsers)``; this file only gathers them. Heavy imports (torch, pyo) happen inside
the command functions, so ``earengine --help`` and ``earengine params`` stay fast.

Every user error ends in one plain line on stderr and exit status 2; no tracebacks for mistakes.
The files, folders and names a sub-command reads (:data:`INPUTS`) are checked before it starts,
so a mistyped path is that one line before any port opens, any model loads or anything is written.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

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
    "earengine.worker.commands",
)



def _ear(value: str, args: argparse.Namespace) -> Optional[str]:
    from earengine.ear.checkpoint import CONFIG_FILE, WEIGHTS_FILE

    path = Path(value)
    folder = path.parent if path.is_file() and path.name in (CONFIG_FILE, WEIGHTS_FILE) else path
    if all((folder / name).is_file() for name in (CONFIG_FILE, WEIGHTS_FILE)):
        return None
    return f"no such ear (expected a folder with {CONFIG_FILE} and {WEIGHTS_FILE})"


def _file(value: str, args: argparse.Namespace) -> Optional[str]:
    return None if Path(value).is_file() else "no such file"


def _new_file(value: str, args: argparse.Namespace) -> Optional[str]:
    folder = Path(value).parent
    return None if folder.is_dir() else f"no such folder to write it in ({folder})"


def _clips(value: str, args: argparse.Namespace) -> Optional[str]:
    if value == "synthetic" or value.startswith("synthetic:") or Path(value).is_dir():
        return None  # 'synthetic:N' is checked where it is parsed
    return "no such folder (expected a folder of audio files, or synthetic[:N])"


def _named(store, value: str, kind: str) -> Optional[str]:
    from earengine.errors import PresetError

    try:
        store.path(value)
    except PresetError:
        names = ", ".join(store.names()) or "none yet"
        where = " or ".join(str(d) for d in store.dirs())
        return f"no such {kind} (in {where}; there are: {names})"
    return None


def _preset(value: str, args: argparse.Namespace) -> Optional[str]:
    from earengine.files import user_dir
    from earengine.params.presets import PresetStore

    return _named(PresetStore(args.preset_dir or user_dir("presets")).files, value, "preset")


def _midi_map(value: str, args: argparse.Namespace) -> Optional[str]:
    from earengine.midi.bindings import MapStore

    return _named(MapStore().files, value, "MIDI map")


#: What each sub-command reads from files, folders and stores, checked before it starts:
#: ``{command: {option dest: (check, option dest that waives it, or None)}}``; a check returns
#: why the value will not do, or None. What a command writes is made by it, so only a new
#: file's folder is checked. :func:`build_parser` checks each entry against the options.
INPUTS: dict[str, dict[str, tuple[Callable[[str, argparse.Namespace], Optional[str]], Optional[str]]]] = {
    "run": {"ear": (_ear, "no_dream"), "loop": (_file, None), "preset": (_preset, None),
            "midi_map": (_midi_map, None), "record": (_new_file, None), "secret_file": (_file, None)},
    "worker": {"ear": (_ear, None), "secret_file": (_file, None), "new_secret": (_new_file, None)},
    "render": {"model": (_ear, None)},
    "train": {"data": (_clips, None)},
    "probe": {"model": (_ear, None), "compare": (_ear, None), "data": (_clips, None)},
    "layout": {"model": (_ear, None)},
}


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _check_inputs_table(commands: dict) -> None:
    """Every :data:`INPUTS` entry names an option (and a waiver) of its sub-command."""
    for command, checks in INPUTS.items():
        if command not in commands:
            continue  # a capability not built yet
        actions = {a.dest: a.option_strings for a in commands[command]._actions}
        for dest, (_, waiver) in checks.items():
            for name in (dest, waiver):
                if name is not None and _option(name) not in actions.get(name, ()):
                    raise RuntimeError(f"earengine.cli.INPUTS: {command} has no option {_option(name)}")


def check_inputs(args: argparse.Namespace) -> None:
    """Raise a one-line ParameterError for the first input of ``args.command`` that is not
    there, naming the option and the value as typed."""
    from earengine.errors import ParameterError

    for dest, (check, waiver) in INPUTS.get(args.command, {}).items():
        value = getattr(args, dest, None)
        if value is None or value == "" or (waiver is not None and getattr(args, waiver, False)):
            continue
        why = check(str(value), args)
        if why is not None:
            raise ParameterError(f"{_option(dest)} {value}: {why}")


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
    _check_inputs_table(sub.choices)
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
            check_inputs(args)
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
