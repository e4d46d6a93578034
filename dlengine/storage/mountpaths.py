"""Which mountpath holds an object: highest-random-weight hashing.

Every process computes the same answer from (mountpath, bucket, name) alone,
and adding a mountpath moves only the objects that now hash highest on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def bucket_placer(mountpaths: Sequence[str], provider: str, bucket: str, bucket_key: str) -> Callable[[str], str]:
    """A function name -> mountpath for one bucket: a ``dir`` bucket (a
    directory the user named) is its own and only mountpath."""
    if provider == "dir":
        return lambda _name: bucket
    return placer(mountpaths, bucket_key)


def placer(mountpaths: Sequence[str], bucket_key: str) -> Callable[[str], str]:
    """A function name -> mountpath for one bucket."""
    if not mountpaths:
        raise ValueError("no mountpaths configured")
    if len(mountpaths) == 1:
        only = mountpaths[0]
        return lambda _name: only
    import hashlib  # (not for one mountpath: its OpenSSL start, ~11 M instructions, is not every submit's)

    # one hash state per mountpath, already fed with (mountpath, bucket)
    seeded = [(mp, hashlib.blake2b(f"{mp}\0{bucket_key}\0".encode(), digest_size=8)) for mp in mountpaths]

    def place(name: str) -> str:
        key = name.encode()
        best, best_weight = "", b""
        for mp, state in seeded:
            h = state.copy()
            h.update(key)
            weight = h.digest()
            if weight > best_weight:
                best, best_weight = mp, weight
        return best

    return place
