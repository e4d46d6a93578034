"""Fixtures for the HF tests: a CDN (``cdn``), the fake Hub on it
(``hub``), and a home whose processes talk to it (``hhome``). One Hub per
test module; a module sets its listing page size by overriding
``hub_page_size``. Registered from ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.fakehub import FakeHub
from harness.home import Home
from harness.httpd import TestHTTPServer


@pytest.fixture(scope="module")
def hub_page_size() -> int:
    return 3


@pytest.fixture(scope="module")
def cdn() -> Iterator[TestHTTPServer]:
    with TestHTTPServer() as server:
        yield server


@pytest.fixture(scope="module")
def hub(cdn: TestHTTPServer, hub_page_size: int) -> Iterator[FakeHub]:
    server = FakeHub(cdn, page_size=hub_page_size).start()
    yield server
    server.stop()
    assert not server.errors, server.errors


@pytest.fixture
def hhome(home: Home, hub: FakeHub) -> Home:
    """A home whose processes talk to the fake Hub."""
    home.env.update(HF_ENDPOINT=hub.url, DLENGINE_ATTEMPTS="2")
    return home
