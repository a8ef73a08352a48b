"""Waiting for a condition: the one poll loop the tests share.

>>> wait_until(lambda: True)
True
>>> wait_until(lambda: False, 0.05, step_s=0.01)
False
"""

from __future__ import annotations

import time
from typing import Callable


def wait_until(check: Callable[[], object], timeout_s: float = 5.0, step_s: float = 0.02) -> bool:
    """Poll ``check()`` every ``step_s`` until it is true (True) or ``timeout_s`` pass (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step_s)
    return bool(check())
