"""Bucket providers: the one list every layer uses (spec, registry,
storage, CLI), with the aliases users type and what each can do.

A provider answers three questions the code used to answer in six places:
may a single/multi/range job store into it (``WRITE_THROUGH``), can a
backend job list it (``LISTABLE``), and which link scheme reaches its
objects (``scheme``).
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from dlengine.errors import SpecError

if TYPE_CHECKING:
    from dlengine.ledger.models import Task


class Provider(str, Enum):
    """A bucket's provider as stored in the ledger (the value)."""

    AIS = "ais"  # a local bucket on the mountpaths
    AWS = "aws"  # Amazon S3 or an S3-compatible store
    GCP = "gcp"  # Google Cloud Storage
    AZURE = "azure"  # Azure Blob Storage
    HF = "hf"  # a HuggingFace Hub repo (a local copy of it)
    HT = "ht"  # AIStore's HTTP provider: a valid name, but nothing to list
    DIR = "dir"  # a plain local directory as the destination

    def __str__(self) -> str:
        return self.value

    @property
    def scheme(self) -> str | None:
        """The link scheme of its objects (``s3://bucket/key``), if any."""
        return _SCHEMES.get(self)


_SCHEMES = {Provider.AWS: "s3", Provider.GCP: "gs", Provider.AZURE: "az", Provider.HF: "hf"}

ALIASES: dict[str, Provider] = {
    **{p.value: p for p in Provider},
    "s3": Provider.AWS,
    "gs": Provider.GCP,
    "gcs": Provider.GCP,
    "az": Provider.AZURE,
}

# Cloud buckets that a single, multi or range job uploads into (storage/remote.py).
WRITE_THROUGH = (Provider.AWS, Provider.GCP, Provider.AZURE)
# Buckets that a backend job can list and copy (sources/registry.py).
LISTABLE = (Provider.AWS, Provider.GCP, Provider.AZURE, Provider.HF)


def parse_provider(name: str, field: str = "bucket.provider") -> Provider:
    """A provider from its name or alias (``s3``, ``GS``); SpecError naming
    ``field`` otherwise."""
    provider = ALIASES.get(name.strip().lower())
    if provider is None:
        known = ", ".join(sorted(ALIASES))
        raise SpecError(field, f"unknown provider {name!r} (known: {known})")
    return provider


def writes_through(task: Task) -> bool:
    """Whether a task's object goes to a cloud bucket (write-through), not
    to a mountpath; a backend job keeps a local copy of its remote bucket."""
    return bool(task.provider in WRITE_THROUGH and task.job_type != "backend")
