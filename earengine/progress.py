"""Progress reporting that reads well on a terminal, in a log and through a screen reader.

On a terminal a single line is redrawn in place (at most a few times a second); anywhere else
(a pipe, a file, CI) plain lines are printed at a fixed interval, each complete on its own, so a
screen reader or ``tail -f`` never sees half-drawn bars or spinners.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Optional

__all__ = ["Progress"]


class Progress:
    """A progress reporter for ``total`` units of work.

    Parameters
    ----------
    total : int > 0
        Units of work (steps, files, loops).
    label : str
        What is being done, e.g. ``"train"``.
    stream : file-like, optional
        Where to write; ``sys.stderr`` by default.
    interval_s : float > 0
        Seconds between plain lines when ``stream`` is not a terminal.
    tty : bool, optional
        Force terminal (True) or plain-line (False) mode; detected by default.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> with Progress(3, "demo", stream=out, interval_s=0.0, tty=False) as p:
    ...     for _ in range(3):
    ...         p.update(1, loss=0.5)
    >>> out.getvalue().splitlines()[-1]
    'demo: done, 3 of 3 in 0.0 s'
    """

    def __init__(
        self,
        total: int,
        label: str,
        *,
        stream: Optional[IO[str]] = None,
        interval_s: float = 10.0,
        tty: Optional[bool] = None,
    ) -> None:
        if total <= 0:
            raise ValueError(f"total={total} must be > 0")
        self.total = int(total)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s = float(interval_s)
        self.tty = bool(tty) if tty is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self._t0 = time.monotonic()
        self._last = -1e9
        self._fields: dict[str, object] = {}

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is KeyboardInterrupt:  # stopped: the command says so in its one line
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()
            return
        self.close()

    def _line(self) -> str:
        elapsed = time.monotonic() - self._t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.done / self.total
        parts = [f"{self.label}: {self.done} of {self.total} ({pct:.0f}%)"]
        for key, value in self._fields.items():
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
        parts.append(f"{rate:.2f}/s")
        if eta == eta:  # not NaN
            parts.append(f"about {eta:.0f} s left")
        return ", ".join(parts)

    def update(self, n: int = 1, **fields: object) -> None:
        """Record ``n`` more units done and the latest named values (loss, lr, …)."""
        self.done = min(self.total, self.done + int(n))
        self._fields.update(fields)
        now = time.monotonic()
        if self.tty:
            if now - self._last >= 0.25 or self.done == self.total:
                self.stream.write("\r" + self._line() + "\033[K")
                self.stream.flush()
                self._last = now
        elif now - self._last >= self.interval_s:
            self.stream.write(self._line() + "\n")
            self.stream.flush()
            self._last = now

    def close(self) -> None:
        """Finish with one plain summary line."""
        elapsed = time.monotonic() - self._t0
        if self.tty:
            self.stream.write("\n")
        self.stream.write(f"{self.label}: done, {self.done} of {self.total} in {elapsed:.1f} s\n")
        self.stream.flush()
