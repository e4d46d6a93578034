"""The cancel flag of one download: set by whoever stops it (an abort, a
lost lease, the worker stopping), read by whoever moves its bytes.

A worker makes one per claimed object. ``threading.Event`` builds a
``Condition`` and its lock for each (~5 us, once per object on the hot
path), although almost nobody ever waits on it: only a throttled download
sleeps on its flag. ``Cancel`` is a plain attribute until someone waits.
"""

from __future__ import annotations

import threading
from typing import Protocol


class Flag(Protocol):
    """What downloads need of a cancel flag (``Cancel`` and ``threading.Event`` both are)."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...


_MADE = threading.Lock()  # makes a flag's Event once, whoever waits first


class Cancel:
    """``threading.Event``'s ``set``/``is_set``/``wait``, without its
    Condition until a first ``wait``."""

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Until set or ``timeout`` seconds have passed; whether it is set."""
        if self._set:
            return True
        if self._event is None:
            with _MADE:
                if self._event is None:
                    self._event = threading.Event()
        event = self._event
        if self._set:  # set between the first look and the Event: it may not know
            event.set()
        return event.wait(timeout)
