"""Cancel: threading.Event's set/is_set/wait, without a Condition until a wait."""

from __future__ import annotations

import threading

from dlengine.cancel import Cancel


def test_set_and_is_set() -> None:
    flag = Cancel()
    assert not flag.is_set()
    flag.set()
    assert flag.is_set() and flag.wait(0)


def test_wait_times_out_when_nobody_sets_it() -> None:
    assert Cancel().wait(0.01) is False


def test_a_waiter_wakes_when_another_thread_sets_it() -> None:
    flag, waiting, woke = Cancel(), threading.Event(), []

    def waiter() -> None:
        waiting.set()
        woke.append(flag.wait(30))  # would return False after 30 s if the set were missed

    thread = threading.Thread(target=waiter)
    thread.start()
    waiting.wait(5)
    flag.set()
    thread.join(35)
    assert woke == [True]


def test_many_waiters_all_wake() -> None:
    flag, results = Cancel(), []
    threads = [threading.Thread(target=lambda: results.append(flag.wait(30))) for _ in range(8)]
    for thread in threads:
        thread.start()
    flag.set()
    for thread in threads:
        thread.join(35)
    assert results == [True] * 8
