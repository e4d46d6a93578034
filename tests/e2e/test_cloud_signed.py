"""Cloud GETs through the libcurl loop as signed requests (issue 17):
the presigned URL is botocore's SigV4, objects arrive through the loop
(not the SDK), the ledger records what the SDK path recorded, a wrong
credential is an auth failure, and no signed URL reaches the ledger, a
status or a log."""

from __future__ import annotations

import datetime
import hashlib
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

import pytest

from dlengine.redact import redact
from dlengine.sources import s3, sigv4
from harness.cloud_servers import S3Server
from harness.seaweedfs import SeaweedFS
from tests.conftest import Home, new_home

SECRET_PARAMS = ("X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token")


@pytest.mark.parametrize(
    ("key", "token"),
    [("plain/key.bin", None), ("a b/c+d ü~*.bin", "FwoGZX/session+tok=="), ("x/y=z&q?#%", None)],
)
def test_presigned_url_is_botocores_sigv4(key: str, token: str | None) -> None:
    """The fast signer signs exactly what botocore's S3SigV4QueryAuth signs."""
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from botocore.utils import percent_encode

    now = 1796150000.0
    path = "/bkt/" + percent_encode(key, safe="/~")
    request = AWSRequest("GET", "http://127.0.0.1:8000" + path, headers={"x-amz-checksum-mode": "ENABLED"})
    fixed = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=fixed):
        S3SigV4QueryAuth(Credentials("AKID", "sec/ret+", token), "s3", "eu-west-1", expires=900).add_auth(request)
    keys = ("AKID", "sec/ret+", token)
    ours = sigv4.presign_get(
        "http://127.0.0.1:8000", "127.0.0.1:8000", path, keys, "eu-west-1", {"x-amz-checksum-mode": "ENABLED"}, 900, now
    )
    theirs, mine = urlsplit(request.url), urlsplit(ours)
    assert mine.path == theirs.path
    assert dict(parse_qsl(mine.query)) == dict(parse_qsl(theirs.query))


