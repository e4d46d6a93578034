"""Where things live on a mountpath::

<mountpath>/<provider>/<bucket>/<object name>      stored objects
<mountpath>/<provider>/@<namespace>/<bucket>/...   with a namespace
<mountpath>/hf/<org>/<name>/<path in repo>         a HuggingFace repo's local copy
<mountpath>/.work/<row id>.part                    bytes being downloaded (small new objects: none,
                                                   an unnamed file in their own directory instead)
<mountpath>/.work/<row id>.meta                    validator of that part
<dir>/<object name>, <dir>/.work/...               a ``dir`` bucket: the directory is its own mountpath
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from dlengine.errors import PermanentError, UnsafeNameError

if TYPE_CHECKING:
    from dlengine.ledger.models import CatalogEntry

WORK_DIR = ".work"
DIR_PROVIDER = "dir"  # providers.Provider.DIR (storage does not import the spec layer)
# entries of a mountpath that are dlengine's, never an object's: a name
# starting with one would overwrite work files or the home mark
RESERVED = (WORK_DIR, ".dlengine-home")


def _directory(bucket: str) -> Path:
    if not bucket.startswith("/") or os.path.normpath(bucket) != bucket or "\0" in bucket or bucket == "/":
        raise UnsafeNameError(f"directory {bucket!r} is not an absolute, normalized path")
    return Path(bucket)


@functools.lru_cache(maxsize=1024)
def bucket_dir(mountpath: Path, provider: str, namespace: str, bucket: str) -> Path:
    """(Cached: a worker asks for the same few buckets for every object.)"""
    if provider == DIR_PROVIDER:
        # a local directory the user named is its own mountpath: objects
        # at <dir>/<name>, work files in <dir>/.work (the same file system)
        return _directory(bucket)
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


@functools.lru_cache(maxsize=1024)
def bucket_root(mountpath: Path, provider: str, namespace: str, bucket: str) -> str:
    """``bucket_dir`` as a string (the per-object path works on strings:
    a ``pathlib`` join costs more than the system call it names)."""
    return str(bucket_dir(mountpath, provider, namespace, bucket))


def object_path(mountpath: Path, provider: str, namespace: str, bucket: str, name: str) -> Path:
    """The path of ``name`` inside its bucket; never outside it."""
    return Path(object_file(mountpath, provider, namespace, bucket, name))


def object_file(mountpath: Path, provider: str, namespace: str, bucket: str, name: str) -> str:
    """``object_path`` as a string.

    Names were validated at submission; this re-checks, because a name is
    turned into a path here and a bug elsewhere must not write outside.
    """
    root = bucket_root(mountpath, provider, namespace, bucket)
    if not name or name[0] == "/" or "\0" in name or _unsafe(name):
        raise UnsafeNameError(f"object name {name!r} is not allowed")
    if provider == DIR_PROVIDER and name.split("/", 1)[0] in RESERVED:
        raise UnsafeNameError(f"object name {name!r} is reserved in a directory destination ({name.split('/')[0]})")
    return f"{root}/{name}"


def _unsafe(name: str) -> bool:
    """An empty, ``.`` or ``..`` component (looked for as substrings of
    the name between slashes: no split, no loop, for every object)."""
    if "//" in name or name[-1] == "/":
        return True
    if "." not in name:
        return False
    wrapped = f"/{name}/"
    return "/./" in wrapped or "/../" in wrapped


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def install(part: str | Path, path: str | Path, root: str | Path) -> list[Path]:
    """Rename the work file ``part`` to ``path`` inside the bucket directory
    ``root``; returns the directories created for it (their entries must be
    made durable too, in per-file sync mode).

    Someone may plant a symlink in the bucket, or swap a directory for one
    while a worker runs (issue 13): every install walks the components one
    at a time from ``root``, each opened relative to the one before with
    ``O_NOFOLLOW`` and created there if missing, so a symlink is refused
    before anything is created through it and no cache of checked
    directories can go stale; the rename then targets the directory so
    reached (``renameat``), not the path again. ``root`` itself (the
    bucket directory) is trusted.
    """
    path = os.fspath(path)
    parent, _, leaf = path.rpartition("/")
    fd, created = _open_parent(path, parent, os.fspath(root))
    try:
        _check_leaf(fd, leaf, path)
        os.rename(part, leaf, dst_dir_fd=fd)
    finally:
        os.close(fd)
    return created


# unnamed files (open(2) O_TMPFILE) and a way to name them: linkat of the
# descriptor itself (AT_EMPTY_PATH: root's, or anyone's on the file it opened
# since Linux 6.10), else through /proc/self/fd (a lookup in /proc more: 1-3 µs
# an object); Linux, most file systems
_PROC_FD = "/proc/self/fd"
_AT_EMPTY_PATH = 0x1000
_by_descriptor = True  # (tried until refused once)
_linkat: Callable[..., int] | None = None  # the C library's, looked up at the first such link
_O_TMPFILE = getattr(os, "O_TMPFILE", 0) if os.path.isdir(_PROC_FD) else 0
# what open(2) answers where the file system (or the kernel) has no O_TMPFILE
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL, errno.ENOSYS}
_unnamed_refused: set[str] = set()  # bucket directories whose file system has none


def install_unnamed(
    path: str, root: str, write: Callable[[int], None], keep: Callable[[int], bool] | None = None
) -> tuple[bool, list[Path]]:
    """Create the object ``path`` inside the bucket directory ``root`` from
    an unnamed file (``O_TMPFILE``) opened in its own directory, filled by
    ``write(fd)``, then linked under its name: never seen half-written,
    nothing left to clean up when the process dies, and no work-file entry
    created in ``.work`` and renamed across directories (which locks both
    directories, and two workers contend there: for small objects that was
    half of their file-system time). The directories are walked as
    ``install`` walks them (``O_NOFOLLOW``, created if missing).

    Returns (whether the object was stored, the directories created for
    it). Not stored when ``path`` exists (the link refuses to replace it,
    and the unnamed file vanishes with its descriptor: a new version
    replaces the old through the work file and ``install``'s rename;
    asking first would cost a lookup of every new name, ~10 µs an object)
    or the file system cannot make or name unnamed files (then ``write``
    is not called): the caller then writes the work file and calls
    ``install``.

    ``keep``: offered the new file's descriptor once it is named; True if
    it took it (and closes it later), else it is closed here."""
    parent, _, leaf = path.rpartition("/")
    fd, created = _open_parent(path, parent, root)
    try:
        if not _O_TMPFILE or root in _unnamed_refused:
            return False, created
        try:
            tmp = os.open(".", os.O_WRONLY | _O_TMPFILE | os.O_CLOEXEC, 0o644, dir_fd=fd)
        except OSError as exc:
            if exc.errno not in _NO_TMPFILE:
                raise
            _unnamed_refused.add(root)
            return False, created
        kept = False
        try:
            write(tmp)
            linked = _link(tmp, fd, leaf, root)
            kept = linked and keep is not None and keep(tmp)
            return linked, created
        finally:
            if not kept:
                os.close(tmp)
    finally:
        os.close(fd)


def _link(tmp: int, fd: int, leaf: str, root: str) -> bool:
    """Name the unnamed file ``tmp`` ``leaf`` in the directory ``fd``;
    False if the name was taken meanwhile or the file system refuses."""
    try:
        # (by descriptor where ctypes is loaded already, as in every worker:
        # a command storing a few objects does not import it, ~3 ms)
        if not (_by_descriptor and "ctypes" in sys.modules and _link_descriptor(tmp, fd, leaf)):
            os.link(f"{_PROC_FD}/{tmp}", leaf, dst_dir_fd=fd, follow_symlinks=True)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EACCES, errno.ENOENT, *_NO_TMPFILE):
            raise
        _unnamed_refused.add(root)
        return False
    return True


def _link_descriptor(tmp: int, fd: int, leaf: str) -> bool:
    """linkat(tmp, "", fd, leaf, AT_EMPTY_PATH); False, and never tried
    again in this process, where the kernel refuses it (no capability: the
    link then goes through /proc)."""
    global _by_descriptor, _linkat
    if _linkat is None:
        import ctypes

        _linkat = ctypes.CDLL(None, use_errno=True).linkat
    if _linkat(tmp, b"", fd, os.fsencode(leaf), _AT_EMPTY_PATH) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (errno.ENOENT, errno.EPERM, errno.EINVAL, errno.ENOSYS):
        _by_descriptor = False
        return False
    raise OSError(err, os.strerror(err), leaf)  # (EEXIST: FileExistsError)


def _check_leaf(fd: int, leaf: str, path: str) -> None:
    try:
        found = os.stat(leaf, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(found.st_mode):
        raise UnsafeNameError(f"object {path} is a symlink; refusing to replace it")


def _open_parent(path: str, parent: str, top: str) -> tuple[int, list[Path]]:
    """A descriptor of ``path``'s directory ``parent``, reached from the
    bucket directory ``top`` without following a symlink (the caller closes
    it), and the directories created on the way."""
    base = top.rstrip("/")  # ("" for "/", whose objects' parent is "")
    if parent.rstrip("/") == base:
        parts: list[str] = []
    elif parent.startswith(base + "/"):
        parts = parent[len(base) + 1 :].split("/")
    else:
        raise UnsafeNameError(f"object {path} is not inside its bucket {top}")
    created: list[Path] = []
    try:
        fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:  # the bucket's first object
        created += _missing(Path(top))
        Path(top).mkdir(parents=True, exist_ok=True)
        fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    below = base  # (a string: a Path of every directory on the way was ~3 µs a level, per object)
    for part in parts:
        below = f"{below}/{part}"
        try:
            child = _open_child(fd, part, path, created, below)
        finally:
            os.close(fd)
        fd = child
    return fd, created


def _missing(path: Path) -> list[Path]:
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    return missing


def _open_child(fd: int, name: str, path: str, created: list[Path], below: str) -> int:
    """Directory ``name`` inside ``fd`` (at ``below``), created if missing
    (then added to ``created``), never a symlink."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except FileNotFoundError:
        try:
            os.mkdir(name, dir_fd=fd)
            created.append(Path(below))
        except FileExistsError:  # another thread made it meanwhile
            pass
        return _open_existing(fd, name, path)
    except OSError as exc:
        raise _not_a_directory(fd, name, path, exc) from None


