"""HuggingFace files through the libcurl loop (issue 17): ``hf://`` links
and HF backend jobs are fetched by the worker's libcurl loop, not by the
SDK's download threads: the resolve URL with the token on the Hub, the LFS
bytes on the CDN it redirects to (another origin: ``localhost`` and another
port) without the token; what the Hub said (sha256 / blob id, commit) is
recorded, and a stored copy is confirmed without asking the CDN.

libcurl is recognised by what it sends and urllib3 does not (``Accept: */*``).
Against the fake Hub (``harness/fakehub.py``) and its CDN (``harness/httpd.py``)."""

from __future__ import annotations

import os

from harness.fakehub import TOKEN, FakeHub, git_blob_id
from harness.httpd import Fault, TestHTTPServer
from tests.conftest import Home


def by_curl(headers: dict[str, str]) -> bool:
    """libcurl's default Accept header (urllib3 sends none)."""
    return any(k.lower() == "accept" and v == "*/*" for k, v in headers.items())


def catalog(home: Home, bucket: str) -> dict[str, tuple[str, str, str]]:
    rows = home.ledger().execute("SELECT name, etag, version, checksum FROM catalog WHERE bucket = ?", (bucket,))
    return {name: (etag, version, checksum) for name, etag, version, checksum in rows}


def test_hf_links_and_backend_jobs_go_through_libcurl_with_the_token_on_the_hub_only(
    hhome: Home, hub: FakeHub, cdn: TestHTTPServer
) -> None:
    files = {"small.json": b'{"a": 1}', "big.bin": os.urandom(1_500_000), "w/lfs.bin": os.urandom(40_000)}
    commit = hub.add_repo("org/curl", files, private=True)
    hhome.env["HF_TOKEN"] = TOKEN
    hub.reset()
    cdn.reset_stats()
    links = {name: f"hf://datasets/org/curl/{name}" for name in files}
    multi = hhome.submit({"type": "multi", "bucket": {"name": "curl"}, "objects": links})
    mirror = {"type": "backend", "bucket": {"name": "org/curl", "provider": "hf"}, "repo_type": "dataset"}
    backend = hhome.submit(mirror)
    res = hhome.run()
    assert res.returncode == 0, res.stderr[-3000:]
    for job in (multi, backend):
        assert hhome.status(job)["state"] == "finished" and hhome.status(job)["error_cnt"] == 0

    resolves = hub.requests("/resolve/")
    assert len(resolves) == 2 * len(files)
    assert all(by_curl(s.headers) and s.header("Authorization") == f"Bearer {TOKEN}" for s in resolves)
    lfs = [r for r in cdn.requests if r.path.startswith("/lfs/")]
    assert len(lfs) == 4  # the two LFS files, for each job
    assert all(by_curl(r.headers) for r in lfs)
    assert not any(k.lower() in ("authorization", "cookie") for r in lfs for k in r.headers)

    for bucket in ("curl", "org/curl"):
        recorded = catalog(hhome, bucket)
        for name, data in files.items():
            held = hhome.find("ais" if bucket == "curl" else "hf", bucket, name)
            assert held is not None and held.read_bytes() == data
            etag, version, checksum = recorded[name]
            assert version == commit
            if name == "small.json":
                assert etag == f'"{git_blob_id(data)}"'
            else:  # the Hub's sha256, not the CDN's ETag
                sha = hub.file("org/curl", name).sha256
                assert etag == f'"{sha}"' and checksum == f"sha256:{sha}"


def test_a_stored_copy_is_confirmed_by_the_hub_without_the_cdn(hhome: Home, hub: FakeHub, cdn: TestHTTPServer) -> None:
    files = {"small.txt": b"hello\n", "big.bin": os.urandom(30_000)}
    hub.add_repo("org/again", files)
    links = {name: f"hf://datasets/org/again/{name}" for name in files}
    job = {"type": "multi", "bucket": {"name": "again"}, "objects": links}
    first = hhome.submit(job)
    assert hhome.run().returncode == 0
    assert hhome.status(first)["finished_cnt"] == 2

    hub.reset()
    cdn.reset_stats()
    again = hhome.submit(job)
    assert hhome.run().returncode == 0
    status = hhome.status(again)
    assert (status["state"], status["skipped_cnt"], status["error_cnt"]) == ("finished", 2, 0)
    resolves = hub.requests("/resolve/")
    assert sorted(s.status for s in resolves) == [302, 304] and all(by_curl(s.headers) for s in resolves)
    assert all(s.header("If-None-Match") for s in resolves)
    assert cdn.requests == []  # the Hub's sha256 is the stored copy's: nothing asked of the CDN


def test_a_cut_lfs_file_resumes_on_the_cdn_and_errors_name_the_link(
    hhome: Home, hub: FakeHub, cdn: TestHTTPServer
) -> None:
    files = {"cut.bin": os.urandom(1_300_000), "gone.bin": os.urandom(5_000)}
    hub.add_repo("org/cut", files)
    cut = f"/lfs/{hub.file('org/cut', 'cut.bin').sha256}"
    gone = f"/lfs/{hub.file('org/cut', 'gone.bin').sha256}"
    cdn.set_fault(cut, Fault(reset_after=50_000, times=1))
    cdn.set_fault(gone, Fault(status=404))
    links = {name: f"hf://datasets/org/cut/{name}" for name in files}
    job = hhome.submit({"type": "multi", "bucket": {"name": "cut"}, "objects": links})
    assert hhome.run().returncode == 1
    status = hhome.status(job)
    assert (status["finished_cnt"], status["error_cnt"]) == (1, 1)
    assert hhome.find("ais", "cut", "cut.bin").read_bytes() == files["cut.bin"]  # type: ignore[union-attr]
    gets = [r for r in cdn.requests if r.path == cut]
    assert [r.headers.get("Range") for r in gets] == [None, "bytes=50000-"]
    assert not any("If-Range" in r.headers for r in gets)  # the CDN's URL names the bytes; the Hub vouched
    [error] = status["download_errors"]
    assert error["error"].startswith("hf://datasets/org/cut/gone.bin: CDN "), error
    assert "X-Amz-Signature" not in error["error"]  # the signed URL is not recorded
