"""Regenerate the documents derived from the parameter registry: docs/osc.md and the README's
parameter tables (the blocks between ``<!-- params ... -->`` and ``<!-- end params -->``).

Run by ``make docs``; tests fail when either has drifted from the rows.
"""

from __future__ import annotations

import pathlib

from earengine.params import default_registry
from earengine.params.docs import fill_readme, markdown

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main() -> None:
    registry = default_registry()
    (ROOT / "docs" / "osc.md").write_text(markdown(registry))
    readme = ROOT / "README.md"
    readme.write_text(fill_readme(readme.read_text(), registry))
    print("wrote docs/osc.md and the README's parameter tables")


if __name__ == "__main__":
    main()
