"""End to end per cloud provider, through the CLI and real processes:
backend jobs (bytes identical), an incremental ``sync`` re-run after the
remote changed, write-through into an S3 bucket, cloud links, ``ls``, and
what happens without the SDK."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dlengine.client import Client
from dlengine.config import load_settings
from dlengine.ledger import jobs
from dlengine.sources import registry, s3
from dlengine.sources.http import HTTPSource
from dlengine.supervisor.dispatch import Dispatcher
from harness.cloud_servers import AzuriteServer, GCSServer, S3Server
from harness.httpd import TestHTTPServer
from tests.conftest import Home


@dataclass
class Bucket:
    """A remote bucket driven by the provider's own SDK."""

    provider: str
    scheme: str
    name: str
    env: dict[str, str]
    put: Callable[[str, bytes], None]
    delete: Callable[[str], None]
    read: Callable[[str], bytes]

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.name}"


def _name() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"


def _s3_bucket(server: S3Server) -> Bucket:
    client, name = server.client(), _name()
    client.create_bucket(Bucket=name)
    return Bucket(
        "aws", "s3", name, server.env,
        put=lambda k, d: client.put_object(Bucket=name, Key=k, Body=d),
        delete=lambda k: client.delete_object(Bucket=name, Key=k),
        read=lambda k: client.get_object(Bucket=name, Key=k)["Body"].read(),
    )  # fmt: skip


def _gcs_bucket(server: GCSServer) -> Bucket:
    bucket = server.client().create_bucket(_name())
    return Bucket(
        "gcp", "gs", bucket.name, server.env,
        put=lambda k, d: bucket.blob(k).upload_from_string(d),
        delete=lambda k: bucket.blob(k).delete(),
        read=lambda k: bucket.blob(k).download_as_bytes(),
    )  # fmt: skip


def _azure_bucket(server: AzuriteServer) -> Bucket:
    name = _name()
    container = server.client().create_container(name)
    return Bucket(
        "azure", "az", name, server.env,
        put=lambda k, d: container.upload_blob(k, d, overwrite=True),
        delete=lambda k: container.delete_blob(k),
        read=lambda k: container.download_blob(k).readall(),
    )  # fmt: skip


@pytest.fixture(params=["s3", "gcs", "azure"])
def bucket(request: pytest.FixtureRequest) -> Bucket:
    make: dict[str, Callable[[], Bucket]] = {
        "s3": lambda: _s3_bucket(request.getfixturevalue("s3_server")),
        "gcs": lambda: _gcs_bucket(request.getfixturevalue("gcs_server")),
        "azure": lambda: _azure_bucket(request.getfixturevalue("azurite_server")),
    }
    return make[request.param]()


def _fill(bucket: Bucket, names: list[str]) -> dict[str, bytes]:
    data = {name: os.urandom(1000 + 37 * i) for i, name in enumerate(names)}
    for name, body in data.items():
        bucket.put(name, body)
    return data


def _run(home: Home, job: dict[str, Any]) -> dict[str, Any]:
    job_id = home.submit(job)
    res = home.run()
    assert res.returncode == 0, res.stderr[-3000:]
    return home.status(job_id)


def _rows(home: Home, job_id: str) -> dict[str, Any]:
    conn = home.ledger()
    try:
        sql = "SELECT o.name, o.state, o.attempts, o.error FROM objects o JOIN jobs j ON j.seq = o.job WHERE j.id = ?"
        return {r["name"]: dict(r) for r in conn.execute(sql, (job_id,))}
    finally:
        conn.close()


def _local(home: Home, bucket: Bucket) -> dict[str, bytes]:
    root = home.mountpaths[0] / bucket.provider / bucket.name
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_backend_job_then_sync_rerun(home: Home, bucket: Bucket, request: pytest.FixtureRequest) -> None:
    home.env.update(bucket.env)
    names = [f"data/{c}.bin" for c in "abcdef"] + ["data/sub/deep.bin"]
    data = _fill(bucket, names)
    _fill(bucket, ["data/notes.txt", "other/x.bin"])  # outside the suffix / the prefix
    job = {"type": "backend", "bucket": {"name": bucket.name, "provider": bucket.provider}}
    job.update(prefix="data/", suffix=".bin")

    first = _run(home, job)
    assert (first["state"], first["done_cnt"], first["error_cnt"]) == ("finished", 7, 0), first
    assert first["bytes_done"] == first["bytes_total"] == sum(map(len, data.values()))
    assert _local(home, bucket) == data
    assert home.ls(bucket.uri) == {n: len(b) for n, b in data.items()}
    assert home.work_files() == []

    # the remote changes: two deleted, one overwritten with as many bytes, one added
    for gone in ("data/a.bin", "data/b.bin"):
        bucket.delete(gone)
        del data[gone]
    data["data/c.bin"] = os.urandom(len(data["data/c.bin"]))
    data["data/g.bin"] = os.urandom(500)
    for changed in ("data/c.bin", "data/g.bin"):
        bucket.put(changed, data[changed])
    if "s3_server" in request.fixturenames:
        request.getfixturevalue("s3_server").reset()

    second = _run(home, {**job, "sync": True})
    unchanged = ["data/d.bin", "data/e.bin", "data/f.bin", "data/sub/deep.bin"]
    assert second["state"] == "finished" and second["error_cnt"] == 0, second
    assert (second["skipped_cnt"], second["done_cnt"], second["finished_cnt"]) == (4, 4, 8)
    assert _local(home, bucket) == data  # exactly the remote set, byte for byte
    assert home.ls(bucket.uri) == {n: len(b) for n, b in data.items()}
    rows = _rows(home, second["id"])
    # skipped at dispatch from the listing alone: never claimed, never fetched
    assert all(rows[n]["state"] == "skipped" and rows[n]["attempts"] == 0 for n in unchanged)
    assert {n for n, r in rows.items() if r["error"] and r["error"].startswith("deleted")} == {
        "data/a.bin",
        "data/b.bin",
    }
    conn = home.ledger()
    try:  # counters inserted with the rows equal the rows
        seq = conn.execute("SELECT seq FROM jobs WHERE id = ?", (second["id"],)).fetchone()[0]
        counts = jobs.count_by_state(conn, seq)
    finally:
        conn.close()
    assert (counts["done"], counts["skipped"], counts["pending"]) == (4, 4, 0)
    assert second["total"] == second["scheduled_cnt"] == 8
    if "s3_server" in request.fixturenames:
        server: S3Server = request.getfixturevalue("s3_server")
        assert sum(server.count(path=f"/{bucket.name}/{n}") for n in unchanged) == 0
        assert server.count("GET", f"/{bucket.name}/data/c.bin") == 1


