"""Bucket URIs as users type them: ``ais://abc``, ``ais://abc/sub/dir``,
``s3://bkt``, ``ais://@ns#abc``, ``hf://org/name`` (a HuggingFace repo's
local copy), or a bare ``abc`` (a local bucket)."""

from __future__ import annotations

from dlengine.errors import SpecError
from dlengine.providers import Provider, parse_provider
from dlengine.spec.model import BucketRef
from dlengine.spec.names import validate_bucket_name


def parse_bucket_uri(text: str, field: str = "bucket") -> tuple[BucketRef, str]:
    """(bucket, path inside it) of a bucket URI."""
    provider, sep, rest = text.partition("://")
    if not sep:
        provider, rest = Provider.AIS.value, text
    kind = parse_provider(provider, field)
    namespace = ""
    if rest.startswith("@"):
        namespace, hash_sign, rest = rest[1:].partition("#")
        if not hash_sign or not namespace:
            raise SpecError(field, f"{text!r}: a namespace is written @namespace#bucket")
    name, path = _hf_repo(rest) if kind is Provider.HF else _split_first(rest)
    if not name:
        raise SpecError(field, f"{text!r} names no bucket")
    validate_bucket_name(name, kind, field)
    return BucketRef(name=name, provider=kind, namespace=namespace), path


def _split_first(rest: str) -> tuple[str, str]:
    name, _, path = rest.partition("/")
    return name, path


def _hf_repo(rest: str) -> tuple[str, str]:
    """A HuggingFace repo id is ``org/name``: ``hf://org/name/path``. A
    ``datasets/`` or ``models/`` in front is dropped (one local copy)."""
    segments = rest.split("/")
    if segments[0] in ("datasets", "models") and len(segments) > 1:
        segments = segments[1:]
    return "/".join(segments[:2]), "/".join(segments[2:])
