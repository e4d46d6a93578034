"""A wake-up pipe (the self-pipe trick): whoever has news — another
process, a thread, a signal handler — pokes it, and a loop waiting in
``select`` returns at once instead of at the end of its tick or timeout.

The supervisor waits on one between ticks (a worker pokes it when a job
it reported ends, so ``run`` exits as soon as the last object is
recorded); the libcurl loop waits on one beside curl's sockets.
"""

from __future__ import annotations

import os
import select


class Wake:
    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def poke(self) -> None:
        if self.w >= 0:  # (never a closed descriptor's number, reused since)
            poke(self.w)

    def wait(self, timeout: float) -> None:
        """Until poked or ``timeout`` seconds have passed."""
        ready, _, _ = select.select([self.r], [], [], max(0.0, timeout))
        if ready:
            self.drain()

    def drain(self) -> None:
        try:
            while os.read(self.r, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        fds, self.r, self.w = (self.r, self.w), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)


def poke(fd: int) -> None:
    """One byte into the pipe's write end ``fd`` (from any process that
    holds it); a full pipe is already awake, a closed one has no waiter."""
    try:
        os.write(fd, b"!")
    except OSError:
        pass
