"""``earengine params``: the registry as plain lines, JSON or Markdown."""

from __future__ import annotations

import argparse


def _params(args: argparse.Namespace) -> int:
    from earengine.params import default_registry
    from earengine.params import docs

    registry = default_registry()
    if args.json:
        print(docs.as_json(registry))
    elif args.markdown:
        print(docs.markdown(registry), end="")
    else:
        print("\n".join(docs.plain_lines(registry)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="list every parameter and command")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="as JSON (the registry rows)")
    g.add_argument("--markdown", action="store_true", help="as the Markdown of docs/osc.md")
    p.set_defaults(func=_params)
