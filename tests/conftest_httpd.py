"""Pytest fixtures for the test HTTP server (``harness/httpd.py``).

Register from ``tests/conftest.py`` with
``pytest_plugins = ["tests.conftest_httpd"]`` (root conftest only) or
``from tests.conftest_httpd import httpd, httpd_session  # noqa: F401``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.httpd import TestHTTPServer

__all__ = ["httpd", "httpd_session"]


@pytest.fixture
def httpd() -> Iterator[TestHTTPServer]:
    """A fresh server for one test: empty store, no faults, zero stats."""
    with TestHTTPServer() as server:
        yield server
        _raise_handler_errors(server)


@pytest.fixture(scope="session")
def httpd_session() -> Iterator[TestHTTPServer]:
    """One server for the whole session; tests share its store and faults.

    Use unique paths per test, and ``clear_faults()`` / ``reset_stats()``
    when a test needs a clean slate.
    """
    with TestHTTPServer() as server:
        yield server
        _raise_handler_errors(server)


def _raise_handler_errors(server: TestHTTPServer) -> None:
    # A bug in the server must fail the test that hit it, not just print.
    if server.errors:
        raise AssertionError(f"test HTTP server raised: {server.errors!r}")
