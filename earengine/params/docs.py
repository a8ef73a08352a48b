"""Documents derived from the registry rows: docs/osc.md, the README's parameter tables,
``earengine params`` output.

The README holds prose around tables that are generated, never typed: each sits between
``<!-- params PREFIX ... -->`` and ``<!-- end params -->`` and is rewritten by :func:`fill_readme`
(``make docs``); a test fails when one has drifted from the rows.
"""

from __future__ import annotations

import json
import re

from earengine.params.registry import Registry

__all__ = ["markdown", "as_json", "plain_lines", "param_table", "fill_readme"]


def _range(spec, unit: str = "") -> str:
    """The row's choices or range, with ``unit`` after the numbers when given."""
    if spec.type == "enum":
        return ", ".join(spec.choices)
    if spec.type == "bool":
        return "0 or 1"
    if spec.min is None and spec.max is None:
        return ""
    return f"{spec.min:g} … {spec.max:g}" + (f" {unit}" if unit else "") + (" (log)" if spec.scale == "log" else "")


def _default(spec, unit: str = "") -> str:
    """The row's default as sent over OSC, with ``unit`` after a number when given."""
    value = spec.default
    if spec.type == "bool":
        return str(int(value))
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{text} {unit}" if unit and text and spec.type in ("int", "float") else text


def markdown(registry: Registry) -> str:
    """The OSC reference, one table row per parameter and per command (docs/osc.md)."""
    lines = [
        "# earengine OSC reference",
        "",
        "Generated from the parameter registry by `make docs` (or `earengine params --markdown`); do not",
        "edit by hand. Each feature declares its rows in its own `params.py`; `earengine/params/catalog.py`",
        "gathers them.",
        "",
        "Send to UDP 127.0.0.1:9000 by default. Setting a parameter is silent on success; every rejected",
        "message is answered `/fail <address> <reason>` and changes nothing. `/get <address>` answers with",
        "the message that would set it. Replies go to the sender's port, or to the port named with",
        "`/reply/port <n>`.",
        "",
    ]
    for ns in registry.namespaces():
        params = [s for s in registry if s.namespace == ns]
        commands = [c for c in registry.commands.values() if c.namespace == ns]
        lines.append(f"## /{ns}")
        lines.append("")
        if params:
            lines.append("| address | type | range | default | unit | ramp ms | live | what it does |")
            lines.append("|---|---|---|---|---|---|---|---|")
            for s in params:
                lines.append(
                    f"| `{s.address}` | {s.type} | {_range(s)} | {_default(s)} | {s.unit} | "
                    f"{s.ramp_ms:g} | {'yes' if s.live else 'no'} | {s.doc} |"
                )
            lines.append("")
        if commands:
            lines.append("| command | arguments | answers | what it does |")
            lines.append("|---|---|---|---|")
            for c in commands:
                args = " ".join(f"<{a.name}>" for a in c.args)
                answers = c.reply or ("/done" if c.later else "")
                lines.append(f"| `{c.address}` | {args} | {answers} | {c.doc} |")
            lines.append("")
    return "\n".join(lines)


def as_json(registry: Registry) -> str:
    return json.dumps(
        {"params": [s.to_dict() for s in registry], "commands": [c.to_dict() for c in registry.commands.values()]},
        indent=2,
    )


def plain_lines(registry: Registry) -> list[str]:
    """One line per parameter, for a terminal or a screen reader."""
    out = []
    for s in registry:
        rng = _range(s)
        out.append(f"{s.address}: {s.type}, default {_default(s)}{' ' + s.unit if s.unit else ''}"
                   f"{', range ' + rng if rng else ''}. {s.doc}")
    for c in registry.commands.values():
        args = " ".join(f"<{a.name}>" for a in c.args)
        out.append(f"{c.address}{' ' + args if args else ''}: command. {c.doc}")
    return out


def param_table(registry: Registry, prefixes: "tuple[str, ...] | list[str]") -> str:
    """A Markdown table of the parameters whose address starts with one of ``prefixes``.

    >>> from earengine.params.spec import ParamSpec
    >>> reg = Registry([ParamSpec("/son/gain", "float", -20.0, min=-80.0, max=0.0, unit="dB", doc="Level.")])
    >>> print(param_table(reg, ["/son/"]))
    | parameter | default | range | what it does |
    |---|---|---|---|
    | `/son/gain` | -20 dB | -80 … 0 dB | Level. |
    """
    lines = ["| parameter | default | range | what it does |", "|---|---|---|---|"]
    for s in registry:
        if any(s.address.startswith(p) for p in prefixes):
            default = _default(s, s.unit)
            default = f"`{default}`" if s.type in ("enum", "str") and default else default
            lines.append(f"| `{s.address}` | {default} | {_range(s, s.unit)} | {s.doc} |")
    return "\n".join(lines)


_BLOCK = re.compile(r"(<!-- params (?P<prefixes>[^>]*?) -->\n)(?P<body>.*?)(<!-- end params -->)", re.S)


def fill_readme(text: str, registry: Registry) -> str:
    """``text`` with every generated block rewritten from the rows (see the module docstring).

    >>> from earengine.params.spec import ParamSpec
    >>> reg = Registry([ParamSpec("/loop/mute", "bool", False, doc="Silence.")])
    >>> print(fill_readme("<!-- params /loop/ -->\\nstale\\n<!-- end params -->", reg))
    <!-- params /loop/ -->
    | parameter | default | range | what it does |
    |---|---|---|---|
    | `/loop/mute` | 0 | 0 or 1 | Silence. |
    <!-- end params -->
    """
    def block(m: "re.Match[str]") -> str:
        table = param_table(registry, m.group("prefixes").split())
        return f"{m.group(1)}{table}\n{m.group(4)}"

    return _BLOCK.sub(block, text)
