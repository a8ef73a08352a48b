import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


import pytest  # noqa: E402

from oscutil import Peer  # noqa: E402


@pytest.fixture
def peer(server):
    """A real UDP peer of the module's ``server`` fixture."""
    p = Peer(server.address)
    yield p
    p.close()