def _open_existing(fd: int, name: str, path: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        raise _not_a_directory(fd, name, path, exc) from None


def _not_a_directory(fd: int, name: str, path: str, exc: OSError) -> Exception:
    """Why ``name`` could not be opened as a directory: a symlink (refused
    whatever it points at), an object, or the system's own error."""
    try:
        mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
    except OSError:
        return exc
    if stat.S_ISLNK(mode):
        return UnsafeNameError(f"object {path} would go through the symlink {name!r} in its bucket; refused")
    if not stat.S_ISDIR(mode):
        return PermanentError(f"cannot store {path}: a parent ({name!r}) is an object, not a directory")
    return exc


@functools.lru_cache(maxsize=64)
def work_dir(mountpath: Path) -> Path:
    return mountpath / WORK_DIR


def work_names(mountpath: Path, most: int = 256) -> frozenset[str] | None:
    """The names in ``mountpath``'s work directory (one listing, where each
    object would ask whether its ``.meta`` exists); None if it holds more
    than ``most`` or cannot be read (then each object asks)."""
    names: list[str] = []
    try:
        with os.scandir(work_dir(mountpath)) as entries:
            for entry in entries:
                names.append(entry.name)
                if len(names) > most:
                    return None
    except OSError:
        return None
    return frozenset(names)


def work_paths(mountpath: Path, row_id: int) -> tuple[Path, Path]:
    """(part file, meta file) of one object row."""
    part, meta = work_files(mountpath, row_id)
    return Path(part), Path(meta)


@functools.lru_cache(maxsize=64)
def _work_prefix(mountpath: Path) -> str:
    return f"{work_dir(mountpath)}/"


def work_files(mountpath: Path, row_id: int) -> tuple[str, str]:
    """``work_paths`` as strings."""
    base = _work_prefix(mountpath)
    return f"{base}{row_id}.part", f"{base}{row_id}.meta"


def remove_work_files(mountpath: Path, row_id: int) -> None:
    part, meta = work_paths(mountpath, row_id)
    for path in (part, meta, meta.with_suffix(".meta-new")):  # (a segment map being replaced)
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


def copy_intact(path: str | Path, size: int, stored_time: float | None) -> bool:
    """Whether the file at ``path`` is still the copy the catalog recorded:
    its size, and no write after it was recorded (a file is renamed into
    place before its catalog row is written, so a later mtime is someone
    else's change). A changed copy must be downloaded again, whatever the
    source says of its own version."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_size != size:
        return False
    return stored_time is None or st.st_mtime <= stored_time


def remove_stored(entries: Iterable[CatalogEntry]) -> int:
    """Delete the stored files of catalog entries (local ones; write-through
    objects live in their cloud bucket) and the directories this leaves
    empty inside their bucket; returns how many files went."""
    count = 0
    for entry in entries:
        if "://" in entry.mountpath:
            continue
        path = object_path(Path(entry.mountpath), entry.provider, entry.namespace, entry.bucket, entry.name)
        root = bucket_dir(Path(entry.mountpath), entry.provider, entry.namespace, entry.bucket)
        try:
            path.unlink()
            count += 1
        except FileNotFoundError:
            pass
        _prune(path.parent, root)
    return count


def _prune(directory: Path, root: Path) -> None:
    """Remove empty directories from ``directory`` up to (not including) ``root``."""
    while directory != root and root in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def remove_directory_bucket(directory: Path) -> list[str]:
    """What dlengine made in a directory bucket whose stored objects (and
    home mark) are gone: its work directory, then the directory itself if
    nothing else is left in it. A directory holding anything else (the
    user's files) stays, with them; returns their names (sorted)."""
    work = work_dir(directory)
    if work.is_dir() and not work.is_symlink():
        import shutil  # (as remove_bucket_dir)

        shutil.rmtree(work)
    try:
        left = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    if not left:
        directory.rmdir()
    return left


def remove_bucket_dir(root: Path) -> None:
    """What is left of a removed bucket's directory under a mountpath
    (never a directory destination: those keep the user's other files)."""
    if root.is_dir() and not root.is_symlink():
        import shutil  # (here only: shutil brings bz2 and lzma, ~4 ms of a worker's start)

        shutil.rmtree(root)
