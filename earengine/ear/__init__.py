"""earengine.ear."""
