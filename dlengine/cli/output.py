"""Human-readable tables and job descriptions for the CLI."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from dlengine.progress import Follower, human_bytes, total_text
from dlengine.spec.names import escape_unprintable
from dlengine.supervisor.lock import HomeLock

if TYPE_CHECKING:
    from dlengine.client import BucketInfo, Client, JobPlan, ListedObject, NamedLink
    from dlengine.status import JobSummary, ShownStatus


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Columns padded to their widest cell; control characters in a cell
    (a name, a description, a server's error) are printed escaped."""
    rows = [[escape_unprintable(str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for row in [list(headers), *rows]:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)] + [row[-1]]
        print("  ".join(cells).rstrip())


def job_list(jobs: list[JobSummary]) -> None:
    if not jobs:
        print("no jobs (use --all to include finished ones)", file=sys.stderr)
        return
    rows = [(j["id"], j["state"], f"{j['finished_cnt']}/{total_text(j)}", j["error_cnt"], j["description"])
            for j in jobs]  # fmt: skip
    table(("ID", "STATE", "DONE", "ERRORS", "DESCRIPTION"), rows)


def job_detail(status: ShownStatus, verbose: bool) -> None:
    pairs: list[tuple[str, object]] = [
        ("ID", status["id"]),
        ("Description", status["description"]),
        ("Bucket", f"{status['bucket']['provider']}://{status['bucket']['name']}"),
        ("Stored in", ", ".join(status.get("destination") or []) or "-"),
        ("State", status["state"] + (f" ({status['error']})" if status["error"] else "")),
        ("Objects", _objects_line(status)),
        ("Bytes", _bytes_line(status)),
        ("Started", status["started_time"] or "-"),
        ("Finished", status["finished_time"] or "-"),
    ]
    if verbose:
        limits = status["limits"]
        pairs += [
            ("Connections", limits["connections"] or "no limit"),
            ("Bytes/hour", human_bytes(limits["bytes_per_hour"]) if limits["bytes_per_hour"] else "no limit"),
            ("Timeout", f"{status['timeout']:g}s" if status["timeout"] else "default"),
        ]
    for key, value in pairs:
        print(f"{key + ':':<13}{escape_unprintable(str(value))}")
    if verbose:
        _tasks(status)


def _objects_line(s: JobSummary) -> str:
    return (
        f"{s['finished_cnt']}/{total_text(s)} finished ({s['skipped_cnt']} skipped), {s['error_cnt']} failed,"
        f" {s['running_cnt']} running, {s['pending_cnt']} pending"
        + (f", {s['aborted_cnt']} aborted" if s["aborted_cnt"] else "")
    )


def _bytes_line(s: JobSummary) -> str:
    line = human_bytes(s["bytes_done"])
    return line + (f" of {human_bytes(s['bytes_total'])}" if s["bytes_total"] else "")


def _tasks(status: ShownStatus) -> None:
    if status.get("current_tasks"):
        print("\nRunning:")
        table(
            ("NAME", "DOWNLOADED", "TOTAL"),
            ((t["name"], t["downloaded"], t["total"] if t["total"] != "0" else "?") for t in status["current_tasks"]),
        )
    by_code = status.get("errors_by_code") or {}
    if by_code:
        print("\nFailed by kind:")
        rows = sorted(((c or "unknown", n) for c, n in by_code.items()), key=lambda r: (-r[1], r[0]))
        table(("KIND", "OBJECTS"), rows)
    if status.get("download_errors"):
        print("\nErrors:")
        errors = ((e["name"], e.get("code") or "-", e["error"]) for e in status["download_errors"])
        table(("NAME", "KIND", "ERROR"), errors)


def bucket_listing(entries: Iterable[ListedObject], long: bool = False) -> int:
    if long:
        wide = [(e["name"], _size(e), e.get("stored_time") or "-", e.get("path") or "-") for e in entries]
        table(("NAME", "SIZE", "STORED", "PATH"), wide)
        return len(wide)
    rows = [(e["name"], _size(e)) for e in entries]
    table(("NAME", "SIZE"), rows)
    return len(rows)


def _size(entry: ListedObject) -> str:
    return "-" if entry["size"] is None else human_bytes(entry["size"])  # a provider may list no size


def bucket_table(buckets: list[BucketInfo]) -> None:
    if not buckets:
        print("no buckets", file=sys.stderr)
        return
    rows = [(b["uri"], b["objects"], human_bytes(b["size"]), ", ".join(b["destination"])) for b in buckets]
    table(("BUCKET", "OBJECTS", "SIZE", "STORED IN"), rows)


def follow(
    client: Client,
    job_id: str,
    progress: bool,
    interval: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Follow a job until it ends (a bar on a terminal with ``progress``,
    plain lines otherwise); True if it failed objects or was aborted.
    ``sleep``: the pause between looks (``Client.wait``)."""
    follower = Follower(bar=None if progress else False, interval=interval or 2.0)
    poll = min(0.5, interval) if interval else 0.5
    watch = _SupervisorWatch(client.settings.lock_path)

    def on_progress(status: JobSummary) -> None:
        follower(status)
        watch(status)

    try:
        final = client.wait(job_id, on_progress=on_progress, poll=poll, sleep=sleep)
    finally:
        follower.close()
    return final["state"] == "aborted" or bool(final["error_cnt"])


class _SupervisorWatch:
    """Says once, while following, that no supervisor runs for the home
    (a job submitted with --no-start waits for `dlengine run`): following
    must not look like a download that hangs."""

    GRACE = 5.0  # a background supervisor that was just started takes a moment

    def __init__(self, lock_path: Path) -> None:
        self.lock = HomeLock(lock_path)
        self.since: float | None = None
        self.said = False

    def _alive(self) -> bool:
        """Whether the pid the last supervisor wrote into the lock file
        lives. Never by taking the lock: a supervisor starting at that very
        moment would find it held and exit."""
        pid = self.lock.holder()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def __call__(self, status: JobSummary) -> None:
        if self.said or status["state"] not in ("pending", "running"):
            return
        if self._alive():
            self.since = None
            return
        now = time.monotonic()
        self.since = self.since or now
        if now - self.since >= self.GRACE:
            self.said = True
            print(
                f"\ndlengine: no supervisor is running for this home, so {status['id']} waits:"
                " start one with `dlengine run` (or `dlengine serve`)",
                file=sys.stderr,
                flush=True,
            )


FIRST_FAILURES = 5


def outcome(status: ShownStatus, stream: TextIO | None = None) -> None:
    """After a followed job: where its objects are, and its first failures
    with their reasons (a count and where to see the rest)."""
    out = stream or sys.stderr
    job_id = status["id"]
    where = ", ".join(status.get("destination") or []) or "-"
    print(f"{job_id}: {status['finished_cnt']}/{total_text(status)} objects stored in {where}", file=out)
    if status.get("error") and status["state"] == "aborted":
        print(f"{job_id}: aborted: {status['error']}", file=out)
    errors = status.get("download_errors") or []
    if not status["error_cnt"]:
        return
    print(f"{job_id}: {status['error_cnt']} failed:", file=out)
    for err in errors[:FIRST_FAILURES]:
        print(f"  {escape_unprintable(err['name'])}: {escape_unprintable(str(err['error']))}", file=out)
    more = status["error_cnt"] - min(len(errors), FIRST_FAILURES)
    if more > 0:
        print(f"  ... and {more} more (dlengine show {job_id} -v)", file=out)
    print(f"  dlengine retry {job_id}   # queues the failed objects again", file=out)


def interrupted(job_id: str, others: Sequence[str] = ()) -> None:
    """Ctrl-C while following: only the following stopped."""
    jobs = " ".join([job_id, *others])
    print(
        f"\ndlengine: stopped following {jobs}; the download goes on in the background supervisor"
        " (or at the next `dlengine run`).\n"
        f"  follow it again:  dlengine wait {job_id}\n"
        f"  stop it:          dlengine stop {job_id}",
        file=sys.stderr,
        flush=True,
    )


def submitted(status: ShownStatus) -> None:
    """On a terminal, after a submit without --wait: where it goes, how to follow."""
    where = ", ".join(status.get("destination") or [])
    print(f"{status['id']}: into {where}; follow it: dlengine wait {status['id']}", file=sys.stderr)


def dry_run(plan: JobPlan) -> None:
    """What a --dry-run would submit."""
    count = plan["count"]
    pairs = [
        ("Type", plan["type"]),
        ("Objects", "listed by the supervisor at run time" if count is None else count),
        ("First", _named(plan["first"])),
        ("Last", _named(plan["last"])),
        ("Stored in", ", ".join(plan["destination"])),
        ("Description", plan["description"]),
    ]
    for key, value in pairs:
        print(f"{key + ':':<13}{escape_unprintable(str(value))}")
    print("(dry run: nothing was created)", file=sys.stderr)


def _named(obj: NamedLink | None) -> str:
    return "-" if obj is None else f"{obj['name']}  <- {obj['link']}"
