"""harness/loopfs.py: the benchmarks' journaled ext4 on a loop device is
made, has its journal, takes files, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness import loopfs

pytestmark = pytest.mark.skipif(loopfs.unavailable() is not None, reason=f"loop file system: {loopfs.unavailable()}")


def _device_of(mnt: Path) -> str:
    return subprocess.run(["findmnt", "-no", "SOURCE", str(mnt)], capture_output=True, text=True).stdout.strip()


def test_a_journaled_ext4_is_mounted_then_undone(tmp_path: Path) -> None:
    with loopfs.journaled(tmp_path, 64 << 20) as mnt:
        assert mnt is not None
        device = _device_of(mnt)
        assert device.startswith("/dev/loop")
        # the journal: ext4 names its journal thread per device; none without one
        journal = Path(f"/sys/fs/ext4/{Path(device).name}/journal_task").read_text().strip()
        assert journal != "<none>"
        (mnt / "obj").write_bytes(b"x" * 10240)
        os.sync()
        assert (mnt / "obj").stat().st_size == 10240
    assert _device_of(tmp_path / "mnt") == ""  # unmounted
    attached = subprocess.run(["losetup", "-j", str(tmp_path / "fs.img")], capture_output=True, text=True)
    assert attached.stdout.strip() == ""  # the loop device detached
    assert not (tmp_path / "fs.img").exists()


def test_a_failed_format_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError, match=r"mkfs\.ext4"), loopfs.journaled(tmp_path, 4096):  # (too small for ext4)
        pass
    assert not (tmp_path / "fs.img").exists()
