"""Following a job: a tqdm bar on a terminal, plain lines otherwise.

Progress comes from the ledger's counters; nothing polls the network.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from dlengine.status import JobSummary


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def known_total(status: JobSummary) -> int | None:
    """The job's object count; None while a backend job is being listed
    (its ``total`` is AIStore's -1)."""
    total: int = status["total"]
    return total if total >= 0 else None


def total_text(status: JobSummary) -> str:
    """The job's object count for people: ``?`` while it is unknown."""
    total = known_total(status)
    return "?" if total is None else str(total)


def describe(status: JobSummary) -> str:
    total = total_text(status)
    line = f"{status['id']} {status['state']}: {status['finished_cnt']}/{total} objects"
    if status["skipped_cnt"]:
        line += f" ({status['skipped_cnt']} skipped)"
    if status["error_cnt"]:
        line += f", {status['error_cnt']} failed"
    if status.get("aborted_cnt"):  # (an aborted job's objects that never ran: not "failed")
        line += f", {status['aborted_cnt']} aborted"
    line += f", {human_bytes(status['bytes_done'])}"
    if status["bytes_total"]:
        line += f" of {human_bytes(status['bytes_total'])}"
    return line


def _terminal_width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):  # not a terminal, or no descriptor (StringIO)
        return 0


def _objects(status: JobSummary) -> str:
    """``3/10 obj, 1 failed``: the object counts beside the bytes bar."""
    text = f"{status['finished_cnt']}/{status['total'] or '?'} obj"
    if status["running_cnt"]:
        text += f", {status['running_cnt']} running"
    if status["error_cnt"]:
        text += f", {status['error_cnt']} failed"
    if status.get("aborted_cnt"):
        text += f", {status['aborted_cnt']} aborted"
    return text


class Follower:
    """Callback for ``Client.wait``: draws progress as the job moves."""

    def __init__(self, stream: TextIO = sys.stderr, bar: bool | None = None, interval: float = 2.0) -> None:
        self.stream = stream
        self.bar = stream.isatty() if bar is None else bar
        self.interval = interval
        self._tqdm: Any = None
        self._last_line = ""
        self._last_time = 0.0

    def __call__(self, status: JobSummary) -> None:
        if self.bar:
            self._draw_bar(status)
        else:
            self._print_line(status)

    def _draw_bar(self, status: JobSummary) -> None:
        """One bar of bytes (those of objects in flight included, so speed
        and ETA move while a large file downloads), objects as its postfix."""
        from tqdm import tqdm

        if self._tqdm is None:
            sized = _terminal_width(self.stream) > 0  # a pty without a size (script, CI) draws nothing
            self._tqdm = tqdm(
                total=None, unit="B", unit_scale=True, unit_divisor=1024, file=self.stream,
                desc=status["id"], dynamic_ncols=sized, ncols=None if sized else 100,
                nrows=None if sized else 24, smoothing=0.1, mininterval=0,
            )  # fmt: skip
        done = status["bytes_done"]
        # sizes become known as objects start: the total grows, never below what is done
        total = max(status["bytes_total"], done) or None
        if total != self._tqdm.total:
            self._tqdm.total = total
        if done > self._tqdm.n:
            self._tqdm.update(done - self._tqdm.n)  # update(), not n=: tqdm's rate and ETA follow updates
        self._tqdm.set_postfix_str(_objects(status), refresh=False)
        self._tqdm.refresh()

    def _print_line(self, status: JobSummary) -> None:
        line = describe(status)
        now = time.monotonic()
        ended = status["state"] not in ("pending", "running")
        if line != self._last_line and (ended or now - self._last_time >= self.interval):
            print(line, file=self.stream, flush=True)
            self._last_line, self._last_time = line, now

    def close(self, final: JobSummary | None = None) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
        if final is not None and self.bar:
            print(describe(final), file=self.stream, flush=True)
