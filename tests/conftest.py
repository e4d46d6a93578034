"""Shared fixtures: a fresh dlengine home per test (``harness/home.py``), a
CLI runner, and the servers of ``harness/`` (registered below)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.home import HF_ENV, ROOT, Home, _lock_holder, counters_match_rows, new_home, wait_for, worker_pids

# the helpers the tests import from here (they live in harness/home.py)
__all__ = [
    "HF_ENV", "ROOT", "Home", "_lock_holder", "counters_match_rows", "new_home", "tmpfs", "wait_for", "worker_pids",
]  # fmt: skip

pytest_plugins = ["tests.conftest_httpd", "tests.conftest_cloud", "tests.conftest_seaweedfs", "tests.conftest_hf"]

os.environ.update(HF_ENV)  # this process too, before anything imports huggingface_hub


@contextmanager
def tmpfs(path: Path, size: int, options: str = "") -> Iterator[Path]:
    """A real small file system (tmpfs of ``size`` bytes) mounted at ``path``
    for disk-full tests; the test is skipped where mounting is not allowed.
    Whatever runs on it must be stopped before the block ends."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (f",{options}" if options else "")
    try:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
        reason = None if res.returncode == 0 else (res.stderr.strip() or f"mount exited {res.returncode}")
    except OSError as exc:
        reason = str(exc)
    if reason is not None:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {reason}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    """A fresh DLENGINE_HOME; any supervisor left running is killed after."""
    h = new_home(tmp_path / "home")
    yield h
    h.stop_all()


def self_signed_cert(tmp: Path) -> tuple[Path, Path]:
    """(certificate, key) for HTTPS on 127.0.0.1, made with openssl (the
    test is skipped without it)."""
    from harness.cloud_servers import self_signed_cert as make

    try:
        return make(tmp)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a certificate with openssl: {exc}")
