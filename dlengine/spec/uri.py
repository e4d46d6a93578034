"""Bucket URIs as users type them: ``ais://abc``, ``ais://abc/sub/dir``,
``s3://bkt``, ``ais://@ns#abc``, ``hf://org/name`` (a HuggingFace repo's
local copy), a bare ``abc`` (a local bucket), or a local directory
(``./data/``, ``/srv/ds``, ``~/x``, ``dir:///srv/ds``)."""

from __future__ import annotations

import os

from dlengine.errors import SpecError
from dlengine.providers import Provider, parse_provider
from dlengine.spec.model import BucketRef
from dlengine.spec.names import validate_bucket_name


def parse_bucket_uri(text: str, field: str = "bucket") -> tuple[BucketRef, str]:
    """(bucket, path inside it) of a bucket URI."""
    if is_directory(text):
        return directory_bucket(text, field), ""
    provider, sep, rest = text.partition("://")
    if not sep:
        provider, rest = Provider.AIS.value, text
    kind = parse_provider(provider, field)
    if kind is Provider.DIR:
        return directory_bucket(rest, field), ""
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


def is_directory(text: str) -> bool:
    """A local directory as typed: ``./data/``, ``../x``, ``/srv/ds``,
    ``~/x``, ``.``; a bare ``abc`` stays a bucket name, as in AIStore."""
    return text in (".", "..", "~") or text.startswith(("/", "./", "../", "~/"))


def directory_bucket(text: str, field: str = "bucket") -> BucketRef:
    """The ``dir`` bucket of a directory path, made absolute here: the
    supervisor that writes it runs in another working directory."""
    if not text:
        raise SpecError(field, "dir:// needs a directory path, e.g. dir:///srv/data")
    if "\0" in text:
        raise SpecError(field, "a directory path cannot hold NUL")
    path = os.path.abspath(os.path.expanduser(text))
    validate_bucket_name(path, Provider.DIR, field)
    return BucketRef(name=path, provider=Provider.DIR)


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
