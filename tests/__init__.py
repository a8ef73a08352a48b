"""earengine's test suite: a package, so every test imports the shared helpers as ``tests.helpers``."""
