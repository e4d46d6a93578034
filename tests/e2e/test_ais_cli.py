"""`dlengine download` of a cloud prefix into another bucket, as AIStore's
CLI does it (`ais download gs://bkt/dir/prefix- ais://local`): the listing
is copied with skip-unchanged, and `--sync` deletes only what this source
put into that bucket. And AIStore's CLI test of the downloader
(cmd/cli/test/download.in), ported."""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path

import pytest

from dlengine.client import Client
from dlengine.config import load_settings
from dlengine.ledger.ledger import Ledger
from dlengine.supervisor.dispatch import Dispatcher
from harness.cloud_servers import GCSServer, S3Server
from tests.conftest import Home


def _spec(home: Home, job_id: str) -> dict[str, object]:
    """The job request as stored (``show --json`` leaves it out)."""
    ledger = Ledger.open(home.path / "ledger.db")
    try:
        spec: dict[str, object] = json.loads(ledger.job(job_id).spec)
    finally:
        ledger.close()
    return spec


def _job_id(home: Home, *args: str) -> str:
    res = home.cli("download", *args, "--no-start")
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def _run(home: Home, *args: str) -> dict[str, object]:
    job_id = _job_id(home, *args)
    assert home.run().returncode == 0
    return home.status(job_id)


def test_prefix_without_slash_into_another_bucket_with_sync(home: Home, gcs_server: GCSServer) -> None:
    home.env.update(gcs_server.env)
    bucket = gcs_server.client().create_bucket(f"src-{uuid.uuid4().hex[:8]}")
    data = {f"dir/prefix-{i}.bin": os.urandom(700 + i) for i in range(3)}
    for key, body in {**data, "dir/other.bin": b"o", "dir/prefix/deeper.bin": b"d"}.items():
        bucket.blob(key).upload_from_string(body)
    expected = {**{k: len(v) for k, v in data.items()}, "dir/prefix/deeper.bin": 1}
    src = f"gs://{bucket.name}/dir/prefix"

    job_id = _job_id(home, src, "ais://local", "--sync")
    spec = _spec(home, job_id)
    assert spec["type"] == "backend" and spec["prefix"] == "dir/prefix"  # a prefix, not one object
    assert spec["backend_bck"] == {"name": bucket.name, "provider": "gcp"}
    assert home.run().returncode == 0
    assert home.ls("ais://local") == expected
    stored = home.find("ais", "local", "dir/prefix-0.bin")
    assert stored is not None and stored.read_bytes() == data["dir/prefix-0.bin"]

    # objects of another source in the same local bucket
    other = gcs_server.client().create_bucket(f"other-{uuid.uuid4().hex[:8]}")
    other.blob("dir/prefix-9.bin").upload_from_string(b"nine")
    assert _run(home, f"gs://{other.name}/dir/prefix", "ais://local")["finished_cnt"] == 1

    bucket.blob("dir/prefix-1.bin").delete()
    again = _run(home, src, "ais://local", "--sync")
    assert (again["skipped_cnt"], again["finished_cnt"]) == (3, 4)  # 3 unchanged, 1 deletion
    listed = home.ls("ais://local")
    assert "dir/prefix-1.bin" not in listed and listed["dir/prefix-9.bin"] == 4  # the other source's stays
    assert not [p for p in home.visible_files() if "gcp" in p.parts]  # nothing in the source's own local copy


def test_object_list_names_are_the_base_of_each_link(home: Home) -> None:
    listing = home.path.parent / "list.json"
    listing.write_text(json.dumps(["a/x.bin", "b/y.bin?sig=1"]))
    job_id = _job_id(home, "http://127.0.0.1:9/base", "ais://olist", "--object-list", str(listing))
    spec = _spec(home, job_id)
    assert spec["objects"] == {
        "x.bin": "http://127.0.0.1:9/base/a/x.bin",
        "y.bin": "http://127.0.0.1:9/base/b/y.bin?sig=1",
    }


def test_backend_total_is_minus_one_until_listed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s3_server: S3Server
) -> None:
    """AIStore's ``Job.Total`` is negative while unknown: a backend job's
    is -1 from submission until its listing has ended."""
    for key, value in {**s3_server.env, "DLENGINE_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DLENGINE_MOUNTPATHS", raising=False)
    s3_server.client().create_bucket(Bucket="total-src")
    for i in range(3):
        s3_server.client().put_object(Bucket="total-src", Key=f"k{i}", Body=b"x")
    client = Client(load_settings())
    job = {"type": "backend", "bucket": {"name": "t"}, "backend_bck": {"name": "total-src", "provider": "aws"}}
    job_id = client.submit(job, start=False)
    assert client.status(job_id)["total"] == -1
    dispatcher = Dispatcher(client.settings, threading.Event())
    while dispatcher.dispatch_round(client.ledger):
        pass
    status = client.status(job_id)
    assert (status["total"], status["scheduled_cnt"], status["all_dispatched"]) == (3, 3, True)


