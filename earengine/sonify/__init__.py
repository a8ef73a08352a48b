"""earengine.sonify."""
