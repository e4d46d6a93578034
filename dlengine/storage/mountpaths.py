"""Which mountpath holds an object: highest-random-weight hashing.

Every process computes the same answer from (mountpath, bucket, name) alone,
and adding a mountpath moves only the objects that now hash highest on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence


def _weight(mountpath: str, key: bytes) -> bytes:
    return hashlib.blake2b(key, key=mountpath.encode()[:64], digest_size=8).digest()


def placer(mountpaths: Sequence[str], bucket_key: str) -> Callable[[str], str]:
    """A function name -> mountpath for one bucket."""
    if not mountpaths:
        raise ValueError("no mountpaths configured")
    if len(mountpaths) == 1:
        only = mountpaths[0]
        return lambda _name: only
    prefix = bucket_key.encode() + b"\0"

    def place(name: str) -> str:
        key = prefix + name.encode()
        return max(mountpaths, key=lambda mp: _weight(mp, key))

    return place
