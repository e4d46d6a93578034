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
from itertools import islice
from pathlib import Path

from dlengine import listing
from dlengine.ledger.ledger import Ledger
from dlengine.ledger.models import CatalogEntry, JobRecord, NewObject
from dlengine.sources.base import ObjectInfo
from dlengine.spec import load_spec
from dlengine.spec.model import JobSpec
from dlengine.storage import layout

LIST_PAGE = 1000  # listed objects per ledger transaction
SYNC_BATCH = 1000  # local deletions per ledger transaction


def backend_pages(spec: JobSpec, job: JobRecord, ledger: Ledger) -> Iterator[tuple[list[NewObject], str]]:
    """Pages of listed objects after the job's cursor, each with the cursor
    after it. A lister with one version for its whole listing (a Hub
    commit) is asked for it first: if the ledger recorded the listing at
    that version, its rows are the pages and nothing else is asked."""
    from dlengine.sources import registry

    lister = registry.lister(spec.origin.provider, spec.origin.name, spec.options)
    cursor = job.cursor or ""
    key = version = None
    listed: Iterator[ObjectInfo] | None = None
    if isinstance(lister, listing.Versioned):
        key = listing.listing_key(spec.bucket.uri(), "", lister, spec.prefix, spec.suffix)
        version = lister.resolve()
        recorded = ledger.listing(key, version)
        if recorded is not None:
            listed = (info for info in listing.infos_of(recorded, key) if info.key > cursor)
    if listed is None:
        listed = lister.list(spec.prefix, spec.suffix, start_after=cursor)
    count = 0
    while infos := list(islice(listed, LIST_PAGE)):
        page = [listing.new_object(lister.link(info.key), info) for info in infos if not info.key.endswith("/")]
        count += len(page)
        if page:  # a page of directory markers only is nothing to insert
            yield page, infos[-1].key
    if key is not None and version is not None and not job.cursor:  # every page inserted by this listing
        ledger.record_listing(key, version, [job.id], count)


def insert_page(ledger: Ledger, job: JobRecord, page: Sequence[NewObject], place: Callable[[str], str]) -> None:
    """Insert a listed page; objects the catalog holds unchanged go in as
    skipped, so they cost no request at all."""
    rows = listing.skip_unchanged(ledger, job.provider, job.namespace, job.bucket, page)
    ledger.insert_listed(job.seq, rows, place)


def _local_copy(job: JobRecord, stored: CatalogEntry) -> Path:
    return listing.local_copy(job.provider, job.namespace, job.bucket, stored)


def sync_step(ledger: Ledger, job: JobRecord) -> bool:
    """With ``sync``, once the listing is complete: remove up to a batch of
    local copies whose object is gone from the remote bucket (only objects
    downloaded from that bucket). True while there may be more."""
    spec = load_spec(job.spec)
    if not spec.sync:
        return False
    from dlengine.sources import registry

    lister = registry.lister(spec.origin.provider, spec.origin.name, spec.options)
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
