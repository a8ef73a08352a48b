"""The control tests' shared fixture: a real UDP peer of a module's ``server`` or ``engine``."""

import pytest

from tests.helpers.osc import Peer


@pytest.fixture
def peer(request):
    """A real UDP peer of the module's ``server`` fixture or, in a module that serves a whole
    ``engine`` instead, of that engine's OSC server."""
    try:
        address = request.getfixturevalue("server").address
    except pytest.FixtureLookupError:
        address = request.getfixturevalue("engine").osc.address
    p = Peer(address)
    yield p
    p.close()
