"""earengine: a headless sound engine that dreams through an artificial ear.

Importing the package is light: it pulls in neither torch nor pyo. Sub-packages load their heavy
dependencies only when used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from earengine.errors import EarEngineError

__all__ = ["EarEngineError", "__version__"]
