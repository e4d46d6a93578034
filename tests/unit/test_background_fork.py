"""When a command may fork its background supervisor
(``supervisor.background._forkable``): one thread, and no descriptor but
its standard streams and the log; never in a caller's process."""

from __future__ import annotations

import os
import threading

from dlengine import process
from dlengine.supervisor import background


def test_open_descriptors_sees_a_new_one() -> None:
    before = background.open_descriptors()
    assert before is not None and {0, 1, 2} <= before
    r, w = os.pipe()
    try:
        assert background.open_descriptors() == before | {r, w}
    finally:
        os.close(r)
        os.close(w)
    assert background.open_descriptors() == before


def test_not_forkable_with_another_descriptor_or_thread() -> None:
    log, other = os.open(os.devnull, os.O_RDONLY), os.open(os.devnull, os.O_RDONLY)
    try:
        assert not background._forkable(log)
    finally:
        os.close(log)
        os.close(other)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not background._forkable(0)
    finally:
        stop.set()
        thread.join()


def test_a_callers_process_is_not_the_program() -> None:
    assert not process.is_the_program()  # (only cli.entry says so: the Python API never forks)
