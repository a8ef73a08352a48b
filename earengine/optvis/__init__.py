"""earengine.optvis."""
