"""The SeaweedFS fixture itself: a real S3 store on 127.0.0.1 that the
Dask tests and the bench put objects into, and that leaves the session's
environment alone (moto's tests keep their endpoint)."""

from __future__ import annotations

import hashlib
import os
import uuid

from harness.seaweedfs import SeaweedFS


def test_seaweedfs_stores_and_serves_an_object(seaweedfs: SeaweedFS) -> None:
    client = seaweedfs.client()
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    body = b"x" * 10_240
    client.put_object(Bucket=bucket, Key="k/one", Body=body, Metadata={"dlengine-size": "10240"})
    head = client.head_object(Bucket=bucket, Key="k/one")
    assert head["Metadata"] == {"dlengine-size": "10240"}
    assert head["ETag"].strip('"') == hashlib.md5(body).hexdigest()
    assert client.get_object(Bucket=bucket, Key="k/one")["Body"].read() == body
    assert [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]] == ["k/one"]
    assert len(set(seaweedfs.ports.values())) == 8  # every port explicit and distinct


def test_seaweedfs_sets_no_environment(seaweedfs: SeaweedFS) -> None:
    leaked = {k: v for k, v in os.environ.items() if v in (seaweedfs.endpoint, str(seaweedfs.port))}
    assert leaked == {}
