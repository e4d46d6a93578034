"""``layout.install``'s guard (issue 13) on its own: every directory on
the way from the bucket to an object is checked, a symlink anywhere is
refused before anything is created or moved through it. The swap while a
worker runs is tests/e2e/test_symlink_swap.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlengine.errors import PermanentError, UnsafeNameError
from dlengine.storage import layout


def _tree(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))


def _work_file(tmp_path: Path, data: bytes) -> Path:
    part = tmp_path / "work" / "1.part"
    part.parent.mkdir(exist_ok=True)
    part.write_bytes(data)
    return part


def test_every_component_is_checked(tmp_path: Path) -> None:
    root = tmp_path / "ais" / "b"
    outside = tmp_path / "outside"
    outside.mkdir()
    created = layout.install(_work_file(tmp_path, b"x"), root / "a" / "sub" / "x.bin", root)
    assert (root / "a" / "sub" / "x.bin").read_bytes() == b"x"
    assert {root / "a", root / "a" / "sub"} <= set(created)  # their entries are made durable too
    (root / "a" / "link").symlink_to(outside)  # even a symlink that stays inside is refused
    (root / "a" / "inside").symlink_to(root / "a" / "sub")
    (root / "a" / "sub" / "leaf").symlink_to(outside / "leaf")
    (root / "a" / "file").write_bytes(b"an object")
    before = _tree(root)
    for name, error in [
        ("a/link/x.bin", UnsafeNameError),
        ("a/link/new/x.bin", UnsafeNameError),
        ("a/inside/x.bin", UnsafeNameError),
        ("a/sub/leaf", UnsafeNameError),
        ("a/file/x.bin", PermanentError),
    ]:
        part = _work_file(tmp_path, name.encode())
        with pytest.raises(error):
            layout.install(part, root.joinpath(*name.split("/")), root)
        assert part.read_bytes() == name.encode(), name  # the work file stays where it was
    part = _work_file(tmp_path, b"elsewhere")
    with pytest.raises(UnsafeNameError):
        layout.install(part, tmp_path / "elsewhere" / "x.bin", root)
    assert _tree(outside) == [] and _tree(root) == before  # nothing written or created through a link
    assert not (tmp_path / "elsewhere").exists()
    layout.install(part, root / "a" / "sub" / "y.bin", root)  # a real directory still works
    assert (root / "a" / "sub" / "y.bin").read_bytes() == b"elsewhere" and not part.exists()


def test_removing_a_directory_bucket_follows_no_symlink_and_keeps_another_homes_mark(tmp_path: Path) -> None:
    """``bucket rm`` of a directory: a ``.work`` that is a symlink is not
    followed (what it points to stays, so does the directory), and a mark
    of another home is not this home's to remove."""
    from dlengine.storage import identity

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "theirs.bin").write_bytes(b"x")
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / ".work").symlink_to(outside)
    identity.claim(bucket, "another-home", tmp_path / "other")
    identity.release(bucket, "this-home")
    assert layout.remove_directory_bucket(bucket) == [".dlengine-home", ".work"]
    assert _tree(outside) == ["theirs.bin"] and bucket.is_dir()

    identity.release(bucket, "another-home")  # (its own: gone)
    (bucket / ".work").unlink()
    (bucket / ".work").mkdir()
    (bucket / ".work" / "3.part").write_bytes(b"kept")
    assert layout.remove_directory_bucket(bucket) == [] and not bucket.exists()
    assert _tree(tmp_path) == ["outside", "outside/theirs.bin"]
