"""``dlengine download SRC DST``: turn the shorthand into a job request."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from dlengine.errors import SpecError
from dlengine.spec import derive_name, parse_size
from dlengine.spec.uri import parse_bucket_uri

_RANGE = re.compile(r"\{\d+\.\.\d+(\.\.\d+)?\}")


def job_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """A job request dict (validated later by the spec parser)."""
    bucket, path = parse_bucket_uri(args.dst, "DST")
    job: dict[str, Any] = {"bucket": {"name": bucket.name, "provider": bucket.provider}}
    if bucket.namespace:
        job["bucket"]["namespace"] = bucket.namespace
    if args.object_list:
        job.update(type="multi", objects=_object_list(args.src, Path(args.object_list), path))
    elif _RANGE.search(args.src):
        job.update(type="range", template=args.src)
        if path:
            job["subdir"] = path
    else:
        job.update(type="single", link=args.src)
        if path:
            job["object_name"] = path + derive_name(args.src) if path.endswith("/") else path
    _common(job, args)
    return job


def _common(job: dict[str, Any], args: argparse.Namespace) -> None:
    if args.desc:
        job["description"] = args.desc
    if args.timeout:
        job["timeout"] = args.timeout
    limits = {}
    if args.max_conns is not None:
        limits["connections"] = args.max_conns
    if args.limit_bph:
        limits["bytes_per_hour"] = parse_size(args.limit_bph, "--limit-bph")
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
    """name -> link for every entry of the list file, relative to SRC."""
    try:
        text = file.read_text()
    except OSError as exc:
        raise SpecError("--object-list", f"cannot read {file}: {exc.strerror}") from None
    entries = _entries(text)
    if not entries:
        raise SpecError("--object-list", f"{file} lists no objects")
    base = src.rstrip("/") + "/"
    objects: dict[str, str] = {}
    for entry in entries:
        link = entry if "://" in entry else base + entry.lstrip("/")
        name = derive_name(link) if "://" in entry else entry.lstrip("/")
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
