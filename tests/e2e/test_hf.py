"""HuggingFace Hub, end to end against a fake Hub (``harness/fakehub.py``)
that the real huggingface_hub client reads too: whole repos, globs, single
files, revisions, sha256 verification, private repos and the token,
batching, incremental re-runs, 429 with Retry-After."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlengine.errors import (
    PermanentError,
    SourceDeniedError,
    SourceNotFoundError,
)
from dlengine.sources import hf, hfroute
from dlengine.sources.base import Request
from harness.fakehub import LFS_THRESHOLD, TOKEN, FakeHub
from harness.httpd import Fault, TestHTTPServer
from tests.conftest import HF_ENV, Home, wait_for


def dataset_files() -> dict[str, bytes]:
    """Nested folders, LFS and small files: 13 tree entries, 4 pages."""
    return {
        "README.md": b"# a dataset\n",
        "data/train/part-0.parquet": os.urandom(40_000),
        "data/train/part-1.parquet": os.urandom(30_000),
        "data/test/part-0.parquet": os.urandom(20_000),
        "data/meta/info.json": b'{"rows": 3}',
        "configs/a/b/c.yaml": b"key: value\n",
    }


@pytest.fixture(scope="module")
def hub_page_size() -> int:
    return 4  # this module's Hub lists 4 entries a page


def download(home: Home, *args: str) -> list[str]:
    """``dlengine download ARGS --no-start``: the job ids it printed."""
    res = home.cli("download", *args, "--no-start")
    assert res.returncode == 0, res.stderr
    ids = res.stdout.split()
    assert ids and all(i.startswith("dnl-") for i in ids), res.stdout
    return ids


def run(home: Home, code: int = 0) -> subprocess.CompletedProcess[str]:
    res = home.run()
    assert res.returncode == code, res.stderr[-3000:]
    return res


def stored(home: Home, provider: str, bucket: str) -> dict[str, bytes]:
    """Every object of a bucket on the mountpaths, by name."""
    out = {}
    for mp in home.mountpaths:
        root = mp / provider / bucket
        for path in root.rglob("*") if root.exists() else ():
            if path.is_file():
                out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def counts(home: Home, job_id: str) -> tuple[str, int, int, int]:
    status = home.status(job_id)
    return status["state"], status["finished_cnt"], status["skipped_cnt"], status["error_cnt"]


# ------------------------------------------------------------ the fake Hub


def test_the_real_client_reads_the_fake_hub(hub: FakeHub, tmp_path: Path) -> None:
    files = dataset_files()
    commit = hub.add_repo("org/real", files)
    script = """if True:
        import json, sys
        from huggingface_hub import HfApi, hf_hub_download
        api = HfApi()
        tree = [e.path for e in api.list_repo_tree("org/real", repo_type="dataset", recursive=True)]
        paths = [hf_hub_download("org/real", f, repo_type="dataset", cache_dir=sys.argv[1])
                 for f in ("README.md", "data/train/part-0.parquet")]
        print(json.dumps({"tree": tree, "paths": paths, "sha": api.dataset_info("org/real").sha}))
    """
    env = {**os.environ, **HF_ENV, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_TOKEN", None)
    res = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "cache")], env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["sha"] == commit
    assert set(files) < set(out["tree"]) and {"data", "data/train", "configs/a/b"} < set(out["tree"])
    assert len(hub.requests("/api/datasets/org/real/tree/")) >= 4  # it followed the pages
    for name, path in zip(("README.md", "data/train/part-0.parquet"), out["paths"], strict=True):
        assert Path(path).read_bytes() == files[name]


# ---------------------------------------------------------- whole repos


def test_whole_dataset_then_rerun_then_new_commit(hhome: Home, hub: FakeHub, cdn: TestHTTPServer) -> None:
    files = dataset_files()
    first = hub.add_repo("org/whole", files)
    [job] = download(hhome, "--hf-dataset", "org/whole", "ais://whole")
    run(hhome)
    assert counts(hhome, job) == ("finished", len(files), 0, 0)
    assert stored(hhome, "ais", "whole") == files
    versions = dict(hhome.ledger().execute("SELECT name, version FROM catalog WHERE bucket = 'whole'").fetchall())
    assert set(versions.values()) == {first}  # the commit the bytes came from

    hub.reset()
    cdn.reset_stats()
    [again] = download(hhome, "--hf-dataset", "org/whole", "ais://whole")
    run(hhome)
    assert counts(hhome, again) == ("finished", len(files), len(files), 0)
    assert (hub.body_bytes, cdn.bytes_sent) == (0, 0)

    changed = {"README.md": b"# changed\n", "data/train/part-1.parquet": os.urandom(31_000), "new.json": b"{}"}
    second = hub.commit("org/whole", changed, delete=["data/test/part-0.parquet"])
    hub.reset()
    cdn.reset_stats()
    [third] = download(hhome, "--hf-dataset", "org/whole", "ais://whole")
    run(hhome)
    assert counts(hhome, third) == ("finished", 6, 3, 0)
    assert hub.body_bytes == len(b"# changed\n") + len(b"{}")
    assert cdn.bytes_sent == 31_000
    now = stored(hhome, "ais", "whole")
    assert all(now[name] == data for name, data in changed.items())
    assert now["data/train/part-0.parquet"] == files["data/train/part-0.parquet"]
    version = hhome.ledger().execute("SELECT version FROM catalog WHERE bucket = 'whole' AND name = 'new.json'")
    assert version.fetchone()[0] == second


def test_backend_job_skips_unchanged_files_without_a_request(hhome: Home, hub: FakeHub, cdn: TestHTTPServer) -> None:
    files = dataset_files()
    hub.add_repo("org/mirror", files)
    [job] = download(hhome, "--hf-dataset", "org/mirror", "hf://org/mirror/data/", "--hf-exclude", "*.json")
    run(hhome)
    parquet = {k: v for k, v in files.items() if k.endswith(".parquet")}
    assert counts(hhome, job) == ("finished", 3, 0, 0)
    assert stored(hhome, "hf", "org/mirror") == parquet  # <mountpath>/hf/org/mirror/data/...
    assert hhome.ls("hf://org/mirror") == {name: len(data) for name, data in parquet.items()}

    request = {"type": "backend", "bucket": {"name": "org/mirror", "provider": "hf"}, "repo_type": "dataset"}
    request |= {"prefix": "data/", "exclude": ["*.json"]}
    hub.commit("org/mirror", {"data/train/part-1.parquet": os.urandom(33_000)})
    hub.reset()
    cdn.reset_stats()
    again = hhome.submit(request)
    run(hhome)
    assert counts(hhome, again) == ("finished", 3, 2, 0)
    assert [s.path.rsplit("/", 1)[1] for s in hub.requests("/resolve/")] == ["part-1.parquet"]
    assert cdn.bytes_sent == 33_000


def test_globs_single_files_revisions_and_links(hhome: Home, hub: FakeHub) -> None:
    files = dataset_files()
    v1 = hub.add_repo("org/sel", files)
    hub.tag("org/sel", "v1", v1)
    v2 = hub.commit("org/sel", {"README.md": b"v2\n", "configs/a/b/c.yaml": b"key: v2\n"})
    [globbed] = download(
        hhome, "--hf-dataset", "org/sel", "ais://sel", "--hf-include", "data/*", "--hf-exclude", "*part-1*"
    )
    [named] = download(
        hhome, "--hf-dataset", "org/sel", "ais://sel/v1/", "--hf-revision", "v1",
        "--hf-file", "README.md", "--hf-file", "data/train/part-1.parquet",
    )  # fmt: skip
    link = hhome.submit(
        {"type": "single", "bucket": {"name": "sel"}, "link": "hf://datasets/org/sel@v1/configs/a/b/c.yaml"}
    )
    run(hhome)
    for job_id in (globbed, named, link):
        assert counts(hhome, job_id)[3] == 0
    expected = {k: v for k, v in files.items() if k.startswith("data/") and "part-1" not in k}
    expected |= {"v1/README.md": files["README.md"], "v1/data/train/part-1.parquet": files["data/train/part-1.parquet"]}
    expected["c.yaml"] = files["configs/a/b/c.yaml"]  # the v1 content, named after the link
    assert stored(hhome, "ais", "sel") == expected
    versions = set(r[0] for r in hhome.ledger().execute("SELECT version FROM catalog WHERE bucket = 'sel'"))
    assert versions == {v1, v2}


def test_a_corrupted_lfs_file_is_refused_and_a_cut_one_resumed(hhome: Home, hub: FakeHub, cdn: TestHTTPServer) -> None:
    # ok.bin larger than one chunk: smaller objects are received in memory
    # and start over after a reset (no work file to resume)
    files = {"ok.bin": os.urandom(1_200_000), "bad.bin": os.urandom(6000)}
    hub.add_repo("org/bad", files)
    hub.corrupt("org/bad", "bad.bin")
    ok_path = f"/lfs/{hub.file('org/bad', 'ok.bin').sha256}"
    cdn.set_fault(ok_path, Fault(reset_after=20_000, times=1))
    [job] = download(hhome, "--hf-dataset", "org/bad", "ais://bad")
    run(hhome, code=1)
    status = hhome.status(job)
    assert (status["finished_cnt"], status["error_cnt"]) == (1, 1)
    [error] = status["download_errors"]
    assert error["name"] == "bad.bin" and "sha256" in error["error"], error
    assert stored(hhome, "ais", "bad") == {"ok.bin": files["ok.bin"]}  # bad.bin: never visible
    assert hhome.work_files() == []
    gets = [r for r in cdn.requests if r.path == ok_path]
    assert [r.headers.get("Range") for r in gets] == [None, "bytes=20000-"]  # resumed, not restarted
    assert cdn.bytes_sent_for(ok_path) == len(files["ok.bin"])  # every byte once


# ------------------------------------------------------------------ tokens


def test_a_private_repo_needs_the_token_which_is_never_written(hhome: Home, hub: FakeHub, cdn: TestHTTPServer) -> None:
    files = dataset_files()
    hub.add_repo("org/secret", files, private=True)
    backend = {"type": "backend", "bucket": {"name": "org/secret", "provider": "hf"}, "repo_type": "dataset"}

    res = hhome.cli("download", "--hf-dataset", "org/secret", "ais://secret", "--no-start")
    assert res.returncode == 2 and "repository is private or gated: set HF_TOKEN" in res.stderr, res.stderr
    [one] = download(hhome, "--hf-dataset", "org/secret", "ais://secret", "--hf-file", "README.md")
    listed = hhome.submit(backend)
    run(hhome, code=1)
    assert "private or gated: set HF_TOKEN" in hhome.status(one)["download_errors"][0]["error"]
    assert hhome.status(listed)["state"] == "aborted"
    assert "private or gated: set HF_TOKEN" in hhome.status(listed)["error"]

    token_file = hhome.path / "hf-home" / "token"  # what `hf auth login` stores
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text(TOKEN)
    hub.reset()
    cdn.reset_stats()
    outputs = [hhome.cli("download", "--hf-dataset", "org/secret", "ais://secret", "--no-start")]
    assert outputs[0].returncode == 0, outputs[0].stderr
    hhome.env["HF_TOKEN"] = TOKEN
    with_env = hhome.submit(backend)
    outputs.append(run(hhome))
    job = outputs[0].stdout.split()[-1]
    assert counts(hhome, job) == ("finished", len(files), 0, 0)
    assert counts(hhome, with_env) == ("finished", len(files), 0, 0)
    assert stored(hhome, "ais", "secret") == files == stored(hhome, "hf", "org/secret")
    assert all(s.header("Authorization") == f"Bearer {TOKEN}" for s in hub.requests("org/secret"))
    lfs = [r for r in cdn.requests if r.path.startswith("/lfs/")]
    assert lfs and not any("Authorization" in r.headers for r in lfs)  # never to the CDN's origin
    outputs += [hhome.cli("show", i, "--json") for i in (one, listed, job, with_env)]
    _assert_token_nowhere(hhome, outputs, token_file)


def _assert_token_nowhere(home: Home, outputs: list[subprocess.CompletedProcess[str]], token_file: Path) -> None:
    for res in outputs:
        assert TOKEN not in res.stdout + res.stderr
    for path in home.path.rglob("*"):  # ledger (and its WAL), logs, secrets, config
        if path.is_file() and path != token_file and "data" not in path.relative_to(home.path).parts:
            assert TOKEN.encode() not in path.read_bytes(), path


# ---------------------------------------------------------------- batching


def test_max_job_bytes_splits_a_repo_into_jobs(hhome: Home, hub: FakeHub) -> None:
    sizes = {"a.bin": 50_000, "b.bin": 40_000, **{f"s/{i}.bin": 8_000 for i in range(6)}}
    files = {name: os.urandom(size) for name, size in sizes.items()}
    hub.add_repo("org/batch", files)
    ids = download(hhome, "--hf-dataset", "org/batch", "ais://batch", "--max-job-bytes", "30000")
    assert len(ids) == 4 == len(set(ids))  # a.bin, b.bin, then 3 + 3 small files
    totals = [hhome.status(i)["total"] for i in ids]
    assert totals == [1, 1, 3, 3]

    hub.reset()
    named = ["a.bin", "s/0.bin", "s/1.bin"]
    args = [arg for name in named for arg in ("--hf-file", name)]
    res = hhome.cli(
        "download", "--hf-dataset", "org/batch", "ais://batch2", "--max-job-bytes", "30000", *args, "--wait"
    )
    assert res.returncode == 0 and len(res.stdout.split()) == 2, res.stderr  # waited for both
    assert len(hub.requests("/resolve/", "HEAD")) == 3  # sizes of named files: HEAD requests
    wait_for(lambda: all(hhome.status(i)["state"] == "finished" for i in ids))  # the same supervisor ran them
    assert stored(hhome, "ais", "batch") == files
    assert stored(hhome, "ais", "batch2") == {name: files[name] for name in named}


@pytest.mark.parametrize(
    ("flag", "value", "reason"),
    [
        ("--max-job-bytes", "-1", "must not be negative, got '-1'"),
        ("--max-job-bytes", "0", "must be at least 1, got '0'"),
        ("--max-conns", "-1", "must be from 0 (no limit) to 100000, got -1"),
        ("--limit-bph", "-5MiB", "must not be negative, got '-5MiB'"),
    ],
)
def test_a_negative_limit_is_refused_before_the_hub_is_asked(
    hhome: Home, hub: FakeHub, flag: str, value: str, reason: str
) -> None:
    """(--max-job-bytes was checked only after the listing, --max-conns
    named the job field limits.connections instead of the flag.)"""
    hub.add_repo("org/limits", {"a.json": b"{}"})
    hub.reset()
    res = hhome.cli("download", "--hf-dataset", "org/limits", "ais://limits", f"{flag}={value}", "--no-start")
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1] == f"dlengine: error: {flag}: {reason}", res.stderr
    assert hub.requests() == [] and not (hhome.path / "ledger.db").exists()


# -------------------------------------------------------------- Hub errors


def test_429_from_the_hub_is_retried_after_retry_after(hhome: Home, hub: FakeHub) -> None:
    commit = hub.add_repo("org/busy", {"x.json": b"{}", "y.bin": os.urandom(LFS_THRESHOLD)})
    hub.fail(f"/datasets/org/busy/resolve/{commit}/", 429, retry_after="1")  # the single job's, not the listed one's
    hub.fail("/api/datasets/org/busy/tree/", 429, retry_after="1")
    link = f"hf://datasets/org/busy@{commit}/x.json"
    single = hhome.submit({"type": "single", "bucket": {"name": "busy"}, "link": link})
    backend = hhome.submit(
        {"type": "backend", "bucket": {"name": "org/busy", "provider": "hf"}, "repo_type": "dataset"}
    )
    run(hhome)
    assert counts(hhome, single) == ("finished", 1, 0, 0)
    assert counts(hhome, backend) == ("finished", 2, 0, 0)
    resolves = hub.requests(f"/datasets/org/busy/resolve/{commit}/x.json")
    assert [s.status for s in resolves][:2] == [429, 200]
    assert resolves[1].at - resolves[0].at >= 0.9
    assert [s.status for s in hub.requests("/api/datasets/org/busy/tree/")][:2] == [429, 200]


def test_the_source_names_hub_errors_and_keeps_the_token_on_the_hub(
    hub: FakeHub, cdn: TestHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"small.txt": b"hello", "big.bin": os.urandom(LFS_THRESHOLD + 1)}
    hub.add_repo("org/unit", files, private=True)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setattr(hfroute, "_stored_token", lambda: "")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    hf.forget_token()
    source = hf.HFSource()
    url = hf.resolve_url("hf://datasets/org/unit/big.bin")
    with pytest.raises(SourceDeniedError, match="private or gated: set HF_TOKEN"):
        source.open(Request(url))

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hf.forget_token()  # read once per process: this one was read without it
    cdn.reset_stats()
    stream = source.open(Request(url, offset=10, if_range=f'"{hub.file("org/unit", "big.bin").sha256}"'))
    assert (stream.offset, stream.info.size) == (10, LFS_THRESHOLD + 1)
    assert b"".join(stream.chunks(1 << 16)) == files["big.bin"][10:]
    stream.close()
    assert stream.info.checksums["sha256"] == hub.file("org/unit", "big.bin").sha256
    [cdn_request] = cdn.requests
    assert "Authorization" not in cdn_request.headers and cdn_request.headers["Range"] == "bytes=10-"
    with pytest.raises(SourceNotFoundError, match="EntryNotFound"):
        source.stat(hf.resolve_url("hf://datasets/org/unit/missing.txt"))
    with pytest.raises(SourceNotFoundError, match="RevisionNotFound"):
        source.stat(hf.resolve_url("hf://datasets/org/unit@v9/small.txt"))
    with pytest.raises(PermanentError, match="expected hf://"):
        hf.resolve_url("hf://org/unit")


# ------------------------------------------------------- links and names


def test_the_lister_yields_names_in_order_after_a_cursor(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = dataset_files()
    hub.add_repo("org/cursor", files)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(hfroute, "_stored_token", lambda: "")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    hf.forget_token()
    lister = hf.HubLister("org/cursor", {"repo_type": "dataset", "exclude": ["*.json"]})
    listed = list(lister.list("data/", "", start_after="data/test/part-0.parquet"))  # the Hub's order is not by name
    assert [i.key for i in listed] == ["data/train/part-0.parquet", "data/train/part-1.parquet"]
    sha = hub.file("org/cursor", "data/train/part-0.parquet").sha256
    assert (listed[0].size, listed[0].etag, dict(listed[0].checksums)) == (40_000, f'"{sha}"', {"sha256": sha})
    assert listed[0].version is None  # the download records the commit
    assert lister.link("a b.txt") == "hf://datasets/org/cursor/a%20b.txt"
    assert hub.requests("/api/datasets/org/cursor/tree/")[0].path.split("?")[0].endswith("/data")  # only that folder


def test_listing_and_downloading_need_no_huggingface_hub(hhome: Home, hub: FakeHub, tmp_path: Path) -> None:
    """The tree is listed with plain GETs (importing huggingface_hub costs
    more than a small download): a huggingface_hub that cannot be imported
    changes nothing."""
    shadow = tmp_path / "shadow" / "huggingface_hub"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('huggingface_hub is not installed here')\n")
    hhome.env["PYTHONPATH"] = str(shadow.parent)
    files = dataset_files()
    hub.add_repo("org/nohub", files)
    [job] = download(hhome, "--hf-dataset", "org/nohub", "ais://nohub")
    backend = hhome.submit(
        {"type": "backend", "bucket": {"name": "org/nohub", "provider": "hf"}, "repo_type": "dataset"}
    )
    run(hhome)
    assert counts(hhome, job) == ("finished", len(files), 0, 0)
    assert counts(hhome, backend) == ("finished", len(files), 0, 0)
    assert stored(hhome, "ais", "nohub") == files == stored(hhome, "hf", "org/nohub")
    assert len(hub.requests("/api/datasets/org/nohub/tree/")) == 2 * 4  # 13 entries, 4 per page, each listing


def test_a_sync_with_globs_is_refused(hhome: Home) -> None:
    res = hhome.cli("download", "--hf-dataset", "org/x", "hf://org/x", "--sync", "--hf-include", "*.json")
    assert res.returncode == 2 and "sync" in res.stderr
