import pytest

from hostkit import cleanup, host_ready, make_classroom


@pytest.fixture
def classroom():
    """A throw-away classroom on the real host (root only), removed afterwards."""
    reason = host_ready()
    if reason:
        pytest.skip(reason)
    room = make_classroom()
    try:
        yield room
    finally:
        cleanup(room)
