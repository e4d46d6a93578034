"""End to end through the CLI: real processes, the real test HTTP server."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dlengine.ledger.ledger import Ledger
from harness.httpd import Fault, TestHTTPServer
from tests.conftest import Home, wait_for


def _shards(httpd: TestHTTPServer, count: int, size: int = 20_000, prefix: str = "/abc/shard-") -> dict[str, bytes]:
    data = {}
    for i in range(1, count + 1):
        name = f"{prefix}{i:03d}.tar"
        body = os.urandom(size)
        httpd.put(name, body)
        data[name.rsplit("/", 1)[1]] = body
    return data


def test_seed_flow_range_into_local_bucket(home: Home, httpd: TestHTTPServer) -> None:
    data = _shards(httpd, 10)
    res = home.cli("download", f"{httpd.url}/abc/shard-{{001..010}}.tar", "ais://abc", "--wait")
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip().splitlines()[-1]
    assert job_id.startswith("dnl-")
    assert home.ls("ais://abc") == {name: len(body) for name, body in data.items()}
    listed = json.loads(home.cli("ls", "ais://abc", "--json").stdout)
    assert home.ls("ais://abc") == {e["name"]: e["size"] for e in listed}  # Home.ls reads what the CLI lists
    for name, body in data.items():
        stored = home.find("ais", "abc", name)
        assert stored is not None and stored.read_bytes() == body
    status = home.status(job_id)
    assert status["state"] == "finished"
    assert (status["total"], status["finished_cnt"], status["error_cnt"]) == (10, 10, 0)
    assert status["bytes_done"] == status["bytes_total"] == 10 * 20_000
    assert home.work_files() == []


def test_status_has_every_spec_field(home: Home, httpd: TestHTTPServer) -> None:
    _shards(httpd, 2)
    job_id = home.submit(
        {"type": "range", "bucket": {"name": "abc"}, "template": f"{httpd.url}/abc/shard-{{001..002}}.tar"}
    )
    assert home.run().returncode == 0
    status = home.status(job_id)
    fields = (
        "id description started_time finished_time total scheduled_cnt finished_cnt skipped_cnt error_cnt"
        " all_dispatched aborted current_tasks finished_tasks download_errors state pending_cnt bytes_done bytes_total"
    ).split(" ")
    assert not [f for f in fields if f not in status]
    assert status == home.show_json(job_id)  # Home.status reads what the CLI prints
    assert status["aborted"] is False and status["all_dispatched"] is True
    assert {t["name"] for t in status["finished_tasks"]} == {"shard-001.tar", "shard-002.tar"}


def test_multi_map_and_list(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/d/a.bin", b"alpha")
    httpd.put("/d/b.bin", b"bravo")
    httpd.put("/d/c d.bin", b"charlie")  # the server decodes request paths
    map_job = {
        "type": "multi",
        "bucket": {"name": "m"},
        "objects": {"x/one": f"{httpd.url}/d/a.bin", "two": f"{httpd.url}/d/b.bin"},
    }
    list_job = {
        "type": "multi",
        "bucket": {"name": "l"},
        "objects": [f"{httpd.url}/d/b.bin?x=1#frag", f"{httpd.url}/d/c%20d.bin"],
    }
    home.submit(map_job)
    home.submit(list_job)
    assert home.run().returncode == 0
    assert home.ls("ais://m") == {"x/one": 5, "two": 5}
    assert home.ls("ais://l") == {"b.bin": 5, "c d.bin": 7}
    stored = home.find("ais", "m", "x/one")
    assert stored is not None and stored.read_bytes() == b"alpha"


def test_range_with_step_and_subdir(home: Home, httpd: TestHTTPServer) -> None:
    for i in range(1, 11):
        httpd.put(f"/s/obj{i}log.txt", f"log {i}".encode())
    job = {
        "type": "range",
        "bucket": {"name": "t"},
        "template": f"{httpd.url}/s/obj{{1..10..4}}log.txt",
        "subdir": "some/subdir/",
    }
    job_id = home.submit(job)
    assert home.run().returncode == 0
    assert home.ls("ais://t") == {f"some/subdir/obj{i}log.txt": len(f"log {i}") for i in (1, 5, 9)}
    assert home.status(job_id)["total"] == 3


def test_two_mountpaths_spread_and_listed(home: Home, httpd: TestHTTPServer, tmp_path: os.PathLike[str]) -> None:
    disks = [os.path.join(tmp_path, "disk1"), os.path.join(tmp_path, "disk2")]
    home.env["DLENGINE_MOUNTPATHS"] = ":".join(disks)
    data = _shards(httpd, 40, size=1000)
    home.submit({"type": "range", "bucket": {"name": "abc"}, "template": f"{httpd.url}/abc/shard-{{001..040}}.tar"})
    assert home.run().returncode == 0
    assert set(home.ls("ais://abc")) == set(data)
    per_disk = [len(list((home.mountpaths[i] / "ais" / "abc").glob("*.tar"))) for i in range(2)]
    assert sum(per_disk) == 40 and min(per_disk) >= 8, per_disk


def test_failed_objects_make_exit_code_1(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/f/ok.bin", b"ok")
    job_id = home.submit(
        {"type": "multi", "bucket": {"name": "f"}, "objects": [f"{httpd.url}/f/ok.bin", f"{httpd.url}/f/missing.bin"]}
    )
    res = home.run()
    assert res.returncode == 1
    status = home.status(job_id)
    assert (status["state"], status["finished_cnt"], status["error_cnt"]) == ("finished", 1, 1)
    assert status["download_errors"][0]["name"] == "missing.bin"
    assert "404" in status["download_errors"][0]["error"]


def test_abort_slow_job_leaves_nothing_partial(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/slow/done.bin", b"small")
    for i in range(3):
        httpd.put_generated(f"/slow/big{i}.bin", 50_000_000, seed=i)
        httpd.set_fault(f"/slow/big{i}.bin", Fault(rate=200_000))
    objects = {
        "done.bin": f"{httpd.url}/slow/done.bin",
        **{f"big{i}.bin": f"{httpd.url}/slow/big{i}.bin" for i in range(3)},
    }
    job_id = home.submit({"type": "multi", "bucket": {"name": "slow"}, "objects": objects})
    other = home.submit({"type": "single", "bucket": {"name": "other"}, "link": f"{httpd.url}/slow/done.bin"})
    runner = home.spawn("run")
    wait_for(lambda: httpd.bytes_sent_for("/slow/big0.bin") > 100_000)
    wait_for(lambda: home.work_files())
    res = home.cli("abort", job_id)
    assert res.returncode == 0, res.stderr
    assert runner.wait(60) == 1  # an aborted job makes run exit 1
    status = home.status(job_id)
    assert status["state"] == "aborted" and status["aborted"] is True
    assert status["running_cnt"] == 0 and status["pending_cnt"] == 0
    assert home.work_files() == []
    names = {p.name for p in home.visible_files()}
    assert not names & {"big0.bin", "big1.bin", "big2.bin"}
    assert home.status(other)["state"] == "finished"  # the other job is untouched


def test_remove_rules(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/r/x.bin", b"x")
    job_id = home.submit({"type": "single", "bucket": {"name": "r"}, "link": f"{httpd.url}/r/x.bin"})
    res = home.cli("rm", job_id)
    assert res.returncode == 2 and "still running" in res.stderr
    assert home.run().returncode == 0
    assert home.cli("rm", job_id).returncode == 0
    res = home.cli("show", job_id)
    assert res.returncode == 2 and "not found" in res.stderr
    assert home.ls("ais://r") == {"x.bin": 1}  # objects stay


def test_rm_and_retry_of_a_job_still_stopping_say_so(home: Home) -> None:
    ended = home.submit({"type": "single", "bucket": {"name": "r"}, "link": "http://127.0.0.1:9/ended.bin"})
    assert home.run().returncode == 1  # (refused: failed at once)
    job_id = home.submit({"type": "single", "bucket": {"name": "r"}, "link": "http://127.0.0.1:9/x.bin"})
    ledger = Ledger.open(home.path / "ledger.db")
    ((mountpath_id, _),) = ledger.placed_mountpaths()
    assert len(ledger.claim(mountpath_id, "w", 1, 30.0)) == 1  # a worker's download in flight
    ledger.close()
    assert home.cli("abort", job_id).returncode == 0
    assert home.status(job_id)["state"] == "aborted"  # (its finished_time once the download stopped)
    for command in ("rm", "retry"):  # were "still running: abort it first", and "re-queued 0 ... object(s)"
        res = home.cli(command, job_id)
        assert res.returncode == 2, (command, res.stdout)
        assert f"job {job_id} is being aborted: 1 download is still stopping" in res.stderr, res.stderr
    res = home.cli("rm", "--all")  # was exit 2 at the first such job, the ended ones after it left
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"removed {ended}\n"
    assert f"{job_id} is being aborted (downloads still stopping): left" in res.stderr
    assert home.status(job_id)["state"] == "aborted"


def test_show_list_filters(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/q/x.bin", b"x")
    first = home.submit(
        {"type": "single", "bucket": {"name": "q"}, "link": f"{httpd.url}/q/x.bin", "description": "1st job"}
    )
    second = home.submit(
        {"type": "single", "bucket": {"name": "q2"}, "link": f"{httpd.url}/q/x.bin", "description": "second"}
    )
    active = json.loads(home.cli("show", "--json").stdout)
    assert {j["id"] for j in active} == {first, second}
    assert home.run().returncode == 0
    assert json.loads(home.cli("show", "--json").stdout) == []
    every = json.loads(home.cli("show", "--all", "--json").stdout)
    assert [j["id"] for j in every] == [first, second]
    digits = json.loads(home.cli("show", "--all", "--regex", "^[0-9]", "--json").stdout)
    assert [j["id"] for j in digits] == [first]


def test_second_supervisor_refuses(home: Home, httpd: TestHTTPServer) -> None:
    first = home.spawn("run", "--linger", "30")
    wait_for(lambda: (home.path / "supervisor.lock").exists() and (home.path / "supervisor.lock").read_text().strip())
    res = home.run()
    assert res.returncode == 0
    assert "already running" in res.stderr
    assert first.poll() is None


def test_background_supervisor_starts_and_exits(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/b/x.bin", b"background")
    home.env["DLENGINE_INLINE"] = "0"  # one object would be downloaded in the command (test_inline)
    res = home.cli("download", f"{httpd.url}/b/x.bin", "ais://bg/dir/", "--wait")
    assert res.returncode == 0, res.stderr
    assert home.ls("ais://bg") == {"dir/x.bin": 10}
    from tests.conftest import _lock_holder

    wait_for(lambda: _lock_holder(home.path) is None, timeout=20)  # lingers, then exits


def test_submit_json_output_and_last_line(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/j/x.bin", b"x")
    res = home.cli("download", f"{httpd.url}/j/x.bin", "ais://j", "--no-start", "--json")
    assert res.returncode == 0
    assert json.loads(res.stdout)["id"].startswith("dnl-")


def test_bucket_create_of_an_existing_bucket_is_an_error_naming_it(home: Home, tmp_path: Path) -> None:
    """As ``ais bucket create``: the second create says the bucket exists,
    exit 2, and a command naming one that exists creates none of the
    others; --ignore-error lets an existing one be."""
    assert home.cli("bucket", "create", "ais://twice").stdout == "created ais://twice\n"
    res = home.cli("bucket", "create", "ais://twice")
    assert (res.returncode, res.stdout) == (2, ""), res
    assert res.stderr == 'dlengine: error: bucket "ais://twice" already exists\n'
    res = home.cli("bucket", "create", "ais://other", "ais://twice")
    assert res.returncode == 2 and 'bucket "ais://twice" already exists' in res.stderr, res.stderr
    directory = f"{tmp_path / 'dir'}/"
    assert home.cli("bucket", "create", directory).returncode == 0
    res = home.cli("bucket", "create", directory)
    assert res.returncode == 2 and f'bucket "{directory}" already exists' in res.stderr, res.stderr
    res = home.cli("bucket", "create", str(home.path / "inside"))  # refused: the home
    assert res.returncode == 2 and "overlaps" in res.stderr, res.stderr
    uris = [b["uri"] for b in json.loads(home.cli("bucket", "ls", "--json").stdout)]
    assert sorted(uris) == sorted(["ais://twice", f"dir://{tmp_path / 'dir'}"])  # no other, no refused one
    res = home.cli("bucket", "create", "--ignore-error", "ais://twice", "ais://other")
    assert (res.returncode, res.stdout) == (0, "exists: ais://twice\ncreated ais://other\n"), res


def test_bucket_create_and_ls_unknown(home: Home) -> None:
    res = home.cli("bucket", "create", "ais://fresh")
    assert res.returncode == 0 and "created" in res.stdout
    assert home.ls("ais://fresh") == {}
    res = home.cli("ls", "ais://nope")
    assert res.returncode == 2 and "not found" in res.stderr
