"""A mountpath belongs to one home.

Work files are named by ledger row id, so two homes writing into one
mountpath would mix each other's bytes (issue 13: home A recorded ``L0.bin``
done while the file held home B's ``L1.bin``). The first home to use a
mountpath writes its id into ``<mountpath>/.dlengine-home`` under an
exclusive ``flock``; every later submit and supervisor start of any home
checks it, and another home is refused with a message.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from pathlib import Path

from dlengine.errors import ConfigError

MARK = ".dlengine-home"


def claim(mountpath: Path, home_id: str, home: Path, field: str = "DLENGINE_MOUNTPATHS") -> None:
    """Make ``mountpath`` this home's, or raise ConfigError if it is another's.
    ``field``: what the user named it with (a directory destination's bucket)."""
    try:
        mountpath.mkdir(parents=True, exist_ok=True)
        fd = os.open(mountpath / MARK, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        # mkdir of an existing file says "File exists", of a path through one "Not a directory"
        reason = "it is not a directory" if exc.errno in (errno.EEXIST, errno.ENOTDIR) else exc.strerror or exc
        raise ConfigError(f"{field}: cannot use {mountpath} as a directory: {reason}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # two homes starting at once: one writes, the other reads it
        held = _read(fd)
        if held is None:
            _write(fd, {"id": home_id, "home": str(home)})
        elif held.get("id") != home_id:
            raise ConfigError(
                f"mountpath {mountpath} belongs to another dlengine home ({held.get('home', '?')}):"
                f" give each home its own mountpaths, or remove {mountpath / MARK} if that home is gone"
            )
    finally:
        os.close(fd)  # releases the lock


def release(mountpath: Path, home_id: str) -> None:
    """Remove this home's mark from ``mountpath`` (a directory bucket that
    is removed); a mark of another home, or one this process cannot read,
    stays as it is."""
    path = mountpath / MARK
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # none, or a symlink: nothing of ours
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # (not while a claim of another home writes it)
        held = _read(fd)
        if held is not None and held.get("id") == home_id:
            path.unlink()
    finally:
        os.close(fd)


def _read(fd: int) -> dict[str, str] | None:
    text = os.pread(fd, 65536, 0).decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {"id": text}


def _write(fd: int, data: dict[str, str]) -> None:
    os.pwrite(fd, json.dumps(data).encode() + b"\n", 0)
    os.fsync(fd)
