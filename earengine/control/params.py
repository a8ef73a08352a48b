"""The OSC server's rows, declared once: its limits (``/osc/*``), the queries and system commands
(``/get``, ``/status``, ``/notify``, ``/sync``, ``/reply/port``, ``/counts``).

:data:`OSC_PARAMS` and :data:`OSC_COMMANDS` are concatenated into the registry's tables
(:mod:`earengine.params.catalog`). The router (:mod:`earengine.control.osc`) answers the
commands; the scheduler of future bundles (:mod:`earengine.control.bundles`) reads the limits for
every bundle whose timetag lies in the future, so a change applies to the next one.

Bundles timetagged in the future wait in a scheduler, as in scsynth. Its size is bounded twice,
so that no peer, however hostile, can make the engine hold an unbounded backlog: a bundle due
further ahead than ``/osc/horizon_s`` is refused, and so is one that arrives while
``/osc/sched_max`` bundles already wait. Each refusal is counted and answered
``/fail #bundle <reason>`` (at most :data:`FAIL_PER_S` such answers a second, so a flood cannot
make the engine flood back). A bundle whose time has passed runs at once and is counted late.
"""

from __future__ import annotations

from earengine.params.spec import ArgSpec, CommandSpec, ParamSpec

__all__ = ["OSC_PARAMS", "OSC_COMMANDS", "COUNTS_COMMANDS", "FAIL_PER_S", "SCHED_MAX_BYTES"]

#: Most ``/fail #bundle`` answers sent per second (the rest are counted, not answered).
FAIL_PER_S = 10
#: Most bytes of future bundles the scheduler holds, whatever ``/osc/sched_max`` says (a bundle
#: may be 64 KiB; 2,048 of them would otherwise be 128 MiB).
SCHED_MAX_BYTES = 4 * 1024 * 1024

_P = ParamSpec
OSC_PARAMS: tuple[ParamSpec, ...] = (
    _P("/osc/sched_max", "int", 2048, min=0, max=65536, unit="bundles",
       doc="Most future-timetagged bundles waiting at once (scsynth's queue holds 2048); one more is refused with /fail #bundle."),
    _P("/osc/horizon_s", "float", 60.0, min=0.0, max=86400.0, unit="s",
       doc="A bundle timetagged further ahead than this is refused with /fail #bundle; late ones run at once and are counted."),
)

OSC_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("/get", (ArgSpec("address", "str"),), reply="<address>",
                doc="Answers with the message that would set the parameter: <address> <value>."),
    CommandSpec("/status", (), reply="/status.reply",
                doc="Answers /status.reply <worker> <step> <steps_per_s> <loss> <loops> <bpm> <bar> <beat> <xruns> <settled>: "
                    "<bar> counts from 1, <beat> is the position in that bar from 1.0 (bar 8 beat 3.5); <settled> is how "
                    "settled the dream is, 0 right after a new target, near 1 once steps stop adding to it."),
    CommandSpec("/notify", (ArgSpec("on", "bool"),),
                doc="1 subscribes the sender to /changed <address> <value>; 0 unsubscribes."),
    CommandSpec("/sync", (ArgSpec("id", "int"),), reply="/synced",
                doc="Answers /synced <id> once every message before it has been handled."),
    CommandSpec("/reply/port", (ArgSpec("port", "int"),),
                doc="Send replies for this sender's address to this UDP port (0: back to the sending port)."),
)

#: ``/counts``: the engine's counters, listed after every other command.
COUNTS_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("/counts", (), reply="/counts.reply",
                doc="Answers /counts.reply <name> <value> … : datagrams received and dropped, bundles late and refused, "
                    "stream frames dropped for slow receivers, worker restarts, xruns."),
)
