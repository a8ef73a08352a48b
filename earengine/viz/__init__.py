"""earengine.viz."""
