"""AIStore's downloader tests (ais/test/downloader_test.go), ported.

Each test keeps the name and the steps of its Go original, with links
served by harness/httpd.py and remote buckets by moto, against `dlengine
serve` on loopback. ``AisApi`` sends the bodies AIStore's Go API marshals
(``api.DownloadSingle`` & co: every field of ``dload.Base``, the bucket as
``cmn.Bck``) and reads answers as its types do (test_ais_wire.py decodes
them); ``wait_for_download`` is the original's ``waitForDownload``: a job
has finished when its ``finished_time`` is set (``Job.JobFinished``).

Not ported: the mountpath case (disabling a mountpath of a running
cluster), TestDownloadOverrideObject (bucket access properties: dlengine
has none; its skip is test_download_skip_object), ETL cases (no ETL).
The checksum cases check what AIStore's ValidateWarmGet does: the
recorded checksum is the stored bytes'.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.cloud_servers import S3Server
from harness.httpd import Fault, TestHTTPServer
from tests.conftest import Home, wait_for
from tests.e2e.test_ais_wire import ERR_HTTP, JOB_INFOS, check_status
from tests.e2e.test_api import DOWNLOAD, Api, start_api

DESC_PREFIX = "downloader-test-integration"


def bck(name: str, provider: str = "ais") -> dict[str, Any]:
    """``cmn.Bck`` as Go marshals it."""
    return {"name": name, "provider": provider, "namespace": {"uuid": "", "name": ""}}


@dataclass
class AisApi:
    """AIStore's Go API for the downloader (api/download.go), over HTTP."""

    api: Api
    count: int = 0

    def desc(self) -> str:  # generateDownloadDesc
        self.count += 1
        return f"{DESC_PREFIX}-{os.getpid()}-{self.count}"

    def base(self, bucket: dict[str, Any], **extra: Any) -> dict[str, Any]:
        body = {"description": self.desc(), "bucket": bucket, "timeout": "", "progress_interval": ""}
        return {**body, "limits": {"connections": 0, "bytes_per_hour": 0}, **extra}

    def download(self, kind: str, body: dict[str, Any]) -> str:  # DownloadWithParam
        res = self.api.call("POST", DOWNLOAD, {"type": kind, **body})
        assert res.status_code == 200, res.text
        job_id: str = res.json()["id"]
        return job_id

    def single(self, bucket: dict[str, Any], obj: str, link: str) -> str:
        return self.download("single", self.base(bucket, object_name=obj, link=link, from_remote=False))

    def range(self, bucket: dict[str, Any], template: str) -> str:
        return self.download("range", self.base(bucket, template=template, subdir=""))

    def multi(self, bucket: dict[str, Any], objects: object) -> str:
        return self.download("multi", self.base(bucket, objects=objects))

    def backend(self, bucket: dict[str, Any], **fields: Any) -> str:
        body = {"prefix": "", "suffix": "", "synchronize": False, **fields}
        return self.download("backend", self.base(bucket, **body))

    def status(self, job_id: str, only_active: bool = False) -> dict[str, Any]:
        res = self.api.call("GET", DOWNLOAD, self._admin(id=job_id, only_active_tasks=only_active))
        assert res.status_code == 200, res.text
        status: dict[str, Any] = res.json()
        check_status(status)
        return status

    def status_error(self, job_id: str) -> dict[str, Any]:
        return self._error("GET", DOWNLOAD, self._admin(id=job_id))

    def list(self, regex: str = "^" + DESC_PREFIX, only_active: bool = False) -> list[dict[str, Any]]:
        res = self.api.call("GET", DOWNLOAD, self._admin(regex=regex, only_active_tasks=only_active))
        assert res.status_code == 200, res.text
        listed: list[dict[str, Any]] = res.json()
        JOB_INFOS.decode(listed)
        return listed

    def abort(self, job_id: str) -> None:
        res = self.api.call("DELETE", DOWNLOAD + "/abort", self._admin(id=job_id))
        assert res.status_code == 200, res.text

    def remove(self, job_id: str) -> None:
        res = self.api.call("DELETE", DOWNLOAD + "/remove", self._admin(id=job_id))
        assert res.status_code == 200, res.text

    def remove_error(self, job_id: str) -> dict[str, Any]:
        return self._error("DELETE", DOWNLOAD + "/remove", self._admin(id=job_id))

    def _error(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        res = self.api.call(method, path, body)
        assert res.status_code >= 400, res.text
        payload: dict[str, Any] = res.json()
        ERR_HTTP.decode(payload)
        assert payload["message"], payload  # what AIStore's client prints
        return payload

    @staticmethod
    def _admin(id: str = "", regex: str = "", only_active_tasks: bool = False) -> dict[str, Any]:
        return {"id": id, "regex": regex, "only_active_tasks": only_active_tasks}

    # the original's helpers

    def wait_for_download(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            status = self.status(job_id, only_active=True)
            return status if status["finished_time"] is not None else None

        done: dict[str, Any] = wait_for(finished, timeout=timeout, interval=0.1)
        return done

    def abort_download(self, job_id: str) -> None:  # abortDownload
        self.abort(job_id)
        self.wait_for_download(job_id, 16)
        status = self.status(job_id)
        assert status["aborted"], "download was not marked aborted"
        assert status["finished_time"] is not None, "download should be finished"
        assert status["current_tasks"] == [], "current tasks should be empty"

    def clear_download_list(self) -> None:  # clearDownloadList
        for job in self.list():
            if job["finished_time"] is None:
                self.abort(job["id"])
        for job in self.list():
            self.wait_for_download(job["id"])
            self.remove(job["id"])

    def check_download_list(self, expected: int = 1) -> None:  # checkDownloadList
        assert len(self.list()) == expected
        self.clear_download_list()
        assert self.list() == []

    def check_downloaded_objects(self, home: Home, job_id: str, bucket: str, objects: list[str]) -> None:
        status = self.status(job_id)
        assert status["finished_cnt"] == len(objects), status
        assert sorted(home.ls(f"ais://{bucket}")) == sorted(objects)


@pytest.fixture
def ais(home: Home, s3_server: S3Server) -> Iterator[AisApi]:
    home.env.update(s3_server.env)
    server = start_api(home)
    yield AisApi(server)
    server.session.close()


def _slow(httpd: TestHTTPServer, path: str, size: int = 20_000_000, rate: int = 200_000) -> str:
    httpd.put_generated(path, size)
    httpd.set_fault(path, Fault(rate=rate))
    return httpd.url + path


def _closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Unanswering:
    """A loopback server that never answers. ``silent`` accepts and reads
    the request; ``headers`` sends a status line and headers (and 3 bytes
    of a longer body), then nothing; ``backlog`` never accepts, its queue
    full (a connect hangs, as to a host that drops packets). ``lifetimes``:
    how long each accepted connection lasted until the client closed it."""

    kind: str
    lifetimes: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _sockets: list[socket.socket] = field(default_factory=list)

    def start(self) -> str:
        server = self._keep(socket.socket())
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        if self.kind == "backlog":
            for _ in range(4):  # more than the queue holds: later SYNs are dropped
                filler = self._keep(socket.socket())
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
        else:
            server.listen(16)
            server.settimeout(0.1)
            threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return f"http://127.0.0.1:{port}/nvdata-openimages/openimages-train-000001.tar"

    def _keep(self, sock: socket.socket) -> socket.socket:
        self._sockets.append(sock)
        return sock

    def _accept(self, server: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            self._keep(conn)
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        """Read the request, answer (or not), then wait for the client to go."""
        accepted = time.monotonic()
        conn.settimeout(0.1)
        answered = self.kind == "silent"
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if not answered and b"\r\n\r\n" in data:
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nETag: "u"\r\n\r\nabc')
                answered = True
        else:
            return
        self.lifetimes.append(time.monotonic() - accepted)

    def stop(self) -> None:
        self._stop.set()
        for sock in self._sockets:
            sock.close()


@contextlib.contextmanager
def unanswering(kind: str) -> Iterator[tuple[str, Unanswering]]:
    """A link to an :class:`Unanswering` server (``refused``: a closed port)."""
    server = Unanswering(kind)
    try:
        yield (f"http://127.0.0.1:{_closed_port()}/x" if kind == "refused" else server.start()), server
    finally:
        server.stop()


def _minikube(httpd: TestHTTPServer, versions: list[str]) -> str:
    """The original's storage.googleapis.com/minikube/iso/... files, here."""
    for version in versions:
        httpd.put(f"/minikube/iso/minikube-v{version}.iso.sha256", f"sha of {version}\n".encode())
    return httpd.url.removeprefix("http://") + "/minikube/iso/"  # without a scheme, as the original


# ------------------------------------------------------------ the tests


def test_download_single(ais: AisApi, home: Home, httpd: TestHTTPServer) -> None:
    link_large = _slow(httpd, "/nvdata-openimages/openimages-train-000001.tar").removeprefix("http://")
    link_small = _minikube(httpd, ["0.23.0"]) + "minikube-v0.23.0.iso.sha256"
    bucket = bck("single")
    ais.clear_download_list()

    job_id = ais.single(bucket, "object", link_large)
    time.sleep(1)
    second = ais.single(bucket, "object-second", link_large)
    ais.abort(second)  # cancel the second object
    ais.abort_download(job_id)  # and the first one

    status = ais.status(job_id)  # still available after the abort
    assert status["aborted"], status
    ais.abort(job_id)  # aborting again is no error
    ais.remove(job_id)
    assert "not found" in ais.remove_error(job_id)["message"]  # removing a removed job is

    job_id = ais.single(bucket, "object", link_small)
    ais.wait_for_download(job_id, 30)
    ais.check_downloaded_objects(home, job_id, "single", ["object"])
    ais.wait_for_download(second)
    ais.check_download_list(2)


def test_download_range(ais: AisApi, home: Home, httpd: TestHTTPServer) -> None:
    base = _minikube(httpd, [f"0.23.{i}" for i in range(5)])
    job_id = ais.range(bck("range"), base + "minikube-v0.23.{0..4}.iso.sha256")
    ais.wait_for_download(job_id, 10)
    expected = [f"minikube-v0.23.{i}.iso.sha256" for i in range(5)]
    ais.check_downloaded_objects(home, job_id, "range", expected)
    ais.check_download_list()


def test_download_multi_range(ais: AisApi, home: Home, httpd: TestHTTPServer) -> None:
    base = _minikube(httpd, [f"0.{m}.{p}" for m in range(23, 26) for p in range(2)])
    job_id = ais.range(bck("mrange"), base + "minikube-v0.{23..25..2}.{0..1}.iso.sha256")
    ais.wait_for_download(job_id, 10)
    expected = [f"minikube-v0.{m}.{p}.iso.sha256" for m in (23, 25) for p in (0, 1)]
    ais.check_downloaded_objects(home, job_id, "mrange", expected)
    ais.check_download_list()


def test_download_multi_map(ais: AisApi, home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/NVIDIA/aistore/main/README.md", b"# AIStore\n")
    httpd.put("/kubernetes/kubernetes/master/README.md", b"# Kubernetes\n")
    mapping = {
        "ais": httpd.url + "/NVIDIA/aistore/main/README.md",
        "k8s": httpd.url + "/kubernetes/kubernetes/master/README.md",
    }
    job_id = ais.multi(bck("mmap"), mapping)
    ais.wait_for_download(job_id, 30)
    ais.check_downloaded_objects(home, job_id, "mmap", ["ais", "k8s"])
    ais.check_download_list()


def test_download_multi_list(ais: AisApi, home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/NVIDIA/aistore/main/README.md", b"# AIStore\n")
    httpd.put("/kubernetes/kubernetes/master/LICENSE", b"Apache License\n")
    links = [
        httpd.url + "/NVIDIA/aistore/main/README.md",
        httpd.url + "/kubernetes/kubernetes/master/LICENSE?query=values",
    ]
    job_id = ais.multi(bck("mlist"), links)
    ais.wait_for_download(job_id, 30)
    ais.check_downloaded_objects(home, job_id, "mlist", ["LICENSE", "README.md"])
    ais.check_download_list()


def test_download_status(ais: AisApi, home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/NVIDIA/aistore/main/README.md", b"# AIStore\n")
    files = {
        "shortFile": httpd.url + "/NVIDIA/aistore/main/README.md",
        "longFile": _slow(httpd, "/NVIDIA/aistore/main/docs/images/ais-s3-tf.gif"),
    }
    job_id = ais.multi(bck("status"), files)
    wait_for(lambda: home.find("ais", "status", "shortFile"), timeout=13)  # WaitForObjectToBeDowloaded

    def short_done() -> dict[str, Any] | None:
        status = ais.status(job_id)
        return status if status["finished_cnt"] == 1 else None

    status = wait_for(short_done, timeout=13)
    assert status["total"] == 2
    assert [t["name"] for t in status["current_tasks"]] == ["longFile"]
    ais.check_download_list()


def test_download_status_error(ais: AisApi, home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/404.tar", b"x")
    httpd.set_fault("/404.tar", Fault(status=404))
    files = {
        "invalidURL": f"http://127.0.0.1:{_closed_port()}/x",  # the original's unreachable host, on loopback
        "notFoundFile": httpd.url + "/404.tar",
    }
    job_id = ais.multi(bck("errors"), files)
    ais.wait_for_download(job_id, 60)
    status = ais.status(job_id)
    assert status["total"] == len(files)
    assert status["finished_cnt"] == 0
    assert status["error_cnt"] == len(files), status["download_errors"]
    assert {e["name"] for e in status["download_errors"]} == set(files)
    ais.check_download_list()


def test_download_into_nonexistent_bucket(ais: AisApi, home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/o.tar", b"o")
    job_id = ais.single(bck("never-created"), "object", httpd.url + "/o.tar")
    ais.wait_for_download(job_id)
    assert home.ls("ais://never-created") == {"object": 1}


def _remote(s3_server: S3Server, name: str, keys: list[str]) -> Any:
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    for key in keys:
        client.put_object(Bucket=name, Key=key, Body=os.urandom(256))
    return client


@pytest.mark.parametrize("case", ["src==dst", "src!=dst"])
def test_download_remote(ais: AisApi, home: Home, s3_server: S3Server, case: str) -> None:
    prefix, suffix = "imagenet/imagenet_train-", ".tgz"
    src = "remote-same" if case == "src==dst" else "remote-other"
    expected = [f"{prefix}{i:05d}{suffix}" for i in range(5)]
    _remote(s3_server, src, [*expected, "imagenet/other.tgz", f"{prefix}00009.txt"])
    if case == "src==dst":
        dst, fields, listed = bck(src, "aws"), {}, f"aws://{src}"
    else:
        dst, fields, listed = bck("local"), {"backend_bck": {"name": src, "provider": "aws"}}, "ais://local"
    job_id = ais.backend(dst, prefix=prefix, suffix=suffix, **fields)
    ais.wait_for_download(job_id)
    assert sorted(home.ls(listed)) == expected
    status = ais.status(job_id)
    assert (status["total"], status["finished_cnt"]) == (5, 5)

    again = ais.backend(dst, prefix=prefix, suffix=suffix, **fields)
    ais.abort(again)
    assert ais.status(again)["aborted"], f"canceled remote download {again} not marked"
    ais.wait_for_download(again)
    ais.check_download_list(2)


def _checksummed(httpd: TestHTTPServer, versions: list[str]) -> str:
    """The original's GCS files, with their MD5 as ETag and Content-MD5
    (what storage.googleapis.com's x-goog-hash gives it)."""
    for version in versions:
        httpd.put(f"/ck/minikube-v{version}.iso.sha256", os.urandom(65), content_md5=True)
    return httpd.url + "/ck/"


def _check_checksums(home: Home, bucket: str, names: list[str]) -> None:
    """What AIStore's ValidateWarmGet checks on a GET: the stored bytes have
    the checksum recorded for them, the source's own."""
    conn = home.ledger()
    try:
        rows = conn.execute("SELECT name, checksum FROM catalog WHERE bucket = ?", (bucket,)).fetchall()
    finally:
        conn.close()
    recorded = {r[0]: r[1] for r in rows}
    for name in names:
        stored = home.find("ais", bucket, name)
        assert stored is not None, name
        assert recorded[name] == "md5:" + hashlib.md5(stored.read_bytes()).hexdigest(), name


def test_download_single_valid_external_and_internal_checksum(ais: AisApi, home: Home, httpd: TestHTTPServer) -> None:
    base = _checksummed(httpd, ["0.23.2", "0.23.3"])
    first = ais.single(bck("cksum-single"), "object-first", base + "minikube-v0.23.2.iso.sha256")
    second = ais.single(bck("cksum-single"), "object-second", base + "minikube-v0.23.3.iso.sha256")
    ais.wait_for_download(first, 10)
    ais.wait_for_download(second, 10)
    _check_checksums(home, "cksum-single", ["object-first", "object-second"])


def test_download_multi_valid_external_and_internal_checksum(ais: AisApi, home: Home, httpd: TestHTTPServer) -> None:
    base = _checksummed(httpd, ["0.23.2", "0.23.3"])
    mapping = {"linkFirst": base + "minikube-v0.23.2.iso.sha256", "linkSecond": base + "minikube-v0.23.3.iso.sha256"}
    job_id = ais.multi(bck("cksum-multi"), mapping)
    ais.wait_for_download(job_id, 30)
    ais.check_downloaded_objects(home, job_id, "cksum-multi", ["linkFirst", "linkSecond"])
    _check_checksums(home, "cksum-multi", ["linkFirst", "linkSecond"])


def test_download_range_valid_external_and_internal_checksum(ais: AisApi, home: Home, httpd: TestHTTPServer) -> None:
    base = _checksummed(httpd, ["0.21.0", "0.23.0", "0.25.0"])
    job_id = ais.range(bck("cksum-range"), base.removeprefix("http://") + "minikube-v0.{21..25..2}.0.iso.sha256")
    ais.wait_for_download(job_id, 10)
    expected = ["minikube-v0.21.0.iso.sha256", "minikube-v0.23.0.iso.sha256", "minikube-v0.25.0.iso.sha256"]
    ais.check_downloaded_objects(home, job_id, "cksum-range", expected)
    _check_checksums(home, "cksum-range", expected)


def test_download_skip_object(ais: AisApi, home: Home, httpd: TestHTTPServer) -> None:
    link = _minikube(httpd, ["0.23.2"]) + "minikube-v0.23.2.iso.sha256"
    first = ais.wait_for_download(ais.single(bck("skip"), "obj", link))
    stored = home.find("ais", "skip", "obj")
    assert stored is not None and first["finished_cnt"] == 1
    before = stored.stat().st_mtime_ns
    second = ais.wait_for_download(ais.single(bck("skip"), "obj", link))
    assert (second["skipped_cnt"], second["error_cnt"]) == (1, 0)
    assert stored.stat().st_mtime_ns == before  # not written again


def test_download_override_object_web(ais: AisApi, home: Home, httpd: TestHTTPServer) -> None:
    """The object is changed locally (AIStore: a PUT): downloading it again
    replaces it, although the source answers 304 to the stored ETag."""
    httpd.put("/NVIDIA/aistore/main/LICENSE", os.urandom(1075))
    link = httpd.url + "/NVIDIA/aistore/main/LICENSE"
    ais.wait_for_download(ais.single(bck("override"), "obj", link))
    stored = home.find("ais", "override", "obj")
    assert stored is not None and stored.stat().st_size == 1075
    stored.write_bytes(os.urandom(10))  # the local update
    status = ais.wait_for_download(ais.single(bck("override"), "obj", link))
    assert (status["finished_cnt"], status["skipped_cnt"]) == (1, 0)
    assert stored.read_bytes() == httpd.expected_bytes("/NVIDIA/aistore/main/LICENSE")


def test_download_override_same_size_newer_mtime(ais: AisApi, home: Home, httpd: TestHTTPServer) -> None:
    body = os.urandom(4000)
    httpd.put("/o/same.bin", body)
    ais.wait_for_download(ais.single(bck("mtime"), "obj", httpd.url + "/o/same.bin"))
    stored = home.find("ais", "mtime", "obj")
    assert stored is not None
    stored.write_bytes(bytes(4000))  # same size, other bytes, a later mtime
    later = time.time() + 5
    os.utime(stored, (later, later))
    httpd.reset_stats()
    status = ais.wait_for_download(ais.single(bck("mtime"), "obj", httpd.url + "/o/same.bin"))
    get = next(r for r in httpd.requests if r.method == "GET")
    assert "If-None-Match" not in get.headers and get.status == 200  # no conditional request for it
    assert status["skipped_cnt"] == 0 and stored.read_bytes() == body


def test_download_skip_object_remote(ais: AisApi, home: Home, s3_server: S3Server) -> None:
    keys = [f"obj-{i}" for i in range(10)]
    client = _remote(s3_server, "skip-remote", keys)
    fields = {"backend_bck": {"name": "skip-remote", "provider": "aws"}}
    first = ais.wait_for_download(ais.backend(bck("skipdst"), **fields))
    assert (first["finished_cnt"], first["skipped_cnt"]) == (10, 0)
    second = ais.wait_for_download(ais.backend(bck("skipdst"), **fields))
    assert (second["finished_cnt"], second["skipped_cnt"]) == (10, 10)
    for i in range(10, 20):  # remoteRefill: only the new ones are downloaded
        client.put_object(Bucket="skip-remote", Key=f"obj-{i}", Body=b"new")
    changed = home.find("ais", "skipdst", "obj-0")
    assert changed is not None
    changed.write_bytes(b"changed here")  # and a locally changed one again
    third = ais.wait_for_download(ais.backend(bck("skipdst"), **fields))
    assert (third["finished_cnt"], third["skipped_cnt"]) == (20, 9)
    assert len(changed.read_bytes()) == 256


def test_download_override_object_remote(ais: AisApi, home: Home, s3_server: S3Server) -> None:
    """The remote objects are put again (new bytes, new ETags): the second
    job downloads all of them again, none is skipped."""
    keys = [f"obj-{i}" for i in range(10)]
    client = _remote(s3_server, "override-remote", keys)
    fields = {"backend_bck": {"name": "override-remote", "provider": "aws"}}
    first = ais.wait_for_download(ais.backend(bck("overdst"), **fields))
    assert (first["finished_cnt"], first["skipped_cnt"]) == (10, 0)
    bodies = {key: os.urandom(256) for key in keys}  # m.remotePuts again
    for key, body in bodies.items():
        client.put_object(Bucket="override-remote", Key=key, Body=body)
    second = ais.wait_for_download(ais.backend(bck("overdst"), **fields))
    assert (second["finished_cnt"], second["skipped_cnt"], second["error_cnt"]) == (10, 0, 0)
    for key, body in bodies.items():
        stored = home.find("ais", "overdst", key)
        assert stored is not None and stored.read_bytes() == body, key


def test_download_sync(ais: AisApi, home: Home, s3_server: S3Server) -> None:
    keys = [f"obj-{i}" for i in range(10)]
    client = _remote(s3_server, "sync-src", keys)
    # another source's objects in the same local bucket: sync must leave them
    home_src = _remote(s3_server, "sync-other", ["other-0"])
    del home_src
    ais.wait_for_download(ais.backend(bck("syncdst"), backend_bck={"name": "sync-other", "provider": "aws"}))
    body = {"backend_bck": {"name": "sync-src", "provider": "aws"}, "synchronize": True}
    first = ais.wait_for_download(ais.backend(bck("syncdst"), **body))
    assert (first["finished_cnt"], first["skipped_cnt"]) == (10, 0)
    for key in keys[:4]:  # m.del(objsToDelete) in the remote bucket
        client.delete_object(Bucket="sync-src", Key=key)
    second = ais.wait_for_download(ais.backend(bck("syncdst"), **body))
    assert (second["finished_cnt"], second["skipped_cnt"]) == (10, 6)  # 6 kept, 4 deleted
    assert sorted(home.ls("ais://syncdst")) == sorted(["other-0", *keys[4:]])
    third = ais.wait_for_download(ais.backend(bck("syncdst"), **body))
    assert (third["finished_cnt"], third["skipped_cnt"]) == (6, 6)
    for prefix, suffix in (("someprefix-", ""), ("", "somesuffix-")):
        scoped = ais.wait_for_download(ais.backend(bck("syncdst"), prefix=prefix, suffix=suffix, **body))
        assert scoped["finished_cnt"] == 0
    assert sorted(home.ls("ais://syncdst")) == sorted(["other-0", *keys[4:]])


def test_download_job_limit_connections(ais: AisApi, httpd: TestHTTPServer) -> None:
    for i in range(8):
        _slow(httpd, f"/lim/file-{i}.iso", size=5_000_000, rate=100_000)
    body = ais.base(bck("limits"), template=httpd.url + "/lim/file-{0..7}.iso", subdir="")
    body["limits"] = {"connections": 2, "bytes_per_hour": 0}
    job_id = ais.download("range", body)
    seen: set[int] = set()

    def reached() -> bool:
        status = ais.status(job_id)
        assert status["xaction_id"] == job_id  # stable across statuses
        running = len(status["current_tasks"])
        assert running <= 2, f"number of tasks mismatch (expected at most 2, got {running})"
        seen.add(running)
        return running == 2

    wait_for(reached, timeout=30, interval=0.2)
    ais.abort_download(job_id)


def test_download_job_concurrency(ais: AisApi, httpd: TestHTTPServer) -> None:
    for i in range(4):
        _slow(httpd, f"/conc/file-{i}.iso", size=5_000_000, rate=100_000)
    template = httpd.url + "/conc/file-{0..3}.iso"
    first = ais.base(bck("conc"), template=template, subdir="")
    first["limits"] = {"connections": 1, "bytes_per_hour": 0}
    id1 = ais.download("range", first)
    id2 = ais.download("range", ais.base(bck("conc2"), template=template, subdir=""))

    def concurrent() -> bool:
        one, two = ais.status(id1), ais.status(id2)
        assert len(one["current_tasks"]) <= 1
        return bool(one["current_tasks"] and two["current_tasks"])

    wait_for(concurrent, timeout=30, interval=0.2)
    ais.abort_download(id1)
    ais.abort_download(id2)


def test_download_job_bytes_throttling(ais: AisApi, httpd: TestHTTPServer) -> None:
    """5 KiB per hour: a few seconds in, the one running task has less than
    7 KiB (the original's hard limit) of an object the server would send at
    once. The original waits 10 s; a shorter wait is no easier to pass."""
    httpd.put_generated("/throttle/minikube-v0.35.0.iso", 1_000_000)
    body = ais.base(bck("throttle"), object_name="object", link=httpd.url + "/throttle/minikube-v0.35.0.iso")
    body["limits"] = {"connections": 0, "bytes_per_hour": 5 * 1024}
    job_id = ais.download("single", body)
    wait_for(lambda: ais.status(job_id)["current_tasks"], timeout=30)
    time.sleep(3)
    status = ais.status(job_id)
    assert len(status["current_tasks"]) == 1, "expected one running task"
    downloaded = int(status["current_tasks"][0]["downloaded"])
    assert downloaded < 7 * 1024, f"no more than {7 * 1024} should be downloaded, got: {downloaded}"
    ais.abort_download(job_id)


def test_remove_right_after_abort_agrees_with_status(ais: AisApi, httpd: TestHTTPServer) -> None:
    """While an aborted job's downloads stop it does not look finished, and
    once it looks finished remove succeeds: never a 400 in between."""
    job_id = ais.single(bck("abrm"), "big", _slow(httpd, "/abrm/big.iso"))
    wait_for(lambda: ais.status(job_id)["current_tasks"], timeout=30)
    ais.abort(job_id)
    while True:
        status = ais.status(job_id)
        assert status["aborted"]
        res = ais.api.call("DELETE", DOWNLOAD + "/remove", {"id": job_id})
        if status["finished_time"] is not None:
            assert res.status_code == 200, res.text  # looked finished: removable
            break
        # not finished yet: a 400 saying so is right, a success too (it stopped meanwhile)
        if res.status_code == 200:
            break
        assert res.status_code == 400 and "wait until it has finished" in res.json()["message"]
        time.sleep(0.02)
    assert ais.status_error(job_id)["status"] == 404


def test_abort_of_a_finished_job_marks_it_aborted(ais: AisApi, httpd: TestHTTPServer) -> None:
    httpd.put("/fin/x", b"x")
    job_id = ais.single(bck("fin"), "x", httpd.url + "/fin/x")
    finished = ais.wait_for_download(job_id)
    ais.abort(job_id)
    status = ais.status(job_id)
    assert status["aborted"] is True and status["state"] == "aborted"
    assert status["finished_time"] == finished["finished_time"]  # it had ended then
    assert status["finished_cnt"] == 1  # its object stays
    ais.remove(job_id)


def _first_error(ais: AisApi, job_id: str) -> dict[str, Any] | None:
    status = ais.status(job_id)
    return status if status["error_cnt"] else None


def _warm(ais: AisApi, httpd: TestHTTPServer) -> None:
    """The workers running, as in AIStore's running cluster, so that what
    is timed is the download, not the start of the worker processes."""
    httpd.put("/warm/w", b"w")
    ais.wait_for_download(ais.single(bck("warm"), "w", httpd.url + "/warm/w"))
    ais.clear_download_list()


# what the error says, as the original checks it ("deadline exceeded" or "timeout")
UNANSWERED = {"silent": "timeout", "headers": "timeout", "backlog": "timeout", "refused": "connection refused"}


@pytest.mark.parametrize("kind", sorted(UNANSWERED))
def test_download_timeout(ais: AisApi, home: Home, httpd: TestHTTPServer, kind: str) -> None:
    """A "1ms" timeout against a server that does not answer: the original
    looks at the status one second after the start. Each attempt ends after
    the job's timeout (connect, first byte) and, as AIStore retries a
    timeout at once, the next one follows after at most that timeout
    instead of the backoff: the error is there within seconds (the
    1+2+4+8 s backoff of five attempts, with jitter, took 7.5 s at least;
    17-20 s measured). A refused connection fails at once, unretried."""
    _warm(ais, httpd)
    with unanswering(kind) as (link, _):
        body = ais.base(bck("timeout"), object_name="object", link=link, from_remote=False)
        body["timeout"] = "1ms"  # super small timeout to see if the request will be canceled
        started = time.monotonic()
        job_id = ais.download("single", body)
        status: dict[str, Any] = wait_for(lambda: _first_error(ais, job_id), timeout=60, interval=0.05)
        elapsed = time.monotonic() - started
    assert elapsed < 7, f"the error took {elapsed:.1f} s to show (AIStore: within a second)"
    assert status["error_cnt"] == 1, "expected task to be marked as an error"
    error = status["download_errors"][0]
    assert error["name"] == "object", error
    assert UNANSWERED[kind] in error["error"], error
    ais.wait_for_download(job_id)
    ais.check_downloaded_objects(home, job_id, "timeout", [])
    ais.check_download_list()


@pytest.mark.parametrize("kind", ["silent", "headers"])
def test_waits_for_the_first_byte_obey_the_job_timeout(ais: AisApi, httpd: TestHTTPServer, kind: str) -> None:
    """Every attempt against a server that accepts but does not answer
    (or stops after its headers) ends after about the job's timeout, not
    the default (DLENGINE_TIMEOUT, 60 s); all of them are made (a timeout
    is retried, as AIStore does)."""
    _warm(ais, httpd)
    with unanswering(kind) as (link, server):
        body = ais.base(bck("first-byte"), object_name="object", link=link, from_remote=False)
        body["timeout"] = "300ms"
        job_id = ais.download("single", body)
        ais.wait_for_download(job_id, 60)
        wait_for(lambda: len(server.lifetimes) == 5, timeout=10)
    status = ais.status(job_id)
    assert status["error_cnt"] == 1 and "gave up after 5 attempts" in status["download_errors"][0]["error"]
    assert max(server.lifetimes) < 10, server.lifetimes
