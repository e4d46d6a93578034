"""One conformance suite for every source: S3 (moto, versioning on and off),
GCS (the emulator), Azure (Azurite) and HTTP (harness/httpd.py).

Each case gets a fresh bucket (or path prefix) from a ``Harness``, and
checks the interface of ``sources/base.py``: list with prefix+suffix over
several pages, stat, ranged read (and its If-Range restart), checksums,
not-found, access denied, conditional GET.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from dlengine import errors, transfer
from dlengine.sources import azure, gcs, s3
from dlengine.sources.base import ObjectInfo, Request
from dlengine.sources.http import HTTPSource
from harness.cloud_servers import AzuriteServer, GCSServer, S3Server
from harness.httpd import Fault, TestHTTPServer

PAGE = 2  # objects per listing page: every listing below spans several


@dataclass
class Harness:
    kind: str
    put: Callable[[str, bytes], None]
    source: Callable[[int], Any]  # page size -> source
    key: Callable[[str], str]  # object name -> the source's key
    deny: Callable[[str], tuple[Any, str]] | None = None  # a source and key that must be refused
    listable: bool = True
    versioned: bool = False


def _bucket() -> str:
    return f"conf-{uuid.uuid4().hex[:12]}"


def _s3(server: S3Server, versioned: bool) -> Harness:
    bucket, client = _bucket(), server.client()
    client.create_bucket(Bucket=bucket)
    if versioned:
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return Harness(
        kind="s3",
        put=lambda k, d: client.put_object(Bucket=bucket, Key=k, Body=d),
        source=lambda page: s3.S3Source(bucket, page_size=page),
        key=lambda k: k,
        versioned=versioned,
    )


def _gcs(server: GCSServer) -> Harness:
    bucket = server.client().create_bucket(_bucket())
    return Harness(
        kind="gcs",
        put=lambda k, d: bucket.blob(k).upload_from_string(d),
        source=lambda page: gcs.GCSSource(bucket.name, page_size=page),
        key=lambda k: k,
        versioned=True,  # generations
    )


def _azure(server: AzuriteServer, monkeypatch: pytest.MonkeyPatch) -> Harness:
    name = _bucket()
    container = server.client().create_container(name)

    def deny(key: str) -> tuple[Any, str]:
        # the same account with a wrong key: Azurite checks SharedKey signatures
        monkeypatch.setattr(azure, "_client", [server.client(key="A" * 86 + "==")])
        return azure.AzureSource(name), key

    return Harness(
        kind="azure",
        put=lambda k, d: container.upload_blob(k, d, overwrite=True),
        source=lambda page: azure.AzureSource(name, page_size=page),
        key=lambda k: k,
        deny=deny,
    )


def _http(server: TestHTTPServer) -> Harness:
    base = f"/{_bucket()}/"
    source = HTTPSource()

    def deny(key: str) -> tuple[Any, str]:
        server.set_fault(base + key, Fault(status=403))
        return source, server.url + base + key

    return Harness(
        kind="http",
        put=lambda k, d: server.put(base + k, d),
        source=lambda page: source,
        key=lambda k: server.url + base + k,
        deny=deny,
        listable=False,
    )


KINDS = ["s3", "s3-versioned", "gcs", "azure", "http"]


@pytest.fixture(params=KINDS)
def harness(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    kind = request.param
    if kind.startswith("s3"):
        yield _s3(request.getfixturevalue("s3_server"), versioned=kind == "s3-versioned")
    elif kind == "gcs":
        yield _gcs(request.getfixturevalue("gcs_server"))
    elif kind == "azure":
        yield _azure(request.getfixturevalue("azurite_server"), monkeypatch)
    else:
        yield _http(request.getfixturevalue("httpd_session"))


def _read(stream: Any) -> bytes:
    try:
        return b"".join(stream.chunks(7))
    finally:
        stream.close()


NAMES = ["p/a.txt", "p/b.bin", "p/c.txt", "p/d/e.txt", "p/f.txt", "p/g.txt", "pz.txt", "q/h.txt"]


def _fill(h: Harness) -> dict[str, bytes]:
    data = {name: f"{name} ".encode() * (3 + i) for i, name in enumerate(NAMES)}
    for name, body in data.items():
        h.put(name, body)
    return data


def test_list_prefix_suffix_over_pages(harness: Harness) -> None:
    data = _fill(harness)
    source = harness.source(PAGE)
    if not harness.listable:
        with pytest.raises(errors.PermanentError, match="cannot be listed"):
            list(source.list("p/", ".txt"))
        return
    listed = list(source.list("p/", ".txt"))
    expected = sorted(n for n in NAMES if n.startswith("p/") and n.endswith(".txt"))
    assert [i.key for i in listed] == expected  # 5 of 7 under p/: several pages of 2
    assert all(i.size == len(data[i.key]) and i.etag for i in listed)
    assert [i.key for i in source.list("p/", ".txt", start_after="p/c.txt")] == expected[2:]
    assert [i.key for i in source.list("", "")] == sorted(NAMES)


def test_list_pages_are_requests(s3_server: S3Server) -> None:
    """The page size reaches the server: one ListObjectsV2 per page."""
    h = _s3(s3_server, versioned=False)
    _fill(h)
    s3_server.reset()
    assert len(list(h.source(PAGE).list("p/", ""))) == 6
    assert s3_server.count("GET") == 3


def test_stat(harness: Harness) -> None:
    body = b"0123456789" * 100
    harness.put("dir/obj.bin", body)
    info = harness.source(PAGE).stat(harness.key("dir/obj.bin"))
    assert info.size == len(body)
    assert info.etag and info.validator
    assert info.checksums.get("md5") == hashlib.md5(body).hexdigest()
    if harness.versioned:
        assert info.version
    else:
        assert info.version is None


def test_ranged_read_resumes(harness: Harness) -> None:
    body = bytes(range(256)) * 40
    harness.put("r.bin", body)
    source = harness.source(PAGE)
    info = source.stat(harness.key("r.bin"))
    stream = source.open(Request(harness.key("r.bin"), offset=1000, if_range=info.validator))
    assert (stream.offset, stream.info.size) == (1000, len(body))
    assert _read(stream) == body[1000:]


def test_ranged_read_of_a_changed_object_restarts(harness: Harness) -> None:
    harness.put("c.bin", b"a" * 3000)
    source = harness.source(PAGE)
    old = source.stat(harness.key("c.bin"))
    harness.put("c.bin", b"b" * 3000)  # same size, other bytes
    stream = source.open(Request(harness.key("c.bin"), offset=1000, if_range=old.validator))
    assert stream.offset == 0
    assert _read(stream) == b"b" * 3000


def test_checksums_match_the_bytes(harness: Harness) -> None:
    body = b"checksum me " * 500
    harness.put("sum.bin", body)
    stream = harness.source(PAGE).open(Request(harness.key("sum.bin")))
    info: ObjectInfo = stream.info
    got = _read(stream)
    assert got == body
    assert info.checksums, "every source offers at least one checksum here"
    for algo, expected in info.checksums.items():
        if algo in transfer._HASHERS:
            hasher = transfer._HASHERS[algo]()
            hasher.update(got)
            assert hasher.hexdigest() == expected, algo
    if harness.kind == "gcs":
        assert "crc32c" in info.checksums and "crc32c" in transfer._HASHERS


def test_s3_additional_checksums(s3_server: S3Server) -> None:
    """x-amz-checksum-* of an object uploaded with one."""
    h = _s3(s3_server, versioned=False)
    client, bucket = s3_server.client(), h.source(PAGE).bucket
    body = b"sha me" * 100
    client.put_object(Bucket=bucket, Key="k", Body=body, ChecksumAlgorithm="SHA256")
    info = h.source(PAGE).stat("k")
    assert info.checksums["sha256"] == hashlib.sha256(body).hexdigest()


def test_not_found(harness: Harness) -> None:
    harness.put("exists", b"x")
    source = harness.source(PAGE)
    with pytest.raises(errors.SourceNotFoundError):
        source.stat(harness.key("missing/object"))
    with pytest.raises(errors.SourceNotFoundError):
        _read(source.open(Request(harness.key("missing/object"))))


def test_missing_bucket_is_not_found(harness: Harness) -> None:
    if not harness.listable:
        pytest.skip("plain HTTP has no buckets")
    missing = type(harness.source(PAGE))(f"missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(errors.SourceNotFoundError):
        list(missing.list())


def test_access_denied(harness: Harness) -> None:
    if harness.deny is None:
        reasons = {
            "s3": "moto's server accepts any credentials and does not enforce bucket policies",
            "gcs": "gcp-storage-emulator has no authentication",
        }
        pytest.skip(reasons[harness.kind])
    harness.put("secret", b"s")
    source, key = harness.deny("secret")
    with pytest.raises(errors.SourceDeniedError):
        source.stat(key)
    with pytest.raises(errors.SourceDeniedError):
        _read(source.open(Request(key)))


def test_conditional_get_of_an_unchanged_object(harness: Harness) -> None:
    harness.put("same", b"same bytes")
    source = harness.source(PAGE)
    info = source.stat(harness.key("same"))
    stream = source.open(Request(harness.key("same"), if_none_match=info.etag))
    assert stream.not_modified
    stream.close()
    harness.put("same", b"new bytes!")
    stream = source.open(Request(harness.key("same"), if_none_match=info.etag))
    assert not stream.not_modified and _read(stream) == b"new bytes!"
