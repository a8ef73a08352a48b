"""OSC: the wire format (:mod:`earengine.osc.wire`), below every layer that speaks it."""
