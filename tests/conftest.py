"""Makes the test helpers in this folder importable (``from layout import build``), and the
fixtures several test files share."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def opener(backend_name):
    """``open_(name, **options)``: a port on the chosen backend, closed after the test (last
    opened first)."""
    import netmap_core

    ports = []

    def open_(name, **kw):
        p = netmap_core.open(name, backend=backend_name, **kw)
        ports.append(p)
        return p

    yield open_
    for p in reversed(ports):
        p.close()
