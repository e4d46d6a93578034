"""S3 listings without botocore (``sources.s3plain``, issue 17): for static
keys and a custom endpoint a listing is presigned GETs read by expat, and
gives exactly what botocore's paginator gave (keys with spaces, ``+``,
unicode and characters XML cannot carry; prefix, suffix, start-after, page
after page), refusals as the same error classes; on a real store
(SeaweedFS) as on moto."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from dlengine import errors
from dlengine.sources import s3
from harness.cloud_servers import S3Server
from harness.seaweedfs import SeaweedFS

KEYS = ["a/1.bin", "a/2 two.txt", "a/3+plus.bin", "a/ü~*.bin", "a/ctl\x01x.bin", "a/sub/4.bin", "b/5.bin", "c"]


def _listing(bucket: str, plain: bool, **kw: str) -> list[Any]:
    """The listing through s3plain (``plain``) or botocore, 3 keys a page."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(s3, "_presigners", {})
        if not plain:
            mp.setattr(s3, "_static_presigner", lambda bucket: None)
        return list(s3.S3Source(bucket, page_size=3).list(**kw))


def _fill(client: Any) -> str:
    bucket = f"pl-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    for key in KEYS:
        client.put_object(Bucket=bucket, Key=key, Body=key.encode() * 3)
    return bucket


@pytest.mark.parametrize(
    "selection", [{}, {"prefix": "a/"}, {"suffix": ".bin"}, {"start_after": "a/3+plus.bin"}, {"prefix": "zz"}]
)
def test_plain_listing_is_botocores(s3_server: S3Server, selection: dict[str, str]) -> None:
    bucket = _fill(s3_server.client())
    s3_server.reset()
    plain = _listing(bucket, True, **selection)
    lists = [q for m, p, q in s3_server.requests if m == "GET" and "list-type=2" in q]
    assert lists and all("X-Amz-Signature=" in q for q in lists)  # presigned: not botocore's
    sdk = _listing(bucket, False, **selection)
    assert plain == sdk
    if not selection:
        assert [o.key for o in plain] == sorted(KEYS) and len(lists) == 3  # 8 keys, 3 a page


def test_plain_listing_on_a_real_store(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in seaweedfs.env.items():
        monkeypatch.setenv(name, value)
    bucket = _fill(seaweedfs.client())
    plain = _listing(bucket, True)
    sdk = _listing(bucket, False)
    assert plain == sdk and [o.key for o in plain] == sorted(KEYS)
    assert all(o.last_modified and o.last_modified.endswith(" GMT") and o.checksums for o in plain)


def test_plain_listing_refusals_are_botocores_errors(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in seaweedfs.env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(errors.SourceNotFoundError, match="NoSuchBucket"):
        _listing(f"gone-{uuid.uuid4().hex[:8]}", True)
    bucket = _fill(seaweedfs.client())
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(errors.SourceDeniedError) as denied:
        _listing(bucket, True)
    assert "X-Amz" not in str(denied.value) and "not-the-secret" not in str(denied.value)
