"""earengine.synth."""
