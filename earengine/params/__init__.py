"""earengine.params."""
