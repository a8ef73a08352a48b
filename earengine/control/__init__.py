"""earengine.control."""
