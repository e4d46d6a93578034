"""HuggingFace re-runs ask the Hub once (issue 17): the commit a revision
points to is recorded with the jobs, so a re-run at the same commit sends
one request and lists nothing, a new commit fetches only the files whose
blob id / sha256 / size changed, and a download with nothing to do ends in
the command without a supervisor. The token is read once per process and
sent to the Hub's origin only. Against the fake Hub (``harness/fakehub.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dlengine.cli import hf as hf_cli
from dlengine.cli.main import main as cli_main
from dlengine.client import Client
from dlengine.config import load_settings
from dlengine.sources import hf, hfroute
from dlengine.sources.base import Request
from harness.fakehub import LFS_THRESHOLD, TOKEN, FakeHub
from harness.httpd import TestHTTPServer
from tests.conftest import Home


def repo_files() -> dict[str, bytes]:
    """Small files and LFS files (at least LFS_THRESHOLD bytes), in folders."""
    return {
        "README.md": b"# repo\n",
        "config.json": b'{"a": 1}',
        "data/a.bin": os.urandom(20_000),
        "data/b.bin": os.urandom(15_000),
        "data/sub/c.txt": b"c\n",
        "weights/model.safetensors": os.urandom(30_000),
    }


def download(home: Home, *args: str) -> tuple[str, str]:
    """``dlengine download ARGS`` (which may start a supervisor): (the job
    id, its stderr)."""
    res = home.cli("download", *args)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()[-1], res.stderr


def first_download(home: Home, *args: str) -> str:
    res = home.cli("download", *args, "--no-start")
    assert res.returncode == 0, res.stderr
    ran = home.run()
    assert ran.returncode == 0, ran.stderr[-3000:]
    job = res.stdout.split()[-1]
    assert home.status(job)["error_cnt"] == 0
    return job


def counts(home: Home, job_id: str) -> tuple[str, int, int, int]:
    status = home.status(job_id)
    return status["state"], status["finished_cnt"], status["skipped_cnt"], status["error_cnt"]


def no_supervisor_started(home: Home) -> bool:
    """A background supervisor appends to the home's log: none was started
    if there is none (the first download ran ``run`` in the foreground)."""
    return not (home.path / "supervisor.log").exists()


def resolved(hub: FakeHub) -> list[str]:
    """Paths of the files the Hub was asked for (HEAD or GET)."""
    return sorted(s.path.split("/resolve/main/", 1)[1] for s in hub.requests("/resolve/"))


@pytest.mark.parametrize("dst", ["ais://rerun", "hf://org/rerun"])
def test_an_unchanged_rerun_is_one_request_and_no_supervisor(
    hhome: Home, hub: FakeHub, cdn: TestHTTPServer, dst: str
) -> None:
    files = repo_files()
    repo = "org/rerun"
    hub.add_repo(repo, files)
    first_download(hhome, "--hf-dataset", repo, dst)
    assert len(hub.requests("/tree/")) > 2  # the first listing took several pages

    hub.reset()
    cdn.reset_stats()
    job, stderr = download(hhome, "--hf-dataset", repo, dst)
    assert [s.path.split("?")[0] for s in hub.requests()] == [f"/api/datasets/{repo}/revision/main"]
    assert cdn.requests == []
    assert "not listed again" in stderr
    assert counts(hhome, job) == ("finished", len(files), len(files), 0)  # ended in the command
    assert no_supervisor_started(hhome)
    # that one request without urllib3 (sources.hubapi: one pycurl handle), the command's largest import
    hhome.env["PYTHONPROFILEIMPORTTIME"] = "1"
    res = hhome.cli("download", "--hf-dataset", repo, dst)
    del hhome.env["PYTHONPROFILEIMPORTTIME"]
    assert res.returncode == 0, res.stderr
    assert "import time:" in res.stderr and "urllib3" not in res.stderr and "http.client" not in res.stderr


def test_a_commit_fetches_only_the_files_it_changed(hhome: Home, hub: FakeHub, cdn: TestHTTPServer) -> None:
    files = repo_files()
    hub.add_repo("org/commits", files)
    first_download(hhome, "--hf-dataset", "org/commits", "ais://commits/v/")

    hub.commit("org/commits", {"config.json": b'{"a": 2}'})  # one small file
    hub.reset()
    cdn.reset_stats()
    job, _ = download(hhome, "--hf-dataset", "org/commits", "ais://commits/v/", "--wait")
    assert resolved(hub) == ["config.json"]
    assert cdn.requests == [] and hub.body_bytes == len(b'{"a": 2}')
    assert counts(hhome, job) == ("finished", len(files), len(files) - 1, 0)

    changed = os.urandom(20_000)
    hub.commit("org/commits", {"data/a.bin": changed})  # one LFS file
    hub.reset()
    cdn.reset_stats()
    job, _ = download(hhome, "--hf-dataset", "org/commits", "ais://commits/v/", "--wait")
    assert resolved(hub) == ["data/a.bin"]
    assert [r.path for r in cdn.requests] == [f"/lfs/{hub.file('org/commits', 'data/a.bin').sha256}"]
    assert counts(hhome, job) == ("finished", len(files), len(files) - 1, 0)
    assert hhome.find("ais", "commits", "v/data/a.bin").read_bytes() == changed  # type: ignore[union-attr]
    assert hhome.find("ais", "commits", "v/config.json").read_bytes() == b'{"a": 2}'  # type: ignore[union-attr]


def test_a_commit_elsewhere_in_the_repo_ends_in_the_command(hhome: Home, hub: FakeHub) -> None:
    """A new commit is listed again, but a file the selection leaves out
    changed nothing: every file is skipped and no supervisor starts."""
    hub.add_repo("org/elsewhere", repo_files())
    first_download(hhome, "--hf-dataset", "org/elsewhere", "ais://elsewhere", "--hf-include", "data/*")
    hub.commit("org/elsewhere", {"README.md": b"# changed\n"})
    hub.reset()
    job, stderr = download(hhome, "--hf-dataset", "org/elsewhere", "ais://elsewhere", "--hf-include", "data/*")
    assert "not listed again" not in stderr and hub.requests("/tree/")  # a new commit: listed
    assert resolved(hub) == []
    assert counts(hhome, job) == ("finished", 3, 3, 0)
    assert no_supervisor_started(hhome)


def test_a_file_removed_by_hand_or_a_removed_job_is_noticed(hhome: Home, hub: FakeHub) -> None:
    files = repo_files()
    hub.add_repo("org/gone", files)
    first = first_download(hhome, "--hf-dataset", "org/gone", "ais://gone")
    path = hhome.find("ais", "gone", "data/b.bin")
    assert path is not None
    path.unlink()
    hub.reset()
    job, _ = download(hhome, "--hf-dataset", "org/gone", "ais://gone", "--wait")
    assert len(hub.requests("/api/")) == 1  # the same commit: not listed
    assert resolved(hub) == ["data/b.bin"]
    assert counts(hhome, job) == ("finished", len(files), len(files) - 1, 0)
    assert path.read_bytes() == files["data/b.bin"]

    for old in (first, job):  # the jobs whose rows are the last listing
        assert hhome.cli("rm", old).returncode == 0
    hub.reset()
    job, _ = download(hhome, "--hf-dataset", "org/gone", "ais://gone")
    assert hub.requests("/tree/")  # listed again: the recorded rows are gone
    assert resolved(hub) == [] and counts(hhome, job) == ("finished", len(files), len(files), 0)


def test_a_backend_sync_after_a_commit_removes_what_it_deleted(hhome: Home, hub: FakeHub, cdn: TestHTTPServer) -> None:
    files = repo_files()
    hub.add_repo("org/sync", files)
    first_download(hhome, "--hf-dataset", "org/sync", "hf://org/sync", "--sync")
    hub.commit("org/sync", delete=["data/sub/c.txt", "weights/model.safetensors"])
    hub.reset()
    cdn.reset_stats()
    job, _ = download(hhome, "--hf-dataset", "org/sync", "hf://org/sync", "--sync")
    assert resolved(hub) == [] and cdn.requests == []
    status = hhome.status(job)
    assert status["state"] == "finished" and status["skipped_cnt"] == len(files) - 2
    # the deletions are rows of the job: counted in its total, as a backend job's of any source
    assert status["total"] == status["scheduled_cnt"] == status["finished_cnt"] == len(files)
    assert set(hhome.ls("hf://org/sync")) == set(files) - {"data/sub/c.txt", "weights/model.safetensors"}
    assert hhome.find("hf", "org/sync", "data/sub/c.txt") is None
    assert no_supervisor_started(hhome)


def test_the_token_is_read_once_and_sent_to_the_hub_only(
    hub: FakeHub, cdn: TestHTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"small.txt": b"hello", "big.bin": os.urandom(LFS_THRESHOLD + 10), "b2.bin": os.urandom(LFS_THRESHOLD)}
    hub.add_repo("org/tok", files, private=True)
    token_file = tmp_path / "hf" / "token"  # where `hf auth login` writes it
    token_file.parent.mkdir()
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(token_file.parent))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    reads: list[Path] = []
    real = hfroute.token_path
    monkeypatch.setattr(hfroute, "token_path", lambda: reads.append(real()) or real())
    hf.forget_token()
    hub.reset()
    cdn.reset_stats()

    lister = hf.HubLister("org/tok", {"repo_type": "dataset"})
    listed = {info.key for info in lister.files()}
    source = hf.HFSource()
    for name in sorted(files):
        stream = source.open(Request(hf.resolve_url(f"hf://datasets/org/tok/{name}")))
        assert b"".join(stream.chunks(1 << 16)) == files[name]
        stream.close()
    hf.forget_token()

    assert listed == set(files)
    assert reads == [token_file]  # once, for every request of this process
    assert len(hub.requests()) >= 5 and all(s.header("Authorization") == f"Bearer {TOKEN}" for s in hub.requests())
    assert len(cdn.requests) == 2 and not any("Authorization" in r.headers for r in cdn.requests)


def test_a_backend_job_request_at_the_same_commit_is_listed_from_the_ledger(hhome: Home, hub: FakeHub) -> None:
    """Submitted as a request, the supervisor's dispatcher lists: once per
    commit too, and the command's listing and its own are the same."""
    files = repo_files()
    hub.add_repo("org/request", files)
    request = {"type": "backend", "bucket": {"name": "org/request", "provider": "hf"}, "repo_type": "dataset"}
    first = hhome.submit(request)
    assert hhome.run().returncode == 0
    assert counts(hhome, first) == ("finished", len(files), 0, 0)
    assert hub.requests("/tree/")

    hub.reset()
    again = hhome.submit(request)
    assert hhome.run().returncode == 0
    assert [s.path.split("?")[0] for s in hub.requests()] == ["/api/datasets/org/request/revision/main"]
    assert counts(hhome, again) == ("finished", len(files), len(files), 0)

    hub.reset()  # the command finds what the dispatcher recorded
    job, stderr = download(hhome, "--hf-dataset", "org/request", "hf://org/request")
    assert "not listed again" in stderr and len(hub.requests()) == 1
    assert counts(hhome, job) == ("finished", len(files), len(files), 0)


