"""What a new user sees (issue 11) and AIStore's CLI names (issue 14):
where objects landed, failure reasons at the end of --wait and run, Ctrl-C
that says the job goes on, --dry-run, run --quiet, stop/wait verbs,
--all/--regex, bucket ls/rm, the unquoted-braces hint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness.httpd import Fault, TestHTTPServer
from tests.conftest import ROOT, Home, wait_for


def test_wait_ends_with_the_destination_and_the_failures(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/w/ok.bin", b"fine")
    home.path.mkdir(parents=True)
    objects = [f"{httpd.url}/w/ok.bin", f"{httpd.url}/w/missing.bin"]
    listing = home.path / "names.txt"
    listing.write_text("\n".join(objects))
    res = home.cli("download", httpd.url, "ais://abc", "--from", str(listing), "--wait")
    assert res.returncode == 1, res.stderr
    bucket_dir = home.path / "data" / "ais" / "abc"
    assert f"stored in {bucket_dir}" in res.stderr
    assert "missing.bin" in res.stderr and "404" in res.stderr  # the name and the reason
    assert "dlengine retry" in res.stderr
    job_id = res.stdout.strip().splitlines()[-1]
    shown = home.cli("show", job_id)
    assert f"Stored in:   {bucket_dir}" in shown.stdout
    assert home.status(job_id)["destination"] == [str(bucket_dir)]


def test_ls_gives_paths_and_long_gives_time(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/l/a.bin", b"alpha")
    assert home.cli("download", f"{httpd.url}/l/a.bin", "ais://abc/sub/", "--wait").returncode == 0
    (entry,) = json.loads(home.cli("ls", "ais://abc", "--json").stdout)
    assert entry["name"] == "sub/a.bin" and entry["size"] == 5
    assert Path(entry["path"]).read_bytes() == b"alpha"
    assert entry["stored_time"].endswith("Z")
    long = home.cli("ls", "-l", "ais://abc").stdout.splitlines()
    assert long[0].split() == ["NAME", "SIZE", "STORED", "PATH"]
    assert long[1].endswith(entry["path"]) and entry["stored_time"] in long[1]


def test_dry_run_creates_nothing(home: Home) -> None:
    src = "http://127.0.0.1:9/d/shard-{0001..1000..3}.tar"
    res = home.cli("download", src, "ais://abc/train/", "--dry-run")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "range" in out and "334" in out
    assert "train/shard-0001.tar" in out and "train/shard-1000.tar" in out
    assert str(home.path / "data" / "ais" / "abc") in out
    as_json = json.loads(home.cli("download", src, "ais://abc/train/", "--dry-run", "--json").stdout)
    assert as_json["count"] == 334 and as_json["last"]["name"] == "train/shard-1000.tar"
    assert not home.path.exists()  # no home, no ledger, no bucket

    job = {"type": "multi", "bucket": {"name": "m"}, "objects": {"a": "http://h/a", "z": "http://h/z"}}
    res = home.cli("submit", "-", "--dry-run", input=json.dumps(job))
    assert res.returncode == 0 and "a  <- http://h/a" in res.stdout and "z  <- http://h/z" in res.stdout
    assert not home.path.exists()


def test_run_ends_with_failures_and_quiet_silences_workers(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/r/ok.bin", b"ok")
    job_id = home.submit(
        {"type": "multi", "bucket": {"name": "abc"}, "objects": [f"{httpd.url}/r/ok.bin", f"{httpd.url}/r/no.bin"]}
    )
    res = home.run("--quiet")
    assert res.returncode == 1
    assert f"job {job_id}: no.bin failed:" in res.stderr and "404" in res.stderr
    assert "worker[" not in res.stderr  # the workers' INFO lines ("job ... finished") are silenced too


def test_supervisor_log_names_failed_objects(home: Home, httpd: TestHTTPServer) -> None:
    res = home.cli("download", f"{httpd.url}/nothing-here.bin", "ais://abc", "--wait")
    assert res.returncode == 1
    job_id = res.stdout.strip().splitlines()[-1]
    log = home.path / "supervisor.log"
    wait_for(lambda: "nothing-here.bin failed" in log.read_text(), timeout=30)
    assert log.read_text().count(f"job {job_id}: nothing-here.bin failed") == 1


def test_stop_abort_and_rm_with_all_and_regex(home: Home) -> None:
    ids = {}
    for desc in ("alpha one", "alpha two", "beta"):
        res = home.cli("download", "http://127.0.0.1:9/x.bin", "ais://abc", "--no-start", "--description", desc)
        assert res.returncode == 0, res.stderr
        ids[desc] = res.stdout.strip()
    assert home.status(ids["beta"])["description"] == "beta"
    res = home.cli("stop", "--regex", "^alpha")
    assert res.returncode == 0 and res.stdout.count("aborted") == 2
    assert home.status(ids["beta"])["state"] == "pending"
    assert home.cli("rm", "--regex", "beta").stderr.startswith("no finished")  # beta is still active
    assert home.cli("abort", "--all").stdout.strip() == f"aborted {ids['beta']}"
    assert home.cli("rm", ids["alpha one"], "--all").returncode == 2  # an ID or a selection, not both
    assert home.cli("abort").returncode == 2
    res = home.cli("rm", "--all")
    assert res.returncode == 0 and res.stdout.count("removed") == 3
    assert home.cli("show", "--all", "--json").stdout.strip() == "[]"


def test_wait_reattaches_and_show_progress_follows(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put("/v/a.bin", b"a" * 1000)
    job_id = home.submit({"type": "single", "bucket": {"name": "abc"}, "link": f"{httpd.url}/v/a.bin"})
    home.spawn("run")
    res = home.cli("wait", job_id, "--refresh", "200ms")
    assert res.returncode == 0, res.stderr
    assert "finished: 1/1 objects" in res.stderr and "stored in" in res.stderr
    again = home.cli("show", job_id, "--progress", "--refresh", "300ms", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["state"] == "finished"
    assert home.cli("wait", "dnl-nosuchjob").returncode == 2
    assert home.cli("wait", job_id, "--refresh", "forever").returncode == 2


def test_ctrl_c_says_the_job_goes_on(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put_generated("/slow/big.bin", 4 << 20)
    httpd.set_fault("/slow/big.bin", Fault(rate=256 << 10))  # ~16 s: long enough to interrupt
    # SIGINT as at a terminal: a suite started in the background (`.ci/run &`)
    # hands its children SIGINT ignored, and Python then never raises
    # KeyboardInterrupt
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlengine", "download", f"{httpd.url}/slow/big.bin", "ais://abc", "--wait"],
        env=home.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        job_id = proc.stderr.readline().strip()
        wait_for(lambda: home.status(job_id)["state"] == "running", timeout=60)
        assert job_id in proc.stderr.readline()  # a progress line: it is following the job, set up for Ctrl-C
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "goes on" in err and f"dlengine wait {job_id}" in err and f"dlengine stop {job_id}" in err
    assert home.status(job_id)["state"] == "running"  # only the following stopped
    httpd.clear_faults()
    assert home.cli("stop", job_id).returncode == 0


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_a_run_stopped_by_a_signal_says_what_it_left(
    home: Home, httpd: TestHTTPServer, sig: signal.Signals, code: int
) -> None:
    httpd.put_generated("/slow/big.bin", 4 << 20)
    httpd.set_fault("/slow/big.bin", Fault(rate=256 << 10))  # ~16 s: long enough to interrupt
    job_id = home.submit({"type": "single", "bucket": {"name": "abc"}, "link": f"{httpd.url}/slow/big.bin"})
    runner = home.spawn("run")
    wait_for(lambda: httpd.bytes_sent_for("/slow/big.bin") > 0, timeout=60)
    runner.send_signal(sig)
    _, err = runner.communicate(timeout=30)
    assert runner.returncode == code  # SIGINT: 130 as every command's Ctrl-C (was 0); SIGTERM: a service's stop
    assert err.splitlines()[-1] == (  # was silent
        f"dlengine: run stopped by {sig.name}: 1 job(s) not done ({job_id}): they go on at the next `dlengine run`"
    )
    httpd.clear_faults()
    assert home.run().returncode == 0
    assert home.ls("ais://abc") == {"big.bin": 4 << 20}


def test_unquoted_braces_get_the_hint(home: Home) -> None:
    res = home.cli("download", "http://h/a-1.tar", "http://h/a-2.tar", "http://h/a-3.tar", "ais://abc")
    assert res.returncode == 2
    assert "enclose source in quotation marks" in res.stderr
    assert not home.path.exists()


def test_aistore_flag_names(home: Home, tmp_path: Path) -> None:
    res = home.cli(
        "download", "http://127.0.0.1:9/a.bin", "ais://abc", "--no-start", "--json",
        "--download-timeout", "7s", "--progress-interval", "1s", "--blob-threshold", "1GiB",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert home.status(json.loads(res.stdout)["id"])["timeout"] == 7
    assert home.cli("download", "http://h/a", "ais://abc", "--blob-threshold", "huge", "--no-start").returncode == 2
    assert home.cli("download", "http://h/a", "ais://abc", "--hf-auth", "hf_x", "--no-start").returncode == 2


def test_bucket_ls_and_rm(home: Home, httpd: TestHTTPServer, tmp_path: Path) -> None:
    httpd.put("/b/a.bin", b"alpha")
    httpd.put("/b/n/c.bin", b"charlie")
    assert home.cli("download", f"{httpd.url}/b/a.bin", "ais://abc", "--wait").returncode == 0
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("the user's own file")
    listing = tmp_path / "names.txt"
    listing.write_text("a.bin\nn/c.bin\n")
    assert home.cli("download", f"{httpd.url}/b", str(out), "--object-list", str(listing), "--wait").returncode == 0
    buckets = {b["uri"]: b for b in json.loads(home.cli("bucket", "ls", "--json").stdout)}
    assert buckets["ais://abc"]["objects"] == 1 and buckets["ais://abc"]["size"] == 5
    assert buckets[f"dir://{out}"]["objects"] == 2
    assert "ais://abc" in home.cli("bucket", "ls").stdout
    assert home.cli("ls").stdout == home.cli("bucket", "ls").stdout  # `ls` without a bucket, as `ais ls`
    assert json.loads(home.cli("ls", "--json").stdout) == list(buckets.values())
    assert home.cli("ls", "--remote").returncode == 2  # lists one bucket: names none

    (out / ".work").mkdir(exist_ok=True)
    (out / ".work" / "99.part").write_bytes(b"kept bytes of an object that failed")  # (its work directory's)
    res = home.cli("bucket", "rm", "ais://abc", str(out))
    assert res.returncode == 0, res.stderr
    assert not (home.path / "data" / "ais" / "abc").exists()
    assert home.cli("ls", "ais://abc").returncode == 2
    # only what dlengine made goes (its objects, work directory and mark): the user's file stays, and so
    # the directory, which the output says
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    assert (out / "mine.txt").read_text() == "the user's own file"
    assert f"removed {out} (2 stored object(s) deleted; {out} kept: it holds files dlengine did not store)" in (
        res.stdout
    )
    assert home.cli("bucket", "rm", "ais://abc").returncode == 2  # gone: not found


def test_bucket_rm_of_a_directory_leaves_nothing_of_dlengine(home: Home, httpd: TestHTTPServer, tmp_path: Path) -> None:
    """A directory bucket that holds only what dlengine made goes whole,
    as ``ais bucket rm`` leaves nothing of a bucket: not its work
    directory and home mark (which were left behind)."""
    httpd.put("/d/a.bin", b"alpha")
    httpd.put("/d/n/c.bin", b"charlie")
    out = tmp_path / "data"
    objects = {"a.bin": f"{httpd.url}/d/a.bin", "n/c.bin": f"{httpd.url}/d/n/c.bin"}
    job_id = home.submit({"type": "multi", "bucket": {"name": str(out), "provider": "dir"}, "objects": objects})
    assert home.run().returncode == 0 and home.status(job_id)["finished_cnt"] == 2
    assert (out / "n" / "c.bin").read_bytes() == b"charlie"
    assert (out / ".dlengine-home").exists() and (out / ".work").is_dir()
    res = home.cli("bucket", "rm", f"{out}/")
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"removed {out}/ (2 stored object(s) deleted)\n"
    assert not out.exists(), sorted(str(p) for p in out.rglob("*"))
    assert tmp_path.is_dir()  # nothing outside it
    assert home.cli("bucket", "rm", f"{out}/").returncode == 2  # gone: not found


def test_bucket_rm_refused_while_a_job_is_active(home: Home) -> None:
    assert home.cli("download", "http://127.0.0.1:9/a", "ais://abc", "--no-start").returncode == 0
    res = home.cli("bucket", "rm", "ais://abc")
    assert res.returncode == 2 and "active job" in res.stderr


def test_progress_counts_running_bytes(home: Home, httpd: TestHTTPServer) -> None:
    httpd.put_generated("/p/big.bin", 6 << 20)
    httpd.set_fault("/p/big.bin", Fault(rate=1 << 20))
    job_id = home.submit({"type": "single", "bucket": {"name": "abc"}, "link": f"{httpd.url}/p/big.bin"})
    home.spawn("run")
    code = "import sys; from dlengine.client import Client; print(Client().progress(sys.argv[1])['bytes_done'])"

    def in_flight() -> bool:
        res = subprocess.run([sys.executable, "-c", code, job_id], env=home.env, capture_output=True, text=True)
        return 0 < int(res.stdout.strip() or 0) < (6 << 20)

    wait_for(in_flight, timeout=60, interval=0.3)  # bytes move before the object is done
    httpd.clear_faults()
    assert home.cli("stop", job_id).returncode == 0


def test_following_a_job_no_supervisor_serves_says_so(home: Home) -> None:
    job_id = home.submit({"type": "single", "bucket": {"name": "abc"}, "link": "http://127.0.0.1:9/a"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlengine", "wait", job_id],
        env=home.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    guard = threading.Timer(60, proc.kill)  # without the hint, `wait` would wait forever
    guard.start()
    try:
        assert proc.stderr is not None
        lines = [""]
        for line in proc.stderr:  # the hint comes after a few seconds of grace
            lines.append(line)
            if "no supervisor is running" in line:
                break
        assert "dlengine run" in lines[-1], lines
    finally:
        guard.cancel()
        proc.kill()
        proc.communicate(timeout=10)
    assert home.status(job_id)["state"] == "pending"  # following never took the supervisor's lock


@pytest.mark.parametrize(
    "command", ["submit", "download", "show", "abort", "stop", "rm", "retry", "wait", "run", "serve", "ls", "bucket"]
)
def test_every_command_help_teaches_with_examples(home: Home, command: str) -> None:
    res = home.cli(command, "--help")
    assert res.returncode == 0
    assert "\nexamples:\n" in res.stdout, res.stdout  # (were only the top-level's, download's and serve's)
    assert f"dlengine {command.replace('stop', 'abort')} " in res.stdout.split("\nexamples:\n", 1)[1]


def test_the_job_files_of_submit_help_are_valid(home: Home) -> None:
    text = home.cli("submit", "--help").stdout
    block = text.split("job.json, e.g.:\n", 1)[1].split("\n\n", 1)[0]
    jobs = ["{" + part for part in block.replace("\n   ", " ").split("{", 1)[1].split("\n  {")]
    assert [json.loads(job)["type"] for job in jobs] == ["range", "single", "multi"]
    for job in jobs:
        res = home.cli("submit", "-", "--dry-run", input=job)
        assert res.returncode == 0, (job, res.stderr)
    assert not (home.path / "ledger.db").exists()


def test_links_with_spaces_and_non_ascii_characters_download(home: Home, httpd: TestHTTPServer, tmp_path: Path) -> None:
    """As requests and AIStore (Go's net/url) send them: percent-encoded.
    Were: a space failed each attempt ('URL rejected: Bad path'); a non-ASCII
    character killed the worker's curl thread (UnicodeEncodeError) with a
    traceback on the terminal."""
    names = ["é.txt", "a b.txt", "データ.bin"]
    for i, name in enumerate(names):
        httpd.put(f"/u/dir é/{name}", f"{i}".encode())
    listing = tmp_path / "names.txt"
    listing.write_text("".join(f"{name}\n" for name in names))
    res = home.cli("download", f"{httpd.url}/u/dir é", "ais://u", "--object-list", str(listing), "--wait")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert home.ls("ais://u") == {name: 1 for name in names}
    single = home.cli("download", f"{httpd.url}/u/dir é/a b.txt", "ais://u/copy.txt", "--wait")
    assert single.returncode == 0, single.stderr
    assert home.ls("ais://u")["copy.txt"] == 1


def test_options_may_come_between_src_and_dst(home: Home, httpd: TestHTTPServer) -> None:
    """As rclone and aria2c take them (was: 'unrecognized arguments: DST')."""
    httpd.put("/o/x.bin", b"x")
    res = home.cli("download", f"{httpd.url}/o/x.bin", "--wait", "--desc", "mine", "ais://o")
    assert res.returncode == 0, res.stderr
    assert home.ls("ais://o") == {"x.bin": 1}
    assert home.status(res.stdout.split()[-1])["description"] == "mine"
    three = home.cli("download", f"{httpd.url}/o/a", "--no-start", f"{httpd.url}/o/b", "ais://o")
    assert three.returncode == 2 and "enclose source in quotation marks" in three.stderr  # still the hint
