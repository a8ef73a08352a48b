"""The control tests' shared fixture: a real UDP peer of a module's ``server``."""

import pytest

from tests.helpers.osc import Peer


@pytest.fixture
def peer(server):
    """A real UDP peer of the module's ``server`` fixture."""
    p = Peer(server.address)
    yield p
    p.close()