def test_write_through_into_s3(home: Home, s3_server: S3Server, httpd: TestHTTPServer) -> None:
    """A multi job whose destination is s3://bkt stores there, from an HTTP
    link and from an s3:// link (read through the SDK)."""
    home.env.update(s3_server.env)
    src, dst = _s3_bucket(s3_server), _s3_bucket(s3_server)
    body_a, body_b = os.urandom(3000), os.urandom(70_000)
    httpd.put("/wt/a.bin", body_a)
    src.put("deep/b.bin", body_b)
    objects = {"x/a.bin": f"{httpd.url}/wt/a.bin", "b.bin": f"{src.uri}/deep/b.bin"}
    status = _run(home, {"type": "multi", "bucket": {"name": dst.name, "provider": "s3"}, "objects": objects})
    assert (status["done_cnt"], status["error_cnt"]) == (2, 0), status
    assert dst.read("x/a.bin") == body_a and dst.read("b.bin") == body_b
    assert home.visible_files() == [] and home.work_files() == []
    res = home.cli("ls", dst.uri, "--remote", "--json")
    assert res.returncode == 0, res.stderr
    assert {e["name"]: e["size"] for e in json.loads(res.stdout)} == {"x/a.bin": 3000, "b.bin": 70_000}


def test_cloud_link_into_a_local_bucket(home: Home, gcs_server: GCSServer) -> None:
    home.env.update(gcs_server.env)
    src = _gcs_bucket(gcs_server)
    body = os.urandom(5000)
    src.put("a/b/c.tar", body)
    status = _run(home, {"type": "single", "bucket": {"name": "local"}, "link": f"{src.uri}/a/b/c.tar"})
    assert status["done_cnt"] == 1, status
    stored = home.find("ais", "local", "c.tar")
    assert stored is not None and stored.read_bytes() == body


def test_cli_download_of_a_prefix_and_ls(home: Home, s3_server: S3Server) -> None:
    home.env.update(s3_server.env)
    src = _s3_bucket(s3_server)
    data = _fill(src, ["train/0.bin", "train/1.bin"])
    _fill(src, ["test/0.bin"])
    res = home.cli("download", f"{src.uri}/train/", src.uri, "--sync", "--wait")
    assert res.returncode == 0, res.stderr
    assert home.ls(src.uri) == {n: len(b) for n, b in data.items()}
    res = home.cli("ls", src.uri, "--remote", "--json")
    assert {e["name"] for e in json.loads(res.stdout)} == {"train/0.bin", "train/1.bin", "test/0.bin"}
    # into another bucket (AIStore's TestDownloadRemote/src!=dst): tests/test_ais_cli.py
    copied = home.cli("download", f"{src.uri}/train/", "ais://elsewhere", "--wait")
    assert copied.returncode == 0, copied.stderr
    assert home.ls("ais://elsewhere") == {n: len(b) for n, b in data.items()}


def test_without_the_sdk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Links fall back to public HTTPS; a backend job fails naming the extra."""
    monkeypatch.setattr(s3, "available", lambda: False)
    source, key = registry.resolve("s3://bkt/some/key.tar")
    assert isinstance(source, HTTPSource) and key == "https://bkt.s3.amazonaws.com/some/key.tar"
    monkeypatch.setenv("DLENGINE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DLENGINE_MOUNTPATHS", raising=False)
    client = Client(load_settings())
    job_id = client.submit({"type": "backend", "bucket": {"name": "bkt", "provider": "aws"}}, start=False)
    Dispatcher(client.settings, threading.Event()).dispatch_round(client.ledger)
    status = client.status(job_id)
    assert status["state"] == "aborted"
    assert "pip install 'dlengine[s3]'" in status["error"]


def test_listing_a_bucket_without_the_sdk_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ls s3://bkt --remote` without boto3: exit 2 and the extra to
    install, not an "internal error" (exit 3)."""
    from dlengine.cli.main import main

    monkeypatch.setattr(s3, "available", lambda: False)
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DLENGINE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DLENGINE_MOUNTPATHS", raising=False)
    assert main(["ls", "s3://bkt", "--remote"]) == 2
    error = capsys.readouterr().err
    assert "pip install 'dlengine[s3]'" in error and "internal error" not in error, error
