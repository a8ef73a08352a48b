"""``earengine sonify-demo``: the seed's experiments on real digits, rendered (and played live)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from earengine.errors import ParameterError
from earengine.params import default_registry, parse_sets


def _values(args: argparse.Namespace) -> dict:
    from earengine.sonify.mapping import SEED_PRESET

    values = dict(SEED_PRESET) if args.preset == "seed" else {}
    values.update(parse_sets(default_registry(), args.set or [], prefix="/son/"))
    return values


def _demo(args: argparse.Namespace) -> int:
    from earengine.sonify.demo import DemoConfig, describe, run_demo

    config = DemoConfig(optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size, steps=args.steps,
                        momentum=args.momentum, seed=DemoConfig.seed if args.seed is None else args.seed)
    out = Path(args.out).expanduser()
    if out.suffix.lower() != ".wav":
        raise ParameterError(f"--out={args.out} must end in .wav")
    png = Path(args.png).expanduser() if args.png else out.with_suffix(".png")
    values = _values(args)
    live = (args.host, args.port) if args.live else None
    print(f"sonify-demo: {config.name}, {config.steps} steps on scikit-learn's handwritten digits (28x28)"
          + (f"; playing live to the engine at {args.host}:{args.port}" if live else ""), flush=True)
    result = run_demo(config, out=out, png=png, values=values, live=live, progress=sys.stderr)
    for line in describe(result):
        print(line)
    seconds = sum(t.step_s for t in result.targets)
    print(f"wrote {out} ({seconds:.1f} s of sound) and {png}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sonify-demo", help="hear a CNN train on handwritten digits (after Perone 2019)",
                       description="Train the seed's CNN on scikit-learn's digits and hear its gradient norms: "
                                   "writes a WAV and a PNG of norms and pitch; --live also plays through the engine.")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--batch-size", type=int, default=10, help="batch size (default 10)")
    p.add_argument("--steps", type=int, default=200, help="training steps (default 200, as the seed)")
    p.add_argument("--momentum", type=float, default=0.5, help="SGD momentum (default 0.5, as the seed)")
    p.add_argument("--seed", type=int, default=None,
                   help="seeds the weights and the batch order (default: the seed whose five runs sound as "
                        "the original post describes)")
    p.add_argument("--out", required=True, help="WAV file to write")
    p.add_argument("--png", default=None, help="plot of norms and pitch (default: beside --out)")
    p.add_argument("--preset", choices=("default", "seed"), default="default",
                   help="seed: Perone's exact mapping and timing (200 Hz + 100 Hz per unit of norm)")
    p.add_argument("--set", action="append", metavar="/son/NAME=VALUE", help="a mapping value (repeatable)")
    p.add_argument("--live", action="store_true", help="also play through a running engine (one step per sounded step)")
    p.add_argument("--host", default="127.0.0.1", help="the engine's OSC host (with --live)")
    p.add_argument("--port", type=int, default=9000, help="the engine's OSC port (with --live)")
    p.set_defaults(func=_demo)
