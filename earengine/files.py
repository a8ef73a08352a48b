"""Files written whole or not at all, and named JSON files kept in a folder.

Writes are atomic: readers see the old file or the new one, never half. :class:`NamedJsonStore`
is the one store behind presets and MIDI controller maps: plain names (so a name never reaches
outside its folder), a user folder written atomically, a read-only folder shipped with earengine
read after it, and a list of the names in both.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from earengine.errors import PresetError

__all__ = ["atomic_write_bytes", "atomic_write_json", "temp_beside", "user_dir", "check_name", "NamedJsonStore"]

#: A plain name: no paths, no dots, so a name never reaches outside its folder.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

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


def check_name(name: Any, kind: str = "file") -> str:
    """Return ``name`` if it is a plain name (1-64 letters, digits, ``-``, ``_``), else raise a
    one-line PresetError that calls it a ``kind`` name.

    >>> check_name("club-128", "preset")
    'club-128'
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise PresetError(f"{kind} name={name!r} must be 1-64 letters, digits, '-' or '_' (no paths, no dots)")
    return name


class NamedJsonStore:
    """JSON objects by name: ``<folder>/<name>.json``, falling back to a shipped read-only folder.

    Parameters
    ----------
    folder : path-like
        Where :meth:`write` writes; created on the first write.
    shipped : path-like, optional
        Read-only files shipped with earengine, read when the user folder has no such name.
    kind : str
        What the files are, in words (``preset``, ``MIDI map``), for the messages.
    list_command : str
        The command that lists the names, named when a name is not found.
    shape : str
        What a file must hold, in words, for the message when it holds something else.

    Every error is a one-line :class:`~earengine.errors.PresetError` naming the file.

    Examples
    --------
    >>> import tempfile
    >>> store = NamedJsonStore(tempfile.mkdtemp(), kind="preset")
    >>> path = store.write("warm-pad", {"values": {"/loop/gain": -6.0}})
    >>> store.names(), store.read("warm-pad")
    (['warm-pad'], {'values': {'/loop/gain': -6.0}})
    >>> store.read("../etc/passwd")
    Traceback (most recent call last):
    ...
    earengine.errors.PresetError: preset name='../etc/passwd' must be 1-64 letters, digits, '-' or '_' (no paths, no dots)
    """

    def __init__(self, folder: Union[str, os.PathLike], *, shipped: Optional[Union[str, os.PathLike]] = None,
                 kind: str = "file", list_command: str = "", shape: str = "a JSON object") -> None:
        self.folder = Path(folder).expanduser()
        self.shipped = Path(shipped) if shipped else None
        self.kind = kind
        self.list_command = list_command
        self.shape = shape

    def dirs(self) -> list[Path]:
        """The folders searched, the user's first."""
        return [d for d in (self.folder, self.shipped) if d is not None]

    def check_name(self, name: Any) -> str:
        """Return ``name`` if it is a plain name, else raise a one-line PresetError."""
        return check_name(name, self.kind)

    def names(self) -> list[str]:
        """Every name in the user folder and the shipped one, sorted, each once."""
        found: set = set()
        for d in self.dirs():
            if d.is_dir():
                found.update(p.stem for p in d.glob("*.json") if _NAME.match(p.stem))
        return sorted(found)

    def path(self, name: str) -> Path:
        """The file a name stands for (the user's before the shipped one)."""
        self.check_name(name)
        for d in self.dirs():
            path = d / f"{name}.json"
            if path.is_file():
                return path
        where = f"; {self.list_command} shows the names" if self.list_command else ""
        raise PresetError(f"no {self.kind} named {name!r}{where}")

    def read(self, name: str) -> dict:
        """The file's JSON object (checked to be an object, nothing more)."""
        path = self.path(name)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise PresetError(f"{self.kind} {name!r} ({path}) is not valid JSON: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, Mapping):
            raise PresetError(f"{self.kind} {name!r} ({path}) must be {self.shape}")
        return dict(data)

    def write(self, name: str, data: Mapping[str, Any]) -> Path:
        """Write ``data`` atomically to ``<folder>/<name>.json`` (indented, keys sorted)."""
        self.check_name(name)
        path = self.folder / f"{name}.json"
        try:
            atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
        except OSError as exc:
            raise PresetError(f"cannot write {self.kind} {name!r} in {self.folder}: {exc.strerror or exc}") from None
        return path
