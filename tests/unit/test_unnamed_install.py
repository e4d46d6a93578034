"""``layout.install_unnamed``: a small object written into an unnamed file
(``O_TMPFILE``) in its own directory, then linked under its name. Nothing
is seen under the object's name or in ``.work`` until the bytes are all
written; the symlink guard of ``layout.install`` holds; and over an
existing object, or where the file system has no unnamed files, the caller
is told to go through the work file, nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dlengine.errors import PermanentError, UnsafeNameError
from dlengine.storage import layout

pytestmark = pytest.mark.skipif(not layout._O_TMPFILE, reason="no O_TMPFILE (or no /proc) here")


def _tree(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))


def _writer(data: bytes, seen: list[list[str]], root: Path, work: Path):  # type: ignore[no-untyped-def]
    def write(fd: int) -> None:
        seen.append(_tree(root) + (_tree(work) if work.exists() else []))  # what others see meanwhile
        os.write(fd, data)

    return write


def test_a_new_object_is_invisible_until_complete(tmp_path: Path) -> None:
    root, work = tmp_path / "ais" / "b", tmp_path / ".work"
    dest = root / "a" / "sub" / "x.bin"
    seen: list[list[str]] = []
    stored, created = layout.install_unnamed(str(dest), str(root), _writer(b"payload", seen, root, work))
    assert stored
    assert seen == [["a", "a/sub"]]  # its directories were there, the object not yet, no work file
    assert dest.read_bytes() == b"payload"
    assert oct(dest.stat().st_mode & 0o777) == oct(0o644 & ~_umask())
    assert {root / "a", root / "a" / "sub"} <= set(created)  # their entries are made durable too
    assert not work.exists()  # nothing created in .work at all


def test_an_existing_object_is_left_to_the_work_file(tmp_path: Path) -> None:
    """(A new version replaces the old in one rename of the work file: an
    unnamed file cannot be linked over a name, nor into .work here.) The
    unnamed file written meanwhile leaves nothing behind."""
    root = tmp_path / "ais" / "b"
    dest = root / "x.bin"
    root.mkdir(parents=True)
    dest.write_bytes(b"old version")
    stored, created = layout.install_unnamed(str(dest), str(root), lambda fd: os.write(fd, b"new") and None)
    assert not stored and created == []
    assert dest.read_bytes() == b"old version"
    assert _tree(tmp_path) == ["ais", "ais/b", "ais/b/x.bin"]


def test_symlinks_are_refused_and_nothing_is_written_through_them(tmp_path: Path) -> None:
    root, work = tmp_path / "ais" / "b", tmp_path / ".work"
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "a").mkdir(parents=True)
    (root / "a" / "link").symlink_to(outside)
    (root / "a" / "leaf").symlink_to(outside / "leaf")
    (root / "a" / "file").write_bytes(b"an object")
    before = _tree(root)
    for name, error in [
        ("a/link/x.bin", UnsafeNameError),
        ("a/link/new/x", UnsafeNameError),
        ("a/file/x", PermanentError),
    ]:
        with pytest.raises(error):
            layout.install_unnamed(str(root / name), str(root), lambda fd: os.write(fd, b"x") and None)
    # a symlink in the object's place: not linked over, nor written through; left to install's guard
    assert layout.install_unnamed(str(root / "a" / "leaf"), str(root), lambda fd: os.write(fd, b"x") and None) == (
        False,
        [],
    )
    assert _tree(outside) == [] and _tree(root) == before and not work.exists()
    with pytest.raises(UnsafeNameError):
        layout.install_unnamed(str(tmp_path / "elsewhere" / "x"), str(root), lambda fd: None)
    assert not (tmp_path / "elsewhere").exists()


def test_without_unnamed_files_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(A file system without O_TMPFILE cannot be made here: the flag's
    absence stands in for it.) The caller learns it must write the work
    file; the directories are still made and reported."""
    monkeypatch.setattr(layout, "_O_TMPFILE", 0)
    root = tmp_path / "ais" / "b"
    root.mkdir(parents=True)
    called: list[int] = []
    stored, created = layout.install_unnamed(str(root / "d" / "x"), str(root), called.append)
    assert not stored and called == [] and created == [root / "d"]


def _open_under(directory: Path) -> set[int]:
    """This process's descriptors open on a file under ``directory`` (an
    unnamed file's too: its link reads "DIR/#INODE (deleted)"); others, which
    a thread or the garbage collector of another test may open or close
    meanwhile, left out."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # (closed since the listing)
            continue
        if target.startswith(f"{directory}/"):
            found.add(int(name))
    return found


@pytest.mark.parametrize("way", ["descriptor", "proc"])
def test_named_by_its_descriptor_or_through_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: str) -> None:
    """linkat(AT_EMPTY_PATH) where the kernel allows it (root, or Linux
    6.10 and later), else through /proc/self/fd: the same object either
    way, and a refusal (an older kernel's ENOENT, which this machine's
    kernel never gives: a stand-in linkat) sends this and every later link
    through /proc."""
    import ctypes

    monkeypatch.setattr(layout, "_by_descriptor", True)
    calls: list[bytes] = []
    if way == "proc":

        def refused(tmp: int, empty: bytes, fd: int, leaf: bytes, flags: int) -> int:
            calls.append(leaf)
            ctypes.set_errno(2)  # ENOENT
            return -1

        monkeypatch.setattr(layout, "_linkat", refused)
    root = tmp_path / "ais" / "b"
    for name in ("x.bin", "y.bin"):
        assert layout.install_unnamed(str(root / name), str(root), lambda fd: os.write(fd, b"payload") and None)[0]
        assert (root / name).read_bytes() == b"payload"
    assert layout._by_descriptor is (way == "descriptor")
    assert calls == ([b"x.bin"] if way == "proc" else [])  # (refused once, then never asked again)
    assert _open_under(tmp_path) == set()  # nothing left open


def test_a_descriptor_kept_by_the_caller_stays_open(tmp_path: Path) -> None:
    """``keep`` takes the named file's descriptor (the worker's sync thread
    drops its pages through it later): it stays open, on the very file; a
    ``keep`` that declines has it closed."""
    root = tmp_path / "ais" / "b"
    kept: list[int] = []

    def keep(fd: int) -> bool:
        kept.append(fd)
        return True

    assert layout.install_unnamed(str(root / "x"), str(root), lambda fd: os.write(fd, b"xx") and None, keep)[0]
    assert layout.install_unnamed(
        str(root / "y"), str(root), lambda fd: os.write(fd, b"yy") and None, lambda fd: False
    )[0]
    (fd,) = kept
    assert _open_under(tmp_path) == {fd}
    assert os.fstat(fd).st_ino == (root / "x").stat().st_ino
    os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
