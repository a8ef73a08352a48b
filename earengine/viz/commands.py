"""``earengine layout``: the force-directed neuron layout of an ear, as CSV or JSON.

torch is imported inside the function, so ``earengine --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "layout",
        help="lay out an ear's neurons as a force-directed graph (CSV or JSON)",
        description="Compute the force-directed layout of every neuron (tap x channel x frequency) and "
        "write it as CSV (index,tap,channel,freq,x,y) or JSON. A layout is computed once per ear and "
        "settings: the ear's own layout.json is read when it matches, else the cache under "
        "$EARENGINE_HOME/cache/layouts, where a computed one goes. Nothing is written into the ear's "
        "folder unless --save-to-ear asks. The engine sends the default layout to stream destinations.",
    )
    p.add_argument("--model", required=True, help="ear checkpoint folder")
    p.add_argument("--out", default=None, help="file to write, .csv or .json (default: only cache it)")
    p.add_argument("--dims", type=int, default=2, choices=(2, 3), help="2-D or 3-D positions (default 2)")
    p.add_argument("--iterations", type=int, default=None, help="most steps per level (default 300)")
    p.add_argument("--theta", type=float, default=None, help="Barnes-Hut opening criterion (default 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--fresh", action="store_true", help="compute again even if a cached layout exists")
    p.add_argument("--save-to-ear", action="store_true",
                   help="write it into the ear's folder as layout.json, the file shipped with an ear, "
                        "instead of the cache (default: nothing is written into the ear's folder)")
    p.set_defaults(func=_layout)


def _layout(args: argparse.Namespace) -> int:
    from pathlib import Path

    from earengine.errors import ParameterError
    from earengine.viz.layout import LayoutConfig, cached_layout

    if args.out is not None and Path(args.out).suffix.lower() not in (".csv", ".json"):
        raise ParameterError(f"--out={args.out!r} must end in .csv or .json")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    values = {"dims": args.dims, "seed": args.seed}
    if args.iterations is not None:
        values["iterations"] = args.iterations
    if args.theta is not None:
        values["theta"] = args.theta
    config = LayoutConfig(**values)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    layout = cached_layout(args.model, config=config, device=args.device, fresh=args.fresh,
                           save_to_ear=args.save_to_ear, progress=say)
    say(f"layout: {layout.positions.shape[0]} neurons in {len(layout.taps)} taps, {layout.dims}-D")
    if args.out is not None:
        layout.save(args.out)
        say(f"layout: wrote {args.out}")
    return 0
