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


def _access(spec) -> str:
    """The row's access in words, as the docs and ``earengine params`` show it."""
    return "read-write" if spec.writable else "read-only"


def _answers(command) -> str:
    """What the command answers on success, in words (:attr:`CommandSpec.answers`)."""
    if command.answers == "/done":
        return f"/done {command.address}"
    return command.answers or "nothing (data)"


def markdown(registry: Registry) -> str:
    """The OSC reference, one table row per parameter and per command (docs/osc.md)."""
    lines = [
        "# earengine OSC reference",
        "",
        "Generated from the parameter registry by `make docs` (or `earengine params --markdown`); do not",
        "edit by hand. Each feature declares its rows in its own `params.py`; `earengine/params/catalog.py`",
        "gathers them.",
        "",
        "Send to UDP 127.0.0.1:9000 by default. Replies follow one rule, scsynth's, for every row:",
        "setting a parameter is silent on success; a command answers `/done <address>` once it has done",
        "its work (one that reads or writes files, when that is over); a query answers with its own reply",
        "instead (the `answers` column); data sent many times a second (`/son/frame`, `/son/part`) answers",
        "nothing. Every rejected message is answered `/fail <address> <reason>` and changes nothing.",
        "`/get <address>` answers with the message that would set it. A read-only parameter is a reading",
        "the engine sets itself: read it with `/get` or `/notify`; setting it is answered",
        "`/fail <address> read-only …`. Replies go to the sender's port, or to the port named with",
        "`/reply/port <n>`.",
        "",
    ]
    for ns in registry.namespaces():
        params = [s for s in registry if s.namespace == ns]
        commands = [c for c in registry.commands.values() if c.namespace == ns]
        lines.append(f"## /{ns}")
        lines.append("")
        if params:
            lines.append("| address | type | range | default | unit | ramp ms | live | access | what it does |")
            lines.append("|---|---|---|---|---|---|---|---|---|")
            for s in params:
                lines.append(
                    f"| `{s.address}` | {s.type} | {_range(s)} | {_default(s)} | {s.unit} | "
                    f"{s.ramp_ms:g} | {'yes' if s.live else 'no'} | {_access(s)} | {s.doc} |"
                )
            lines.append("")
        if commands:
            lines.append("| command | arguments | answers | what it does |")
            lines.append("|---|---|---|---|")
            for c in commands:
                args = " ".join(f"<{a.name}>" for a in c.args)
                lines.append(f"| `{c.address}` | {args} | {_answers(c)} | {c.doc} |")
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
        out.append(f"{s.address}: {s.type}{'' if s.writable else ', read-only'}, default {_default(s)}"
                   f"{' ' + s.unit if s.unit else ''}{', range ' + rng if rng else ''}. {s.doc}")
    for c in registry.commands.values():
        args = " ".join(f"<{a.name}>" for a in c.args)
        out.append(f"{c.address}{' ' + args if args else ''}: command, answers {_answers(c)}. {c.doc}")
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
            doc = s.doc if s.writable else f"Read-only (the engine sets it). {s.doc}"
            lines.append(f"| `{s.address}` | {default} | {_range(s, s.unit)} | {doc} |")
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
