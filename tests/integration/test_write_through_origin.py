"""Write-through recognition on every cloud destination: an upload
carries its origin (link digest, ETag, size) as the object's metadata, so
a later attempt of a row whose outcome was lost (a killed supervisor, a
lost Dask batch) finds it with one HEAD each side instead of downloading
again. Real servers on 127.0.0.1: moto (S3), gcp-storage-emulator (GCS),
Azurite (Azure)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dlengine import transfer
from dlengine.ledger.models import Task
from dlengine.ledger.states import ObjectState
from dlengine.sources import registry
from dlengine.sources.base import Request
from dlengine.storage import remote
from dlengine.supervisor import work
from harness.httpd import TestHTTPServer


def _s3(request: pytest.FixtureRequest) -> str:
    name = f"wt-{uuid.uuid4().hex[:10]}"
    request.getfixturevalue("s3_server").client().create_bucket(Bucket=name)
    return name


def _gcs(request: pytest.FixtureRequest) -> str:
    name = f"wt-{uuid.uuid4().hex[:10]}"
    request.getfixturevalue("gcs_server").client().create_bucket(name)
    return name


def _azure(request: pytest.FixtureRequest) -> str:
    name = f"wt-{uuid.uuid4().hex[:10]}"
    request.getfixturevalue("azurite_server").client().create_container(name)
    return name


MAKERS = {"aws": _s3, "gcp": _gcs, "azure": _azure}


@pytest.fixture(params=sorted(MAKERS))
def destination(request: pytest.FixtureRequest) -> tuple[str, str]:
    provider = str(request.param)
    return provider, MAKERS[provider](request)


def _task(provider: str, bucket: str, link: str, attempts: int) -> Task:
    return Task(
        id=1, job_id="dnl-origin", job_seq=1, name="dir/obj.bin", link=link, mountpath_id=1, attempts=attempts,
        provider=provider, namespace="", bucket=bucket, timeout=10.0, bytes_per_hour=0, job_type="range",
    )  # fmt: skip


def _upload(task: Task, httpd: TestHTTPServer, data: bytes, tmp_path: Path, in_memory: bool = False) -> Any:
    """What ``transfer.fetch`` does for a write-through object: put the
    verified file (or, as a Dask batch does for a small object, its bytes
    held in memory) with ``origin_of`` the source's answer."""
    source, key = registry.resolve(task.link)
    info = source.stat(key, {}, 10.0)
    path = tmp_path / "part"
    path.write_bytes(data)
    target = remote.target_for(task)
    assert target is not None
    origin = transfer.origin_of(task.link, info, len(data))
    target.put(task.name, data if in_memory else path, ("md5", hashlib.md5(data).hexdigest()), origin)
    return target, source, key


def test_an_earlier_upload_is_recognised(destination: tuple[str, str], httpd: TestHTTPServer, tmp_path: Path) -> None:
    provider, bucket = destination
    data = b"origin" * 2000
    httpd.put("/origin/obj.bin", data)
    task = _task(provider, bucket, f"{httpd.url}/origin/obj.bin", attempts=2)
    target, source, key = _upload(task, httpd, data, tmp_path)
    ctx = work.Context(workdir=tmp_path, headers={})
    gets = httpd.request_count("/origin/obj.bin", method="GET")

    held = work.already_stored(task, target, source, key, ctx)
    assert held is not None and held.state == ObjectState.DONE and held.size == len(data), held
    assert held.mountpath == target.uri
    assert httpd.request_count("/origin/obj.bin", method="GET") == gets  # a HEAD, no download

    # a first attempt asks nothing; a changed source is not "already stored"
    assert work.already_stored(replace(task, attempts=1), target, source, key, ctx) is None
    httpd.put("/origin/obj.bin", data + b"changed")
    assert work.already_stored(task, target, source, key, ctx) is None
    # an object uploaded from another link is not this one
    other = replace(task, link=f"{httpd.url}/origin/other.bin")
    httpd.put("/origin/other.bin", data)
    assert work.already_stored(other, target, *registry.resolve(other.link), ctx) is None


def test_bytes_from_memory_are_stored_and_recognised(
    destination: tuple[str, str], httpd: TestHTTPServer, tmp_path: Path
) -> None:
    provider, bucket = destination
    data = b"memory" * 1700
    httpd.put("/origin/mem.bin", data)
    task = _task(provider, bucket, f"{httpd.url}/origin/mem.bin", attempts=2)
    target, source, key = _upload(task, httpd, data, tmp_path, in_memory=True)
    stored, stored_key = registry.resolve(f"{target.uri}/{task.name}")
    stream = stored.open(Request(stored_key))
    try:
        assert b"".join(stream.chunks(1 << 20)) == data
    finally:
        stream.close()
    held = work.already_stored(task, target, source, key, work.Context(workdir=tmp_path, headers={}))
    assert held is not None and held.state == ObjectState.DONE and held.size == len(data), held
