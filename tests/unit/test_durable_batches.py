"""How a batch of outcomes is made durable before it is recorded: one
syncfs for many files, fsyncs of the files and their directories (up to the
mountpath) for a few, directory fsyncs in per-file mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dlengine.ledger.models import Outcome
from dlengine.ledger.states import ObjectState
from dlengine.storage import durable
from dlengine.supervisor import worker

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []
    monkeypatch.setattr(durable, "syncfs", lambda path: seen.append(("syncfs", path)))
    monkeypatch.setattr(durable, "fsync_files", lambda paths: seen.append(("files", sorted(paths))))
    monkeypatch.setattr(durable, "fsync_dirs", lambda paths: seen.append(("dirs", sorted(set(paths)))))
    return seen


def _done(files: list[Path]) -> list[tuple[Outcome, Path | None]]:
    return [(Outcome(i, ObjectState.DONE), f) for i, f in enumerate(files)]


def test_many_files_one_syncfs(tmp_path: Path, calls: list[tuple[str, object]]) -> None:
    files = [tmp_path / "ais" / "b" / f"o{i}" for i in range(worker.FEW_FILES + 1)]
    worker.make_durable(_done(files), tmp_path, batch_sync=True)
    assert calls == [("syncfs", tmp_path)]


def test_many_files_fsynced_one_by_one_where_the_c_library_has_no_syncfs(
    tmp_path: Path, calls: list[tuple[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Batch mode is chosen from the kernel alone; the C library is asked
    at the first batch that would use syncfs.)"""
    monkeypatch.setattr(durable, "has_syncfs", lambda: False)
    files = [tmp_path / f"o{i}" for i in range(worker.FEW_FILES + 1)]
    worker.make_durable(_done(files), tmp_path, batch_sync=True)
    assert calls == [("files", sorted(files)), ("dirs", [tmp_path])]


def test_choosing_batch_mode_imports_no_ctypes() -> None:
    """ctypes (~3 ms) is for the first syncfs, not for every worker's and
    download command's start."""
    code = "import sys\nfrom dlengine.storage import durable\ndurable.syncfs_reports_errors()\n"
    code += "print('ctypes' in sys.modules)"
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.split() == ["False"], out.stderr


def test_a_few_files_fsynced_with_every_directory_up_to_the_mountpath(
    tmp_path: Path, calls: list[tuple[str, object]]
) -> None:
    bucket = tmp_path / "ais" / "b"
    files = [bucket / "big.bin", bucket / "sub" / "dir" / "other.bin"]
    failed = (Outcome(99, ObjectState.PENDING, error="x"), None)
    worker.make_durable([*_done(files), failed], tmp_path, batch_sync=True)
    dirs = [tmp_path, tmp_path / "ais", bucket, bucket / "sub", bucket / "sub" / "dir"]
    assert calls == [("files", sorted(files)), ("dirs", sorted(dirs))]


def test_nothing_installed_nothing_synced(tmp_path: Path, calls: list[tuple[str, object]]) -> None:
    skipped = [(Outcome(1, ObjectState.DONE), None), (Outcome(2, ObjectState.FAILED, error="x"), None)]
    worker.make_durable(skipped, tmp_path, batch_sync=True)
    assert calls == []


def test_per_file_mode_fsyncs_the_directories_only(tmp_path: Path, calls: list[tuple[str, object]]) -> None:
    files = [tmp_path / "ais" / "b" / f"o{i}" for i in range(20)]
    worker.make_durable(_done(files), tmp_path, batch_sync=False)
    assert calls == [("dirs", [str(tmp_path / "ais" / "b")])]


def test_fsync_files_skips_a_file_gone_meanwhile(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    kept.write_bytes(b"x")
    durable.fsync_files([tmp_path / "gone", kept])  # no error
    (tmp_path / "link").symlink_to(kept)
    with pytest.raises(OSError):
        durable.fsync_files([tmp_path / "link"])  # never through a symlink planted in its place
