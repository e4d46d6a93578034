"""Where things live on a mountpath::

<mountpath>/<provider>/<bucket>/<object name>      stored objects
<mountpath>/<provider>/@<namespace>/<bucket>/...   with a namespace
<mountpath>/hf/<org>/<name>/<path in repo>         a HuggingFace repo's local copy
<mountpath>/.work/<row id>.part                    bytes being downloaded
<mountpath>/.work/<row id>.meta                    validator of that part
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dlengine.errors import UnsafeNameError

WORK_DIR = ".work"


def bucket_dir(mountpath: Path, provider: str, namespace: str, bucket: str) -> Path:
    base = mountpath / provider
    if namespace:
        base = base / f"@{namespace}"
    return base.joinpath(*_bucket_parts(bucket))


def _bucket_parts(bucket: str) -> list[str]:
    """A bucket is one directory, a HuggingFace repo id (``org/name``) two:
    ``<mountpath>/hf/<org>/<name>``. Neither may climb out of its provider's
    directory, whatever validation let through."""
    parts = bucket.split("/")
    if len(parts) > 2 or any(p in ("", ".", "..") or "\0" in p or "\\" in p for p in parts):
        raise UnsafeNameError(f"bucket name {bucket!r} is not allowed")
    return parts


def object_path(mountpath: Path, provider: str, namespace: str, bucket: str, name: str) -> Path:
    """The path of ``name`` inside its bucket; never outside it.

    Names were validated at submission; this re-checks, because a name is
    turned into a path here and a bug elsewhere must not write outside.
    """
    root = bucket_dir(mountpath, provider, namespace, bucket)
    parts = name.split("/")
    if not name or name.startswith("/") or "\0" in name or any(p in ("", ".", "..") for p in parts):
        raise UnsafeNameError(f"object name {name!r} is not allowed")
    return root.joinpath(*parts)


# Directories this process created or checked: path -> (device, inode, root).
# A hit needs the path to still be that very directory (lstat, no symlink),
# so one planted later (or an ancestor swapped for a symlink, which changes
# what the path resolves to) misses and is checked again in full.
_checked: dict[str, tuple[int, int, str]] = {}
_CHECKED_MAX = 65536


def ensure_parent(path: Path, root: Path) -> None:
    """Create the directories of ``path`` and refuse symlinks that would lead
    it out of ``root`` (someone may have planted one in the bucket)."""
    parent = str(path.parent)
    try:
        st = os.lstat(parent)
        known = _checked.get(parent) == (st.st_dev, st.st_ino, str(root)) and stat.S_ISDIR(st.st_mode)
    except OSError:
        known = False
    if not known:
        path.parent.mkdir(parents=True, exist_ok=True)
        real_root = os.path.realpath(root)
        real_parent = os.path.realpath(parent)
        if os.path.commonpath([real_root, real_parent]) != real_root:
            raise UnsafeNameError(f"object {path} would leave its bucket through a symlink")
        st = os.lstat(parent)
        if stat.S_ISDIR(st.st_mode):
            if len(_checked) >= _CHECKED_MAX:
                _checked.clear()
            _checked[parent] = (st.st_dev, st.st_ino, str(root))
    if path.is_symlink():
        raise UnsafeNameError(f"object {path} is a symlink; refusing to replace it")


def work_dir(mountpath: Path) -> Path:
    return mountpath / WORK_DIR


def work_paths(mountpath: Path, row_id: int) -> tuple[Path, Path]:
    """(part file, meta file) of one object row."""
    base = work_dir(mountpath)
    return base / f"{row_id}.part", base / f"{row_id}.meta"


def remove_work_files(mountpath: Path, row_id: int) -> None:
    for path in work_paths(mountpath, row_id):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def work_file_ids(mountpath: Path) -> set[int]:
    """Row ids that have work files on this mountpath."""
    ids: set[int] = set()
    try:
        entries = os.listdir(work_dir(mountpath))
    except FileNotFoundError:
        return ids
    for entry in entries:
        stem = entry.split(".", 1)[0]
        if stem.isdigit():
            ids.add(int(stem))
    return ids
