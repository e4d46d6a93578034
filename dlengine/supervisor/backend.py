"""Backend jobs in the dispatcher: list the remote bucket into the ledger
page by page, decide from the listing alone which objects are unchanged,
and with ``sync`` remove local copies of objects gone from the remote.

The listing comes from ``registry.lister(provider, ...)``, so a provider
(``hf``, ...) plugs in by registering its lister; nothing here knows an SDK.
The cursor is the last listed key: a restarted dispatcher lists on from
there (S3 StartAfter, GCS startOffset, skipped locally elsewhere).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from itertools import islice
from pathlib import Path

from dlengine.errors import ErrorCode, SpecError, UnsafeNameError
from dlengine.ledger.ledger import Ledger
from dlengine.ledger.models import CatalogEntry, JobRecord, NewObject
from dlengine.ledger.states import ObjectState
from dlengine.sources import registry
from dlengine.sources.base import ObjectInfo
from dlengine.spec import load_spec
from dlengine.spec.model import JobSpec
from dlengine.spec.names import validate_object_name
from dlengine.storage import layout
from dlengine.transfer import pick_checksum

LIST_PAGE = 1000  # listed objects per ledger transaction
SYNC_BATCH = 1000  # local deletions per ledger transaction


def backend_pages(spec: JobSpec, cursor: str | None) -> Iterator[tuple[list[NewObject], str]]:
    """Pages of listed objects after ``cursor``, each with the cursor after it."""
    lister = registry.lister(spec.bucket.provider, spec.bucket.name, spec.options)
    listing = lister.list(spec.prefix, spec.suffix, start_after=cursor or "")
    while infos := list(islice(listing, LIST_PAGE)):
        page = [_new_object(lister.link(info.key), info) for info in infos if not info.key.endswith("/")]
        if page:  # a page of directory markers only is nothing to insert
            yield page, infos[-1].key


def _new_object(link: str, info: ObjectInfo) -> NewObject:
    check = pick_checksum(info)
    obj = NewObject(
        name=info.key,
        link=link,
        size=info.size,
        etag=info.etag,
        version=info.version,
        checksum=f"{check[0]}:{check[1].lower()}" if check else None,
        last_modified=info.last_modified,
    )
    try:
        validate_object_name(info.key, "key")
    except SpecError as exc:
        reason = f"cannot store this key: {exc.reason}"
        return replace(obj, state=ObjectState.FAILED, error=reason, code=ErrorCode.POLICY)
    return obj


def insert_page(ledger: Ledger, job: JobRecord, page: Sequence[NewObject], place: Callable[[str], str]) -> None:
    """Insert a listed page; objects the catalog holds unchanged go in as
    skipped, so they cost no request at all."""
    stored = ledger.catalog_entries(job.provider, job.namespace, job.bucket, [o.name for o in page])
    rows = [_skip_if_unchanged(job, obj, stored.get(obj.name)) for obj in page]
    ledger.insert_listed(job.seq, rows, place)


def _skip_if_unchanged(job: JobRecord, obj: NewObject, stored: CatalogEntry | None) -> NewObject:
    if obj.state is not ObjectState.PENDING or stored is None or not unchanged(stored, obj):
        return obj
    if not _local_copy(job, stored).is_file():
        return obj  # removed by hand: download again
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


def _local_copy(job: JobRecord, stored: CatalogEntry) -> Path:
    try:
        return layout.object_path(Path(stored.mountpath), job.provider, job.namespace, job.bucket, stored.name)
    except UnsafeNameError:
        return Path("/nonexistent")


def sync_step(ledger: Ledger, job: JobRecord) -> bool:
    """With ``sync``, once the listing is complete: remove up to a batch of
    local copies whose object is gone from the remote bucket (only objects
    downloaded from that bucket). True while there may be more."""
    spec = load_spec(job.spec)
    if not spec.sync:
        return False
    lister = registry.lister(spec.bucket.provider, spec.bucket.name, spec.options)
    entries = ledger.vanished(job, spec.prefix, spec.suffix, lister.link(""), SYNC_BATCH)
    for entry in entries:
        _delete_local(job, entry)
    if entries:
        ledger.record_deleted(job, entries)
    return bool(entries)


def _delete_local(job: JobRecord, entry: CatalogEntry) -> None:
    """Remove the file (the catalog row goes in the same transaction; a
    crash in between only repeats this, which is harmless)."""
    mountpath = Path(entry.mountpath)
    path = _local_copy(job, entry)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    root = layout.bucket_dir(mountpath, job.provider, job.namespace, job.bucket)
    parent = path.parent
    while parent != root and root in parent.parents:
        try:
            os.rmdir(parent)  # only while empty
        except OSError:
            break
        parent = parent.parent