def test_signed_url_is_redacted(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-value")
    got = s3.S3Source(f"b-{uuid.uuid4().hex[:8]}").signed_get("some/key.bin")
    assert got is not None and got.url.startswith(s3_server.endpoint)
    query = dict(parse_qsl(urlsplit(got.url).query))
    assert query["X-Amz-Security-Token"] == "session-token-value"
    shown = redact(f"failed: {got.url} (HTTP 403)")
    for name in SECRET_PARAMS:
        assert f"{name}=***" in shown
    assert query["X-Amz-Signature"] not in shown and "session-token-value" not in shown
    assert "testing" not in shown  # the access key, inside X-Amz-Credential


def test_keys_a_url_cannot_carry_stay_on_the_sdk(s3_server: S3Server) -> None:
    source = s3.S3Source("bkt")
    assert source.signed_get("a/../b") is None and source.signed_get("./x") is None
    assert source.signed_get("a/b.c") is not None


def _catalog(home: Home) -> dict[str, tuple[Any, ...]]:
    conn = sqlite3.connect(home.path / "ledger.db")
    try:
        sql = "SELECT name, size, source, etag, version, checksum, last_modified FROM catalog"
        return {row[0]: row[1:] for row in conn.execute(sql)}
    finally:
        conn.close()


def _object_gets(server: S3Server, bucket: str) -> list[str]:
    """The query strings of the GETs of objects (not listings) of ``bucket``."""
    with server._lock:
        return [q for m, p, q in server.requests if m == "GET" and p.startswith(f"/{bucket}/")]


def _secrets_left(home: Home, *texts: str) -> list[str]:
    """Signed-URL fragments in the ledger's bytes or in ``texts``."""
    found = []
    blobs = [p.read_bytes() for p in home.path.glob("ledger.db*")] + [t.encode() for t in texts]
    log = home.path / "supervisor.log"
    if log.exists():
        blobs.append(log.read_bytes())
    for blob in blobs:
        for marker in (b"X-Amz-Signature=", b"X-Amz-Credential=", b"X-Amz-Algorithm", b"sig=", b"Bearer "):
            at = blob.find(marker)
            if at >= 0 and not blob[at + len(marker) :].startswith(b"***"):
                found.append(blob[max(0, at - 80) : at + 120].decode(errors="replace"))
    return found


def test_s3_backend_job_through_the_loop_records_what_the_sdk_did(tmp_path: Path, s3_server: S3Server) -> None:
    """Every object GET is a presigned one (the loop's: the SDK signs with
    headers), large multipart objects come as ranged segments, and the
    catalog holds the same size/ETag/version/checksum as the SDK path's."""
    client, bucket = s3_server.client(), f"sig-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    data = {f"small/{i}.bin": os.urandom(1000 + 91 * i) for i in range(6)}
    for key, body in data.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    client.put_object(Bucket=bucket, Key="sha/x.bin", Body=b"with a checksum", ChecksumAlgorithm="SHA256")
    data["sha/x.bin"] = b"with a checksum"
    big = os.urandom(6 << 20)  # multipart (5 + 1 MiB): an ETag "<md5>-2", no MD5 to check
    upload = client.create_multipart_upload(Bucket=bucket, Key="big/multi.bin")
    parts = []
    for n, (start, end) in enumerate(((0, 5 << 20), (5 << 20, 6 << 20))):
        body = big[start:end]
        part = client.upload_part(Bucket=bucket, Key="big/multi.bin", UploadId=upload["UploadId"], PartNumber=n + 1,
                                  Body=body)  # fmt: skip
        parts.append({"ETag": part["ETag"], "PartNumber": n + 1})
    client.complete_multipart_upload(Bucket=bucket, Key="big/multi.bin", UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": parts})  # fmt: skip
    data["big/multi.bin"] = big
    job = {"type": "backend", "bucket": {"name": bucket, "provider": "aws"}}

    homes = {}
    for mode in ("curl", "sdk"):
        home = new_home(tmp_path / mode)
        home.env.update(s3_server.env, DLENGINE_CLOUD_GET=mode, DLENGINE_SEGMENT_THRESHOLD=str(1 << 20))
        s3_server.reset()
        job_id = home.submit(job)
        res = home.run()
        assert res.returncode == 0, res.stderr[-3000:]
        status = home.status(job_id)
        assert (status["done_cnt"], status["error_cnt"]) == (len(data), 0), (mode, status, _errors(home))
        root = home.mountpaths[0] / "aws" / bucket
        assert {k: (root / k).read_bytes() for k in data} == data
        gets = _object_gets(s3_server, bucket)
        presigned = [q for q in gets if "X-Amz-Signature=" in q]
        if mode == "curl":
            assert len(presigned) == len(gets) > len(data)  # all through the loop; the big one in segments
            assert _secrets_left(home, res.stdout, res.stderr) == []
        else:
            assert presigned == [] and len(gets) == len(data)
        homes[mode] = home
        home.stop_all()
    curl, sdk = _catalog(homes["curl"]), _catalog(homes["sdk"])
    assert curl == sdk
    assert curl["big/multi.bin"][2].endswith('-2"') and curl["big/multi.bin"][4] is None  # no MD5 of a multipart
    assert curl["sha/x.bin"][4] == "md5:" + hashlib.md5(b"with a checksum").hexdigest()
    assert all(v[3] for v in curl.values())  # versions recorded
    assert all(v[1] == f"s3://{bucket}/{k}" for k, v in curl.items())  # the plain link, never a URL


def test_wrong_secret_is_an_auth_failure(home: Home, seaweedfs: SeaweedFS) -> None:
    """A store that checks signatures refuses the presigned GET: the object
    fails at once (permanent, code auth), and no signed URL is kept."""
    client, bucket = seaweedfs.client(), f"auth-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="k/one.bin", Body=b"x" * 5000)
    home.env.update(seaweedfs.env)
    # the object named by a link: no listing, so only the GET meets the bad key
    home.env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    job = {"type": "single", "bucket": {"name": "got", "provider": "ais"}, "link": f"s3://{bucket}/k/one.bin"}
    job_id = home.submit(job)
    res = home.run()
    assert res.returncode == 1, res.stderr[-3000:]  # a job with failures
    status = home.status(job_id)
    assert status["error_cnt"] == 1, status
    conn = sqlite3.connect(home.path / "ledger.db")
    try:
        rows = conn.execute("SELECT state, attempts, error_code, error, link FROM objects").fetchall()
    finally:
        conn.close()
    assert rows == [("failed", 1, "auth", mock.ANY, f"s3://{bucket}/k/one.bin")], rows
    assert rows[0][3].startswith(f"s3://{bucket}/k/one.bin: HTTP 403"), rows[0][3]
    shown = home.cli("show", job_id, "-v")
    assert _secrets_left(home, res.stdout, res.stderr, shown.stdout, shown.stderr) == []


def _errors(home: Home) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(home.path / "ledger.db")
    try:
        return conn.execute("SELECT name, state, attempts, error_code, error FROM objects").fetchall()
    finally:
        conn.close()


@pytest.fixture
def gcs_gets(gcs_server: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(path, User-Agent) of every GET the in-process GCS emulator serves."""
    from gcp_storage_emulator import server as emulator

    seen: list[tuple[str, str]] = []
    original = emulator.RequestHandler.do_GET

    def do_get(handler: Any) -> None:
        seen.append((handler.path, handler.headers.get("User-Agent", "")))
        original(handler)

    monkeypatch.setattr(emulator.RequestHandler, "do_GET", do_get)
    return seen


def test_gcs_backend_job_through_the_loop_records_what_the_sdk_did(
    tmp_path: Path, gcs_server: Any, gcs_gets: list[tuple[str, str]]
) -> None:
    bucket = gcs_server.client().create_bucket(f"sig-{uuid.uuid4().hex[:10]}")
    data = {f"g/{i} +x.bin": os.urandom(700 + 333 * i) for i in range(5)}
    for key, body in data.items():
        bucket.blob(key).upload_from_string(body)
    job = {"type": "backend", "bucket": {"name": bucket.name, "provider": "gcp"}}
    catalogs = {}
    for mode in ("curl", "sdk"):
        home = new_home(tmp_path / mode)
        home.env.update(gcs_server.env, DLENGINE_CLOUD_GET=mode)
        gcs_gets.clear()
        job_id = home.submit(job)
        res = home.run()
        assert res.returncode == 0, res.stderr[-3000:]
        status = home.status(job_id)
        assert (status["done_cnt"], status["error_cnt"]) == (len(data), 0), (mode, _errors(home))
        root = home.mountpaths[0] / "gcp" / bucket.name
        assert {k: (root / k).read_bytes() for k in data} == data
        media = [ua for path, ua in gcs_gets if path.startswith(f"/download/storage/v1/b/{bucket.name}/o/")]
        by_loop = [ua for ua in media if ua == "dlengine"]
        assert len(by_loop) == (len(data) if mode == "curl" else 0), gcs_gets
        # the emulator sends no Last-Modified with a media download: the SDK's comes from the metadata
        catalogs[mode] = {k: v[:5] for k, v in _catalog(home).items()}
        home.stop_all()
    assert catalogs["curl"] == catalogs["sdk"]
    assert all(v[3] and v[4] for v in catalogs["curl"].values())  # generation and checksum recorded


def test_azure_through_the_loop_records_what_the_sdk_did(tmp_path: Path, azurite_server: Any) -> None:
    """A backend job (a large blob in ranged segments) stores the same
    catalog as the SDK path; a missing blob fails with the loop's HTTP
    answer (a SAS URL's 404), not the SDK's error, and no SAS is kept."""
    from azure.storage.blob import ContentSettings

    name = f"sig-{uuid.uuid4().hex[:10]}"
    container = azurite_server.client().create_container(name)
    data = {f"z/{i} +x.bin": os.urandom(800 + 777 * i) for i in range(4)}
    data["z/big.bin"] = os.urandom(3 << 20)
    for key, body in data.items():
        md5 = bytearray(hashlib.md5(body).digest())
        container.upload_blob(key, body, content_settings=ContentSettings(content_md5=md5))
    job = {"type": "backend", "bucket": {"name": name, "provider": "azure"}}
    catalogs = {}
    for mode in ("curl", "sdk"):
        home = new_home(tmp_path / mode)
        home.env.update(azurite_server.env, DLENGINE_CLOUD_GET=mode, DLENGINE_SEGMENT_THRESHOLD=str(1 << 20))
        job_id = home.submit(job)
        res = home.run()
        assert res.returncode == 0, res.stderr[-3000:]
        status = home.status(job_id)
        assert (status["done_cnt"], status["error_cnt"]) == (len(data), 0), (mode, _errors(home))
        root = home.mountpaths[0] / "azure" / name
        assert {k: (root / k).read_bytes() for k in data} == data
        catalogs[mode] = _catalog(home)
        missing = {"type": "single", "bucket": {"name": "got", "provider": "ais"}, "link": f"az://{name}/nope.bin"}
        home.submit(missing)
        res = home.run()
        errors = [e for e in _errors(home) if e[0] == "nope.bin"]
        assert [e[1:4] for e in errors] == [("failed", 1, "not-found")], errors
        if mode == "curl":
            assert errors[0][4].startswith(f"az://{name}/nope.bin: HTTP 404"), errors
            assert _secrets_left(home, res.stdout, res.stderr) == []
        home.stop_all()
    assert catalogs["curl"] == catalogs["sdk"]
    assert all(v[5] for v in catalogs["curl"].values())  # the stored MD5 recorded as the checksum


def _through_loop(tmp_path: Path, signed: Any, link: str = "gs://bkt/x.bin") -> Any:
    """One object through a CurlLoop in this process; its outcome."""
    import queue
    import threading

    from dlengine.engine import curl
    from dlengine.ledger.models import Task
    from dlengine.supervisor import work

    results: queue.SimpleQueue[Any] = queue.SimpleQueue()
    loop = curl.CurlLoop(lambda result, _sidecar: results.put(result))
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        task = Task(1, "j", 1, "x.bin", link, 1, 1, "gcp", "", "bkt", 10.0, 0)
        loop.submit(task, work.Context(workdir=tmp_path, headers={"X-Job": "job"}, fsync=False), signed)
        outcome, _ = results.get(timeout=60)
    finally:
        loop.stop()
        thread.join(10)
    return outcome


def test_a_signed_gets_token_goes_only_to_its_own_origin(tmp_path: Path) -> None:
    from dlengine.ledger.states import ObjectState
    from dlengine.sources.base import SignedGet
    from harness.httpd import Fault, TestHTTPServer

    with TestHTTPServer() as a, TestHTTPServer() as b:
        body = os.urandom(5000)
        b.put("/d/x", body)
        a.put("/d/same", body)
        a.set_fault("/r/x", Fault(status=302, location=f"{b.url}/d/x"))
        a.set_fault("/r/same", Fault(status=302, location="/d/same"))
        token = {"Authorization": "Bearer T0K"}
        cross = _through_loop(tmp_path, SignedGet(f"{a.url}/r/x?sig=s3cr3t", token, lambda i, _h: i))
        same = _through_loop(tmp_path, SignedGet(f"{a.url}/r/same?sig=s3cr3t", token, lambda i, _h: i))
        assert cross.state is ObjectState.DONE and same.state is ObjectState.DONE, (cross, same)
        sent = {r.path.split("?")[0]: {k.lower(): v for k, v in r.headers.items()} for r in a.requests + b.requests}
    assert sent["/r/x"]["authorization"] == "Bearer T0K"
    assert "authorization" not in sent["/d/x"]  # another origin: no token
    assert sent["/d/same"]["authorization"] == "Bearer T0K"  # the signed URL's own origin keeps it
    assert all("x-job" not in h for h in sent.values())  # a cloud GET carries its own headers only
    assert (tmp_path / "gcp" / "bkt" / "x.bin").read_bytes() == body


def test_a_failed_signed_get_names_the_link_not_the_url(tmp_path: Path) -> None:
    from dlengine.sources.base import SignedGet
    from harness.cloud_servers import free_port

    url = f"http://127.0.0.1:{free_port()}/bkt/x.bin?X-Amz-Credential=AKID%2Fscope&X-Amz-Signature=s3cr3t"
    outcome = _through_loop(tmp_path, SignedGet(url, {}, lambda i, _h: i), link="s3://bkt/x.bin")
    assert outcome.code.value == "refused" and outcome.error.startswith("s3://bkt/x.bin: connection refused")
    assert "s3cr3t" not in outcome.error and "AKID" not in outcome.error


def test_a_bucket_of_another_region_is_signed_for_its_region(s3_server: S3Server) -> None:
    """The client is us-east-1; the bucket lives in eu-west-1: the URL is
    signed for eu-west-1 (as the SDK, which follows the bucket's region)."""
    name = f"eu-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    got = s3.S3Source(name).signed_get("k.bin")
    assert got is not None
    scope = dict(parse_qsl(urlsplit(got.url).query))["X-Amz-Credential"]
    assert scope.split("/")[2] == "eu-west-1", scope
    home = s3.S3Source(f"us-{uuid.uuid4().hex[:8]}")
    s3_server.client().create_bucket(Bucket=home.bucket)
    got = home.signed_get("k.bin")
    assert got is not None and "/us-east-1/s3/" in dict(parse_qsl(urlsplit(got.url).query))["X-Amz-Credential"]
