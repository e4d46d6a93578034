"""A bounded number of API threads, and idle connections that yield.

``ThreadingHTTPServer`` starts a thread per connection and keeps it while
the client keeps the connection open: 400 idle sockets made 403 threads
(issue 13). Here at most ``limit`` connections are served at once. When a
new one finds every slot taken, the connection that has waited longest for
its next request (idle for at least ``MIN_IDLE`` seconds) is shut down to
make room; a connection in the middle of a request is never cut. If no slot
frees within ``WAIT`` seconds the newcomer gets a 503.
"""

from __future__ import annotations

import socket
import threading
import time

MIN_IDLE = 0.25
WAIT = 5.0
_POLL = 0.1


class Slots:
    """The connections being served, and which of them are idle since when."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = threading.Semaphore(limit)
        self._lock = threading.Lock()
        self._idle: dict[socket.socket, float] = {}
        self._evicted: set[socket.socket] = set()

    def take(self) -> bool:
        """A slot for a new connection (called by the accepting thread)."""
        deadline = time.monotonic() + WAIT
        while not self._free.acquire(blocking=False):
            self._evict_idlest()
            if self._free.acquire(timeout=_POLL):
                break
            if time.monotonic() > deadline:
                return False
        return True

    def done(self, sock: socket.socket) -> None:
        """The connection's thread has ended: its slot is free."""
        with self._lock:
            self._idle.pop(sock, None)
            self._evicted.discard(sock)
        self._free.release()

    def idle(self, sock: socket.socket) -> None:
        """The connection waits for its next request: it may be evicted."""
        with self._lock:
            self._idle.setdefault(sock, time.monotonic())

    def busy(self, sock: socket.socket) -> bool:
        """The connection has a request to answer; False if it was evicted
        meanwhile (then nothing of the request may be done)."""
        with self._lock:
            self._idle.pop(sock, None)
            return sock not in self._evicted

    def _evict_idlest(self) -> None:
        with self._lock:
            if not self._idle:
                return
            sock, since = min(self._idle.items(), key=lambda item: item[1])
            if time.monotonic() - since < MIN_IDLE:
                return
            del self._idle[sock]
            self._evicted.add(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)  # its blocked read returns: the thread ends
        except OSError:
            pass
