"""``dlengine download SRC DST``: turn the shorthand into a job request."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dlengine.errors import SpecError
from dlengine.spec import derive_name, parse_size
from dlengine.spec.model import BucketRef
from dlengine.spec.parse import MAX_CONNECTIONS
from dlengine.spec.uri import parse_bucket_uri

_CLOUD_SCHEMES = ("s3", "gs", "az")


def job_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """A job request dict (validated later by the spec parser)."""
    bucket, path = parse_bucket_uri(args.dst, "DST")
    job: dict[str, Any] = {"bucket": {"name": bucket.name, "provider": bucket.provider}}
    if bucket.namespace:
        job["bucket"]["namespace"] = bucket.namespace
    # as AIStore's CLI (createDownloadJobDefinition): an object list, then
    # braces, make a multi or range job of a cloud SRC too, not a listing
    listing = not args.object_list and "{" not in args.src and _is_bucket_listing(args.src, path)
    if getattr(args, "sync", False) and not listing:
        raise SpecError("--sync", "only a bucket or prefix SRC (s3://bkt/prefix) can be synchronized")
    if listing:
        job.update(_backend_job(args.src, bucket, getattr(args, "sync", False)))
    elif args.object_list:
        job.update(type="multi", objects=_object_list(args.src, Path(args.object_list), path))
    elif "{" in args.src:  # every brace goes through the template parser, which names what is wrong
        job.update(type="range", template=args.src)
        if path:
            job["subdir"] = path
    else:
        job.update(type="single", link=args.src)
        if path:
            job["object_name"] = path + derive_name(args.src) if path.endswith("/") else path
    add_common_fields(job, args)
    return job


def _is_bucket_listing(src: str, dst_path: str) -> bool:
    """A cloud SRC (``s3://bkt``, ``gs://bkt/dir/prefix-``) is a prefix to
    list, as in AIStore's CLI, unless DST names the object to store it as."""
    scheme, sep, _ = src.partition("://")
    return bool(sep) and scheme.lower() in _CLOUD_SCHEMES and not dst_path


def _backend_job(src: str, dst: BucketRef, sync: bool) -> dict[str, Any]:
    """A backend job: every object under the SRC prefix, into the local
    copy of the SRC bucket, or into DST (AIStore's bucket with a backend)."""
    remote, prefix = parse_bucket_uri(src, "SRC")
    job: dict[str, Any] = {"type": "backend", "prefix": prefix, "sync": sync}
    if (remote.provider, remote.name) != (dst.provider, dst.name):
        job["backend_bck"] = {"name": remote.name, "provider": remote.provider.value}
    return job


def check_limit_flags(args: argparse.Namespace) -> None:
    """The numeric flags, checked before anything is listed, asked or
    written: a negative (or otherwise wrong) one is refused naming the
    flag (not the job field it becomes)."""
    if args.max_conns is not None:
        connections_flag(args.max_conns)
    for flag, text, least in (
        ("--limit-bph", args.limit_bph, 0),
        ("--blob-threshold", args.blob_threshold, 0),
        ("--max-job-bytes", args.max_job_bytes, 1),
    ):
        if text:
            size_flag(text, flag, least)


def connections_flag(count: int) -> int:
    """``--max-conns``: 0 (no limit) up to what a job's limit may be."""
    if not 0 <= count <= MAX_CONNECTIONS:
        raise SpecError("--max-conns", f"must be from 0 (no limit) to {MAX_CONNECTIONS}, got {count}")
    return count


def size_flag(text: str, flag: str, least: int = 0) -> int:
    """A size given to ``flag`` (``1GiB``), at least ``least`` bytes."""
    if text.strip().startswith("-"):
        raise SpecError(flag, f"must not be negative, got {text!r}")
    size = parse_size(text, flag)
    if size < least:
        raise SpecError(flag, f"must be at least {least}, got {text!r}")
    return size


def add_common_fields(job: dict[str, Any], args: argparse.Namespace) -> None:
    """--desc, --timeout, --max-conns, --limit-bph, --header into a job request."""
    if args.desc:
        job["description"] = args.desc
    if args.timeout:
        job["timeout"] = args.timeout
    limits = {}
    if args.max_conns is not None:
        limits["connections"] = connections_flag(args.max_conns)
    if args.limit_bph:
        limits["bytes_per_hour"] = size_flag(args.limit_bph, "--limit-bph")
    if limits:
        job["limits"] = limits
    if args.header:
        job["headers"] = _headers(args.header)


def _headers(items: list[str]) -> dict[str, str]:
    headers = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise SpecError("--header", f"{item!r} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def _object_list(src: str, file: Path, subdir: str) -> dict[str, str]:
    """name -> link for every entry of the list file, relative to SRC; each
    object is named by the base of its link (``dir/a.bin`` -> ``a.bin``)."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise SpecError("--object-list", f"cannot read {file}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        raise SpecError("--object-list", f"{file} is not UTF-8 text (byte {byte:#x} at offset {exc.start})") from None
    entries = _entries(text)
    if not entries:
        raise SpecError("--object-list", f"{file} lists no objects")
    base = src.rstrip("/") + "/"
    objects: dict[str, str] = {}
    for entry in entries:
        link = entry if "://" in entry else base + entry.lstrip("/")
        name = derive_name(link, "--object-list")  # the base of the link, as AIStore names it
        name = (subdir.rstrip("/") + "/" + name) if subdir else name
        if name in objects:
            raise SpecError("--object-list", f"duplicate object name {name!r}")
        objects[name] = link
    return objects


def _entries(text: str) -> list[str]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except ValueError as exc:
            raise SpecError("--object-list", f"malformed JSON list: {exc}") from None
        if not all(isinstance(e, str) for e in data):
            raise SpecError("--object-list", "the JSON list must hold strings")
        return [e.strip() for e in data if e.strip()]
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
