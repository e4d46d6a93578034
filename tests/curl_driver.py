"""One libcurl loop of the engine driven in process, on a thread: what the
integration tests of ``engine.curl`` submit objects to and read outcomes from."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any

from dlengine.engine import curl
from dlengine.ledger.models import Task
from dlengine.supervisor import work


class LoopDriver:
    def __init__(self, threshold: int = 64 << 20, max_attempts: int = 1, connections: int = 0, fewest: int = 0) -> None:
        self.results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.loop = curl.CurlLoop(
            lambda result, _sidecar: self.results.put(result), threshold, connections=connections, fewest=fewest
        )
        self.max_attempts = max_attempts
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()

    def get(self, tmp_path: Path, link: str, row: int = 1) -> Any:
        """The outcome of one object of ``link`` (a task of row ``row``)."""
        self.submit(tmp_path, link, row)
        return self.results.get(timeout=60)

    def submit(self, tmp_path: Path, link: str, row: int) -> work.Context:
        """``link`` as the object of row ``row``, not waited for: its context
        (whose ``cancel`` aborts it)."""
        task = Task(row, "j", 1, f"o{row}.bin", link, 1, 1, "ais", "", "bkt", 10.0, 0)
        ctx = work.Context(
            workdir=tmp_path, headers={}, fsync=False, max_attempts=self.max_attempts, cancel=threading.Event()
        )
        self.loop.submit(task, ctx)
        return ctx

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(20)
