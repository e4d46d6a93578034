"""The validated job request: frozen dataclasses built by ``spec.parse``."""

from __future__ import annotations

from enum import Enum
from typing import TypedDict

from dlengine.providers import Provider
from dlengine.records import field, frozen


class JobType(str, Enum):
    SINGLE = "single"  # one link
    MULTI = "multi"  # a map name -> link, or a list of links
    RANGE = "range"  # a URL template with brace ranges
    BACKEND = "backend"  # every object of a remote bucket (prefix/suffix)


@frozen
class BucketRef:
    """A destination (or, for backend jobs, source) bucket."""

    name: str
    provider: Provider = Provider.AIS
    namespace: str = ""

    def uri(self) -> str:
        """``ais://abc`` or, with a namespace, ``ais://@ns#abc`` (AIStore's form)."""
        ns = f"@{self.namespace}#" if self.namespace else ""
        return f"{self.provider}://{ns}{self.name}"  # a directory: dir:///srv/data

    def cname(self, object_name: str = "") -> str:
        """AIStore's canonical name (``Bck.Cname``), as its default job
        descriptions print it: ``s3://abc``, ``ais://#ns/abc/obj``."""
        ns = f"#{self.namespace}/" if self.namespace else ""
        text = f"{self.provider.scheme or self.provider.value}://{ns}{self.name}"
        return f"{text}/{object_name}" if object_name else text


class HubOptions(TypedDict, total=False):
    """What a backend job of a Hub repository (provider ``hf``) selects
    beside prefix and suffix; ``spec.parse`` gives all four, a lister
    takes the defaults for what is left out."""

    repo_type: str  # "model" or "dataset"
    revision: str  # a branch, tag or commit; "main" by default
    include: list[str]  # globs as huggingface_hub's allow_patterns
    exclude: list[str]  # and ignore_patterns


@frozen
class Limits:
    """A job's ``limits``: connections across all its workers, and bytes
    per hour."""

    connections: int = 0  # 0 = no limit
    bytes_per_hour: int = 0  # 0 = no limit


@frozen
class ObjectRef:
    """One object to download: its name in the bucket and where it comes from."""

    name: str
    link: str


@frozen
class JobSpec:
    """A whole, validated job request.

    ``headers`` holds only headers safe to store; ``secret_headers``
    (Authorization, Cookie, tokens, keys) are kept apart so the ledger
    never sees them.
    """

    type: JobType
    bucket: BucketRef
    description: str
    timeout: float = 0.0  # seconds; 0 = the configured default
    limits: Limits = Limits()
    headers: dict[str, str] = field(default_factory=dict)
    secret_headers: dict[str, str] = field(default_factory=dict)
    # single
    link: str = ""
    object_name: str = ""
    # multi
    objects: tuple[ObjectRef, ...] = ()
    # range
    template: str = ""
    subdir: str = ""
    # backend
    prefix: str = ""
    suffix: str = ""
    sync: bool = False
    source: BucketRef | None = None  # backend_bck: the remote bucket, when not ``bucket`` itself
    # a Hub repository's selection; empty for every other provider
    options: HubOptions = field(default_factory=HubOptions)

    @property
    def origin(self) -> BucketRef:
        """The bucket a backend job lists: ``source``, else its own bucket."""
        return self.source or self.bucket
