"""Buckets that live in a cloud store (write-through) instead of on the
mountpaths: the destination of a single, multi or range job whose bucket
provider is aws, gcp or azure. How a user fills an S3-compatible store
(AIStore's S3 API, MinIO, Ceph) or a GCS/Azure bucket.

Objects are downloaded and verified in the mountpath's work file as usual,
then uploaded through the provider's SDK; only then are they done. The
catalog records them with the bucket's URI as their "mountpath".

Every upload carries its origin (source link digest, ETag, size) as the
object's metadata (S3 ``x-amz-meta-*``, GCS custom metadata, Azure blob
metadata), so an upload whose outcome never reached the ledger (a killed
supervisor, a lost Dask batch) is recognised by the next attempt with one
HEAD each side (``work.already_stored``) instead of a second download.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from dlengine import providers
from dlengine.errors import DlengineError
from dlengine.ledger.models import Task
from dlengine.sources import registry
from dlengine.sources.base import ObjectInfo

WRITE_THROUGH_PROVIDERS = providers.WRITE_THROUGH


class CloudBucket:
    """A write-through destination: ``put`` uploads a verified file."""

    def __init__(self, provider: str, bucket: str) -> None:
        scheme = registry.PROVIDER_SCHEMES[provider]
        self.uri = f"{scheme}://{bucket}"
        self._source = registry.cloud_source(scheme, bucket)

    def put(
        self, name: str, data: Path | bytes, checksum: tuple[str, str] | None, origin: dict[str, str] | None = None
    ) -> None:
        """Upload ``data`` (a verified file, or its bytes held in memory) as
        ``name``, keeping ``origin`` as its metadata."""
        md5 = checksum[1] if checksum and checksum[0] == "md5" else None
        self._source.upload(name, data, md5, metadata=origin)

    def put_soon(
        self,
        name: str,
        data: bytes,
        checksum: tuple[str, str] | None,
        origin: dict[str, str] | None,
        done: Callable[[DlengineError | None], None],
    ) -> bool:
        """``put`` of bytes in memory without blocking, where the source
        can (S3's presigned PUT loop): ``done(None)`` or ``done(error)``
        later, from another thread. False (``done`` never called): ``put``
        it instead."""
        upload_soon = getattr(self._source, "upload_soon", None)
        if upload_soon is None:
            return False
        md5 = checksum[1] if checksum and checksum[0] == "md5" else None
        return bool(upload_soon(name, data, md5, origin, done))

    def origin(self, name: str) -> dict[str, str] | None:
        """What a stored object records of its source (``put``'s ``origin``);
        None when it is not there (or holds no metadata)."""
        held: dict[str, str] | None = self._source.metadata(name)
        return held or None


def target_for(task: Task) -> CloudBucket | None:
    """The cloud bucket a task stores into, or None for the mountpaths.
    Backend jobs keep a *local copy* of their remote bucket: never remote."""
    if not providers.writes_through(task):
        return None
    return CloudBucket(task.provider, task.bucket)


def list_remote(provider: str, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
    """The objects of a remote bucket, straight from the provider (``ls --remote``)."""
    return registry.lister(provider, bucket).list(prefix)
