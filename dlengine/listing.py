"""Listed objects as ledger rows, and which of them the local copy already
holds: the decision a backend job's dispatcher and ``download --hf-*``
make from a listing alone, before any request for the objects.

An object is unchanged when the catalog holds it from the same source link
with the same size, and the same version, else the same ETag, else the same
checksum, and its file is still as recorded (size, no later mtime). It then goes in as ``skipped``: no
worker ever sees it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol, runtime_checkable

from dlengine.errors import ErrorCode, SpecError, UnsafeNameError
from dlengine.ledger.ledger import Ledger
from dlengine.ledger.models import CatalogEntry, NewObject
from dlengine.ledger.states import ObjectState
from dlengine.sources.base import ObjectInfo, Selection
from dlengine.spec.names import validate_object_name
from dlengine.storage import layout
from dlengine.transfer import pick_checksum

__all__ = ["Versioned", "infos_of", "listing_key", "new_object", "skip_unchanged", "unchanged"]


@runtime_checkable
class Versioned(Protocol):
    """A lister whose whole listing has one version (a Hub revision's
    commit): a re-run at the same version can take the listing from the
    ledger (``Ledger.listing``) instead of asking for it again."""

    def resolve(self) -> str:
        """The version now (one request), which the listing is then made at."""
        ...

    def selection(self) -> Selection:
        """What it lists, beside prefix and suffix (part of the listing's key)."""
        ...


def listing_key(dst: str, subdir: str, lister: Versioned, prefix: str = "", suffix: str = "") -> str:
    """What a listing is of: destination (and its folder), source and selection."""
    selection = {"dst": dst, "subdir": subdir, "prefix": prefix, "suffix": suffix, **lister.selection()}
    return json.dumps(selection, sort_keys=True)


def infos_of(rows: Sequence[NewObject], key: str) -> list[ObjectInfo]:
    """Listed objects as a recorded listing's rows hold them: names without
    the destination's folder (from ``key``), no version (a Hub listing has
    none: the commit is not a file's identity)."""
    subdir = str(json.loads(key).get("subdir") or "")
    strip = len(subdir.rstrip("/") + "/") if subdir else 0
    infos = []
    for row in rows:
        algo, _, digest = (row.checksum or "").partition(":")
        checksums = {algo: digest} if algo and digest else {}
        infos.append(ObjectInfo(key=row.name[strip:], size=row.size, etag=row.etag, checksums=checksums))
    return infos


def new_object(link: str, info: ObjectInfo, name: str | None = None) -> NewObject:
    """The row of a listed object (``name`` defaults to its key); a key
    that cannot be stored is a failed row with the reason."""
    check = pick_checksum(info)
    obj = NewObject(
        name=info.key if name is None else name,
        link=link,
        size=info.size,
        etag=info.etag,
        version=info.version,
        checksum=f"{check[0]}:{check[1].lower()}" if check else None,
        last_modified=info.last_modified,
    )
    try:
        validate_object_name(obj.name, "key")
    except SpecError as exc:
        reason = f"cannot store this key: {exc.reason}"
        return replace(obj, state=ObjectState.FAILED, error=reason, code=ErrorCode.POLICY)
    return obj


def skip_unchanged(
    ledger: Ledger, provider: str, namespace: str, bucket: str, page: Sequence[NewObject]
) -> list[NewObject]:
    """``page`` with the objects the bucket holds unchanged marked skipped
    (with the stored checksum and version)."""
    stored = ledger.catalog_entries(provider, namespace, bucket, [o.name for o in page])
    return [_skip_if_unchanged(provider, namespace, bucket, obj, stored.get(obj.name)) for obj in page]


def _skip_if_unchanged(
    provider: str, namespace: str, bucket: str, obj: NewObject, stored: CatalogEntry | None
) -> NewObject:
    if obj.state is not ObjectState.PENDING or stored is None or not unchanged(stored, obj):
        return obj
    if not layout.copy_intact(local_copy(provider, namespace, bucket, stored), stored.size, stored.stored_time):
        return obj  # removed or changed by hand (size, mtime): download again
    return replace(obj, state=ObjectState.SKIPPED, checksum=stored.checksum, version=stored.version)


def unchanged(stored: CatalogEntry, obj: NewObject) -> bool:
    """The catalog's copy is the listed object: same source and size, and
    the same version, else the same ETag, else the same checksum."""
    if stored.source != obj.link or obj.size is None or stored.size != obj.size:
        return False
    if obj.version and stored.version:
        return obj.version == stored.version
    if obj.etag and stored.etag:
        return obj.etag == stored.etag
    return obj.checksum is not None and obj.checksum == stored.checksum


def local_copy(provider: str, namespace: str, bucket: str, stored: CatalogEntry) -> Path:
    """Where the catalog's copy of an object lives."""
    try:
        return layout.object_path(Path(stored.mountpath), provider, namespace, bucket, stored.name)
    except UnsafeNameError:
        return Path("/nonexistent")
