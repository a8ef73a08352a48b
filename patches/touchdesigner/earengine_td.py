"""earengine for TouchDesigner: activation streams and the neuron layout as instanceable points.

Put this file in a Text DAT named ``earengine_td`` (or point a Text DAT's *File* parameter at it).
It keeps the stream's state in a module-level :class:`StreamState` that the OSC In DAT feeds and
a Script CHOP reads; see README.md beside it for the network. Plain Python, no TouchDesigner
imports, so the same code runs (and is tested) outside TouchDesigner.

What the engine sends (every datagram an OSC bundle, timetagged for when the frame sounds)::

    /stream/phase <frame> <phase>
    /stream/step <frame> <step> <loss>
    /stream/shape <tap> <values> <channels> <freq>
    /stream/act/<tap> <frame> <start> <count> v...       activations, in chunks
    /stream/mask/<tap> <frame> <start> <count> m...      1 where the dream's target reads
    /stream/layout/<tap> <frame> <start> <count> x y...  neuron positions in [-1, 1]
"""

STREAM = "/stream/"


class StreamState:
    """Everything received so far, assembled per tap.

    ``points()`` returns one entry per neuron (tap x channel x frequency) of every tap that has
    a layout: its position, its current activation and whether the target reads it. With
    ``/stream/reduce channel`` each channel's value lights all of that channel's rows.
    """

    def __init__(self):
        self.layout = {}  # tap -> [x0, y0, x1, y1, ...]
        self.acts = {}  # tap -> [value per channel, or per channel x frequency]
        self.mask = {}
        self.shape = {}  # tap -> (values, channels, freq)
        self.order = []  # taps in the order their layout arrived (the ear's order)
        self.frame = -1
        self.phase = 0.0
        self.step = -1
        self.loss = 0.0

    @staticmethod
    def _put(store, tap, start, values):
        buf = store.setdefault(tap, [])
        end = start + len(values)
        if len(buf) < end:
            buf.extend([0.0] * (end - len(buf)))
        buf[start:end] = [float(v) for v in values]

    def receive(self, address, args):
        """Take one OSC message (address, list of arguments); unknown ones are ignored."""
        if not address.startswith(STREAM):
            return
        kind, _, tap = address[len(STREAM):].partition("/")
        args = list(args)
        if kind == "phase" and len(args) >= 2:
            self.frame, self.phase = int(args[0]), float(args[1])
        elif kind == "step" and len(args) >= 3:
            self.step, self.loss = int(args[1]), float(args[2])
        elif kind == "shape" and len(args) >= 4:
            self.shape[str(args[0])] = (int(args[1]), int(args[2]), int(args[3]))
        elif kind in ("act", "mask", "layout") and tap and len(args) >= 3:
            start, count = int(args[1]), int(args[2])
            values = args[3:3 + count]
            store = {"act": self.acts, "mask": self.mask, "layout": self.layout}[kind]
            if kind == "layout" and tap not in self.order:
                self.order.append(tap)
            self._put(store, tap, start, values)

    def _per_neuron(self, store, tap, n):
        """A tap's values spread over its ``n`` neurons (channel values repeated over rows)."""
        values = store.get(tap, [])
        shape = self.shape.get(tap)
        if len(values) == n:
            return values
        if shape and len(values) == shape[1] and shape[1] * shape[2] == n:
            return [v for v in values for _ in range(shape[2])]
        return (values + [0.0] * n)[:n]

    def points(self, taps=None):
        """Columns for instancing: ``tx``, ``ty`` (and ``tz`` for a 3-D layout), ``act``,
        ``mask``, ``tap`` (index of the tap), one row per neuron."""
        out = {"tx": [], "ty": [], "tz": [], "act": [], "mask": [], "tap": []}
        for i, tap in enumerate(self.order):
            if taps is not None and tap not in taps:
                continue
            xy = self.layout[tap]
            dims = 3 if self.shape.get(tap) and len(xy) == 3 * self.shape[tap][1] * self.shape[tap][2] else 2
            n = len(xy) // dims
            out["tx"].extend(xy[0::dims][:n])
            out["ty"].extend(xy[1::dims][:n])
            out["tz"].extend(xy[2::dims][:n] if dims == 3 else [0.0] * n)
            out["act"].extend(self._per_neuron(self.acts, tap, n))
            out["mask"].extend(self._per_neuron(self.mask, tap, n))
            out["tap"].extend([float(i)] * n)
        return out


state = StreamState()


# -- TouchDesigner glue ----------------------------------------------------------------------
def receive(address, args):
    """Call from the OSC In DAT's callbacks: ``mod.earengine_td.receive(address, args)``."""
    state.receive(address, args)


def cook(scriptOp, taps=None):
    """Call from a Script CHOP's ``onCook``: one sample per neuron, channels tx ty tz act mask tap."""
    pts = state.points(taps)
    scriptOp.clear()
    scriptOp.numSamples = len(pts["tx"])
    for name in ("tx", "ty", "tz", "act", "mask", "tap"):
        scriptOp.appendChan(name).vals = pts[name]


def connect(oscout, listen_port, *, host="127.0.0.1", layers="all", reduce="channel_freq", fps=60):
    """Ask the engine (from an OSC Out DAT) for a stream to ``host:listen_port`` (this
    machine's address as the engine sees it, and the OSC In DAT's port).

    Replies and ``/changed`` notices come back to the same port; ``/stream/add`` sends the
    shapes, the target mask and the layout first.
    """
    oscout.sendOSC("/reply/port", [int(listen_port)])
    oscout.sendOSC("/stream/layers", [layers])
    oscout.sendOSC("/stream/reduce", [reduce])
    oscout.sendOSC("/stream/fps", [float(fps)])
    oscout.sendOSC("/stream/add", ["%s:%d" % (host, int(listen_port))])
    oscout.sendOSC("/notify", [1])
