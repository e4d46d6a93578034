"""``process.name_thread``: the name the system shows for the calling
thread (``/proc/<pid>/task/<tid>/comm``), cut to the kernel's 15 bytes,
and nobody else's."""

from __future__ import annotations

import threading
from pathlib import Path

from dlengine import process


def _named(name: str) -> tuple[str, str]:
    seen: list[str] = []

    def body() -> None:
        process.name_thread(name)
        seen.append(Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip())

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return seen[0], Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()


def test_the_calling_thread_is_named_and_only_it() -> None:
    before = Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()
    theirs, mine = _named("dl-sync")
    assert theirs == "dl-sync"
    assert mine == before


def test_a_long_name_is_cut_to_what_the_kernel_keeps() -> None:
    assert _named("dl-a-very-long-thread-name")[0] == "dl-a-very-long-"
