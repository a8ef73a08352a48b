"""Files written whole or not at all: readers see the old file or the new one, never half."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Union

__all__ = ["atomic_write_bytes", "atomic_write_json", "temp_beside", "user_dir"]

# The process's umask, read once at import: reading it means setting it, and setting it while
# other threads create files would give them the wrong mode.
_UMASK = os.umask(0)
os.umask(_UMASK)


def user_dir(name: str) -> Path:
    """A folder of the user's earengine data: ``$EARENGINE_HOME/<name>``, else
    ``~/.local/share/earengine/<name>`` (not created here)."""
    home = os.environ.get("EARENGINE_HOME")
    return (Path(home) if home else Path.home() / ".local" / "share" / "earengine") / name


def temp_beside(path: Union[str, Path], *, suffix: str = ".tmp") -> tuple[int, str]:
    """A new hidden temporary file in ``path``'s folder, to be renamed onto ``path`` when whole.

    ``mkstemp`` makes the file private (0600); it gets the mode a plain ``open()`` would give
    (0666 less the umask), so that what earengine writes can be read by whoever the user lets
    read it (a DAW running as another user).

    Returns
    -------
    (fd, tmp) : (int, str)
        The open descriptor and the temporary file's path.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def atomic_write_bytes(path: Union[str, Path], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Union[str, Path], obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False, allow_nan=False) + "\n").encode())