def test_a_listed_job_total_is_unknown_until_its_sync_ended(
    hhome: Home, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """AIStore's rule for a backend job (total -1 while unknown) holds for
    one listed by the command too: its sync's deletions are still to come
    when the command stops after recording it (killed there), so its total
    is -1 until the supervisor's dispatcher has run the sync."""
    files = repo_files()
    hub.add_repo("org/total", files)
    first_download(hhome, "--hf-dataset", "org/total", "hf://org/total", "--sync")
    hub.commit("org/total", delete=["data/sub/c.txt"])
    for key, value in hhome.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(hf_cli, "_sync_here", lambda client, job_id: None)  # the command stops there
    assert cli_main(["download", "--hf-dataset", "org/total", "hf://org/total", "--sync", "--no-start"]) == 0
    job = capsys.readouterr().out.split()[-1]
    client = Client(load_settings())
    try:
        status = client.status(job)
        assert (status["total"], status["all_dispatched"]) == (-1, False)
        assert status["scheduled_cnt"] == len(files) - 1  # the listing, without its deletion
    finally:
        client.close()
    assert hhome.run().returncode == 0
    status = hhome.status(job)
    assert status["all_dispatched"] and status["state"] == "finished"
    assert status["total"] == status["scheduled_cnt"] == status["finished_cnt"] == len(files)
    assert hhome.find("hf", "org/total", "data/sub/c.txt") is None
