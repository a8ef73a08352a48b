"""The build's one hook: a wheel carries the shipped ears of the top-level ``models/`` folder.

Everything else about the package is in ``pyproject.toml``. The shipped ears (weights, config,
model card, neuron layout) live in ``models/`` beside the package, where the project's layout
names them; ``build_py`` copies them into the built package as ``earengine/models/``, where
``earengine.resources`` finds them in an installed wheel. An editable install (``pip install -e
.``, what ``make`` runs) needs no copy: ``earengine.resources`` reads ``models/`` in the checkout.
A build without the shipped ear stops with the reason, so no wheel goes out without it.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MODELS = Path(__file__).resolve().parent / "models"
#: What every shipped ear folder holds (earengine.ear.checkpoint reads the first two).
EAR_FILES = ("config.json", "model.safetensors", "README.md")


class build_py_with_models(build_py):
    """``build_py``, then ``models/<ear>/*`` into ``<build_lib>/earengine/models/<ear>/``."""

    def _model_files(self):
        ears = sorted(p for p in MODELS.glob("*") if p.is_dir())
        missing = [f"models/{ear.name}/{name}" for ear in ears for name in EAR_FILES if not (ear / name).is_file()]
        if not ears or missing:
            raise SystemExit(f"earengine build: the shipped ears must be in {MODELS} "
                             f"(missing: {', '.join(missing) or 'every ear folder'})")
        return [p for ear in ears for p in sorted(ear.rglob("*")) if p.is_file()]

    def _target(self, src: Path) -> str:
        return str(Path(self.build_lib, "earengine", "models", src.relative_to(MODELS)))

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the checkout's models/ is read in place
        for src in self._model_files():
            target = self._target(src)
            self.mkpath(str(Path(target).parent))
            self.copy_file(str(src), target, preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        return outputs + [self._target(src) for src in self._model_files()]


setup(cmdclass={"build_py": build_py_with_models})