def test_aistore_cli_download_test(home: Home, gcs_server: GCSServer) -> None:
    """cmd/cli/test/download.in: the original's ``ais job start download``
    lines as ``dlengine download``, ``ais job wait download ID`` as
    ``dlengine wait ID``; the id taken from ``show --regex R --all`` as the
    original's awk does (the first job's row is line 2 here: the table has
    no blank line before its header)."""
    home.env.update(gcs_server.env)
    name = f"minikube-{uuid.uuid4().hex[:8]}"
    bucket = gcs_server.client().create_bucket(name)
    for version in ("0.23.2", "0.23.3", "0.23.4", "0.25.0", "0.25.1"):
        bucket.blob(f"iso/minikube-v{version}.iso.sha256").upload_from_string(f"sha of {version}\n")

    # unquoted braces: the shell hands over 141 links
    expanded = [f"gs://lpr-vision/imagenet/imagenet_train-{i:06d}.tgz" for i in range(141)]
    res = home.cli("download", *expanded, "ais://clitest")
    assert res.returncode == 2 and "too many arguments" in res.stderr, res.stderr
    assert "enclose source in quotation marks" in res.stderr

    def start_and_wait(src: str, desc: str, *extra: str) -> dict[str, object]:
        started = home.cli("download", src, "ais://clitest", f"--desc={desc}", *extra)
        assert started.returncode == 0, started.stderr
        table = home.cli("show", f"--regex={desc}$", "--all").stdout.splitlines()
        job_id = table[1].split()[0]  # awk 'NR==3 {print $1}' in the original
        assert job_id == started.stdout.split()[-1]
        assert home.cli("wait", job_id).returncode == 0
        status = home.status(job_id)
        assert status["state"] == "finished", status  # "^download.*finished$"
        return status

    # a cloud SRC is a prefix here (docs/api.md): its object keeps its key,
    # where AIStore, the bucket having no such backend, stores the web link
    # by its base name (and then skips it in the range below)
    single = start_and_wait(f"gs://{name}/iso/minikube-v0.23.2.iso.sha256", "minikube")
    assert (single["finished_cnt"], single["skipped_cnt"]) == (1, 0)  # "Done: 1 file downloaded"
    assert list(home.ls("ais://clitest")) == ["iso/minikube-v0.23.2.iso.sha256"]
    ranged = start_and_wait(f"gs://{name}/iso/minikube-v0.23.{{2..4}}.iso.sha256", "minikube-range")
    assert ranged["type"] == "range" and ranged["finished_cnt"] == 3  # "Done: 3 files downloaded[, skipped: 1]"
    listing = home.path.parent / "ais_test_dl_list.txt"
    listing.write_text(json.dumps(["iso/minikube-v0.25.0.iso.sha256", "iso/minikube-v0.25.1.iso.sha256"]))
    multi = start_and_wait(f"gs://{name}", "minikube-multi", f"--object-list={listing}")
    assert multi["type"] == "multi"
    assert (multi["finished_cnt"], multi["skipped_cnt"]) == (2, 0)  # "Done: 2 files downloaded"
    names = [f"minikube-v{v}.iso.sha256" for v in ("0.23.2", "0.23.3", "0.23.4", "0.25.0", "0.25.1")]
    assert sorted(home.ls("ais://clitest")) == ["iso/minikube-v0.23.2.iso.sha256", *names]


def test_prefix_into_a_local_directory_re_run_and_sync(home: Home, s3_server: S3Server, tmp_path: Path) -> None:
    """`dlengine download s3://bkt/prefix/ ./dir/`, as `rclone copy` does:
    the listing lands under the directory (names below the prefix kept as
    they are in the bucket), a re-run downloads nothing unchanged, and
    `--sync` removes only the copies of objects gone from the bucket."""
    home.env.update(s3_server.env)
    s3 = s3_server.client()
    s3.create_bucket(Bucket="dirsrc")
    data = {f"train/part-{i}.bin": os.urandom(900 + i) for i in range(3)}
    for key, body in {**data, "eval/x.bin": b"e"}.items():
        s3.put_object(Bucket="dirsrc", Key=key, Body=body)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("the user's own file")

    first = _run(home, "s3://dirsrc/train/", f"{out}/", "--sync")
    assert (first["finished_cnt"], first["error_cnt"]) == (3, 0), first
    for key, body in data.items():
        assert (out / key).read_bytes() == body
    assert not (out / "eval").exists()

    before = len(s3_server.requests)
    again = _run(home, "s3://dirsrc/train/", f"{out}/", "--sync")
    assert (again["skipped_cnt"], again["finished_cnt"]) == (3, 3), again  # (finished counts the skipped)
    assert [r for r in s3_server.requests[before:] if "part-" in r[1]] == []  # not one object asked for

    s3.delete_object(Bucket="dirsrc", Key="train/part-1.bin")
    synced = _run(home, "s3://dirsrc/train/", f"{out}/", "--sync")
    assert (synced["skipped_cnt"], synced["finished_cnt"]) == (2, 3), synced  # 2 unchanged, 1 deletion
    assert not (out / "train/part-1.bin").exists() and (out / "train/part-0.bin").exists()
    assert (out / "mine.txt").read_text() == "the user's own file"  # not the bucket's: left alone
