"""``python -m earengine`` runs the command-line interface."""

from earengine.cli import main

raise SystemExit(main())
