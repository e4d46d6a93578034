"""Session fixtures for the cloud servers of ``harness/cloud_servers.py``:
``s3_server``, ``gcs_server``, ``azurite_server``; each sets its SDK's
variables for in-process clients while it runs. Registered from
``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from harness.cloud_servers import INSTALL_OPT_IN, AzuriteServer, GCSServer, S3Server, azurite_binary, azurite_dir


@contextmanager
def _env(env: dict[str, str]) -> Iterator[None]:
    """The servers' SDK variables for in-process clients (workers get them
    through ``Home.env``)."""
    mp = pytest.MonkeyPatch()
    for name, value in env.items():
        mp.setenv(name, value)
    try:
        yield
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    pytest.importorskip("moto", reason="moto[server] is not installed (pip install -e '.[test]')")
    server = S3Server().start()
    with _env(server.env):
        yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GCSServer]:
    pytest.importorskip("gcp_storage_emulator", reason="gcp-storage-emulator is not installed")
    server = GCSServer().start()
    with _env(server.env):
        yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    pytest.importorskip("azure.storage.blob", reason="azure-storage-blob is not installed")
    binary = azurite_binary()
    if binary is None:
        pytest.skip(
            f"Azurite is not installed in {azurite_dir()}: .ci/run installs it, or set {INSTALL_OPT_IN}=1"
            " (with node and npm) to let the suite npm-install it there"
        )
    server = AzuriteServer(binary).start(tmp_path_factory.mktemp("azurite"))
    with _env(server.env):
        yield server
    server.stop()
