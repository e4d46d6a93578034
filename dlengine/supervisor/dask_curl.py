"""A Dask batch on its worker: downloads through the libcurl loop, the
same engine as the local pools, with as many objects in flight per batch
as a local worker process has download threads.

One ``CurlLoop`` per Dask worker process (per set of loop options), on its
own thread, shared by every batch the process runs: a worker started with
``--nthreads N`` runs N batches at once, each keeping ``DLENGINE_THREADS``
objects in flight, so its concurrency follows its threads (before, one
shared pool of ``DLENGINE_THREADS`` threads per process served every
batch: more Dask threads only queued more batches).

Per object: the loop fetches it through the same ``transfer.Receiver`` (the
one-object protocol: checks of the answer, hashing, verify); the verified
bytes then go to the job's bucket with their origin metadata, exactly what
``Receiver.end`` does for a write-through target: bytes held in memory
into S3 by the process's presigned PUT loop (``s3_put.PutLoop``: many at
once on one thread; a thread blocked in each PUT cost twice the CPU),
anything else by a thread of the process. An object of at most one chunk (``Context.chunk_size``, 1 MiB) is
held in memory (``Context.hold``) and uploaded from there: no scratch file
written, read back and removed (a 10 KiB object cost a worker ~0.15 ms of
file work that way). A larger one is installed in the batch's scratch
directory, uploaded from the file and removed. No upload is done on the
download loop's thread: it would block, and stall every other transfer.

What the loop cannot do keeps its present path, ``work.run_task`` on those
threads: links that are not plain HTTP(S) (SDK sources) and jobs limited
in bytes per hour (their token queue blocks). Rows handed out before
(attempts > 1: a re-executed batch, a retry) first check the destination
(``work.already_stored``) on a thread; only if it does not hold them are
they fetched by the loop.

The loop reports outcomes by row id; rows of two supervisors sharing a
cluster may carry the same id, so each object goes to the loop under an id
of this process (and a flat name: the scratch tree never holds ``a`` and
``a/b`` of one bucket at once) and its outcome is routed back to its batch.
The batch's own thread is not woken per object: whichever thread makes an
object final (the loop, the PUT loop, an upload thread) records it and
starts the batch's next object (a start only queues work); the batch's
thread waits for the last one, publishing the pulse meanwhile. Nothing
here touches a ledger.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from dlengine import errors, transfer
from dlengine.engine import curl
from dlengine.ledger.models import Outcome, Task
from dlengine.ledger.states import ObjectState
from dlengine.sources.base import ObjectInfo
from dlengine.storage import layout, remote
from dlengine.supervisor import work

__all__ = ["Heartbeat", "LoopOptions", "run", "transfers"]

log = logging.getLogger("dlengine.dask")

PUBLISH_WAIT = 0.5  # seconds between a waiting batch's pulse publications and checks that the loop lives


@dataclass(frozen=True)
class LoopOptions:
    """The supervisor's settings the loop is built with."""

    segment_threshold: int = 64 << 20
    min_rate: int = 1024
    max_object_size: int | None = None


class Heartbeat(Protocol):
    """How a batch shows the supervisor it is alive (``dask_executor.Pulse``):
    ``beat`` when something moved (bytes arrived, an object ended; from any
    thread), ``carrying`` while an upload of ``size`` bytes runs (a long
    upload moves nothing the batch sees), ``publish`` regularly from the
    batch's own thread."""

    def beat(self) -> None: ...

    def carrying(self, key: int, size: int | None) -> None: ...

    def publish(self) -> None: ...


class _Quiet:
    """No supervisor to tell (a batch run directly)."""

    def beat(self) -> None:
        pass

    def carrying(self, key: int, size: int | None) -> None:
        pass

    def publish(self) -> None:
        pass


class LoopGone(errors.TransientError):
    default_message = "the libcurl loop of this Dask worker stopped"


class _Process:
    """What the batches of one worker process share: the loop and its
    thread, the routes of the objects it has, and the threads that upload
    (and run the objects the loop cannot do), grown to what the batches
    running at once need and kept (no thread is started per object)."""

    def __init__(self, options: LoopOptions) -> None:
        self.loop = curl.CurlLoop(self._fetched, options.segment_threshold, options.min_rate, options.max_object_size)
        self.thread = threading.Thread(target=self.loop.run, name="dask-curl", daemon=True)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._routes: dict[int, tuple[_Batch, int]] = {}
        self._bodies: dict[int, bytes] = {}  # held by the loop (``hold``) until their outcome comes
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._wanted = 0
        self.transfers = 0  # objects the loop finished (tests, bench)
        self.thread.start()

    def fetch(self, task: Task, ctx: work.Context, batch: _Batch, index: int) -> None:
        """Hand ``task`` to the loop under an id of this process (its
        outcome goes to ``batch.fetched``)."""
        with self._lock:
            local = next(self._ids)
            self._routes[local] = (batch, index)
        self.loop.submit(replace(task, id=local, name=str(local)), ctx)

    def hold(self, local: int, body: bytes) -> None:
        """From the loop's thread, just before the object's outcome: its
        verified bytes (``transfer.Job.hold``)."""
        self._bodies[local] = body  # (a dict's item set is atomic; only this thread adds)

    def _fetched(self, result: work.Result, sidecar: bool) -> None:
        """From the loop's thread: an object's outcome, to its batch (which
        queues its upload from here, or records it as final)."""
        outcome = result[0]
        body = self._bodies.pop(outcome.task_id, None)
        with self._lock:
            route = self._routes.pop(outcome.task_id, None)
            self.transfers += 1
        if route is not None:
            batch, index = route
            batch.fetched(index, outcome, body)

    def forget(self, batch: _Batch) -> None:
        with self._lock:
            self._routes = {k: v for k, v in self._routes.items() if v[0] is not batch}

    def soon(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def reserve(self, count: int) -> None:
        with self._lock:
            self._wanted += count
            while len(self._threads) < self._wanted:
                thread = threading.Thread(target=self._serve, name=f"dask-up-{len(self._threads)}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def release(self, count: int) -> None:
        with self._lock:
            self._wanted -= count

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except BaseException:  # the jobs report their own errors; keep the thread anyway
                log.exception("Dask upload thread")


_processes: dict[LoopOptions, _Process] = {}
_processes_lock = threading.Lock()


def _process(options: LoopOptions) -> _Process:
    with _processes_lock:
        proc = _processes.get(options)
        if proc is None or not proc.thread.is_alive():
            proc = _processes[options] = _Process(options)
        return proc


def transfers() -> int:
    """Objects the libcurl loops of this process have finished."""
    with _processes_lock:
        return sum(p.transfers for p in _processes.values())


def by_loop(task: Task) -> bool:
    """Whether the loop fetches ``task`` (after a destination check if it
    was handed out before)."""
    return curl.eligible(task.link) and task.bytes_per_hour <= 0 and remote.target_for(task) is not None


def run(
    tasks: list[Task],
    ctx: work.Context,
    options: LoopOptions,
    context_of: Callable[[Task], work.Context],
    heartbeat: Heartbeat | None = None,
) -> list[Outcome]:
    """Every task of one batch (one job), ``ctx.pool_size`` at a time;
    ``context_of`` gives the context of a task the loop does not fetch
    (both contexts' progress should reach ``heartbeat``)."""
    if not tasks:
        return []
    return _Batch(_process(options), ctx, context_of, heartbeat or _Quiet()).run(tasks)


class _Batch:
    def __init__(
        self, proc: _Process, ctx: work.Context, context_of: Callable[[Task], work.Context], heartbeat: Heartbeat
    ) -> None:
        self.proc = proc
        self.ctx = ctx
        self.context_of = context_of
        self.heartbeat = heartbeat
        self.loop_ctx = replace(ctx, hold=proc.hold)  # small objects' bytes stay in memory
        self._lock = threading.Lock()
        self._ended = threading.Event()  # every object final
        self._closed = False  # run has returned: late outcomes start nothing

    def run(self, tasks: list[Task]) -> list[Outcome]:
        """The batch's objects, ``window`` in flight: each final outcome
        starts the next object from the thread that reported it (the
        batch's own thread is not woken per object; it publishes the pulse
        and checks that the loop lives until the last one is final)."""
        self.tasks = tasks
        self.target = remote.target_for(tasks[0])
        window = max(1, min(self.ctx.pool_size, len(tasks)))
        self.outcomes: list[Outcome | None] = [None] * len(tasks)
        self._next, self._left = window, len(tasks)
        self.proc.reserve(window)
        try:
            for index in range(window):
                self._start(index)
            while not self._ended.wait(PUBLISH_WAIT):
                self.heartbeat.publish()
                if not self.proc.thread.is_alive():
                    raise LoopGone()
                # (a PUT loop that stops fails what it had: those outcomes come)
        finally:
            with self._lock:
                self._closed = True
            self.proc.release(window)
            self.proc.forget(self)
        return [o for o in self.outcomes if o is not None]

    def _final(self, index: int, outcome: Outcome) -> None:
        """From any thread: the object at ``index`` is final; the next one
        not started yet starts (here: a start only queues its work)."""
        with self._lock:
            if self._closed or self.outcomes[index] is not None:
                return
            self.outcomes[index] = outcome
            self._left -= 1
            start = self._next if self._next < len(self.tasks) else None
            if start is not None:
                self._next += 1
            if not self._left:
                self._ended.set()
        self.heartbeat.beat()
        if start is not None:
            try:
                self._start(start)
            except Exception as exc:  # noqa: BLE001 - errors are outcomes
                self._final(start, work.failure(self.tasks[start], exc, self.ctx))

    def fetched(self, index: int, outcome: Outcome, body: bytes | None) -> None:
        """From the loop's thread: the loop's outcome of the object at
        ``index`` (under its local id): a verified object's upload is
        queued, anything else is final."""
        task = self.tasks[index]
        try:  # (on the loop's thread: nothing may leave it)
            self.heartbeat.beat()
            if outcome.state is ObjectState.DONE and self.target is not None:
                local = outcome.task_id
                if body is None or not self._upload_soon(index, local, task, outcome, body):
                    self.proc.soon(lambda: self._upload(index, local, task, outcome, body))
                return
            final = replace(outcome, task_id=task.id)
        except Exception as exc:  # noqa: BLE001 - errors are outcomes
            final = work.failure(task, exc, self.ctx)
        self._final(index, final)

    def _start(self, index: int) -> None:
        task = self.tasks[index]
        if not by_loop(task):
            self.proc.soon(lambda: self._elsewhere(index, task))
        elif task.attempts > 1 or task.stored is not None:
            self.proc.soon(lambda: self._check_then_fetch(index, task))
        else:
            self.proc.fetch(task, self.loop_ctx, self, index)

    def _elsewhere(self, index: int, task: Task) -> None:
        """The present path: ``work.run_task`` on this thread."""
        outcome, _ = work.run_task(task, self.context_of(task))
        self._final(index, outcome)

    def _check_then_fetch(self, index: int, task: Task) -> None:
        """A row handed out before: the destination may hold it already."""
        from dlengine.sources import registry

        assert self.target is not None
        try:
            source, key = registry.resolve(task.link, pool_size=self.ctx.pool_size)
            held = work.already_stored(task, self.target, source, key, self.ctx)
        except BaseException as exc:  # noqa: BLE001 - errors are outcomes
            self._final(index, work.failure(task, exc, self.ctx))
            return
        if held is not None:
            self._final(index, held)
            return
        self.proc.fetch(task, self.loop_ctx, self, index)

    def _upload_soon(self, index: int, local: int, task: Task, fetched: Outcome, body: bytes) -> bool:
        """The bytes held in memory to the job's bucket without a thread
        blocked on them, where the target can (S3's presigned PUT loop):
        the final outcome comes from that loop's thread. False: nothing
        sent, ``_upload`` on a thread does it."""
        target = self.target
        assert target is not None

        def done(error: BaseException | None) -> None:
            self.heartbeat.carrying(local, None)
            try:
                if error is None:
                    outcome = replace(fetched, task_id=task.id, mountpath=target.uri)
                else:
                    outcome = work.failure(task, error, self.ctx)
            except Exception as exc:  # noqa: BLE001 - errors are outcomes
                outcome = work.failure(task, exc, self.ctx)
            self._final(index, outcome)

        self.heartbeat.carrying(local, fetched.size or 0)
        try:
            sent = target.put_soon(task.name, body, _checksum(fetched.checksum), _origin(task, fetched), done)
        except Exception as exc:  # noqa: BLE001 - refused before sending (the presigner's lookup): its outcome
            done(exc)
            return True
        if not sent:
            self.heartbeat.carrying(local, None)
        return sent

    def _upload(self, index: int, local: int, task: Task, fetched: Outcome, body: bytes | None) -> None:
        """The verified bytes to the job's bucket, as ``Receiver.end`` does
        for a write-through target (origin metadata, its MD5 checked by the
        store): from memory when the loop held them, else from the
        installed file, then removed with its work files."""
        assert self.target is not None
        path: Path | None = None
        data: Path | bytes
        if body is None:
            data = path = layout.object_path(self.ctx.workdir, task.provider, task.namespace, task.bucket, str(local))
        else:
            data = body
        self.heartbeat.carrying(local, fetched.size or 0)
        try:
            self.target.put(task.name, data, _checksum(fetched.checksum), _origin(task, fetched))
            outcome = replace(fetched, task_id=task.id, mountpath=self.target.uri)
        except BaseException as exc:  # noqa: BLE001 - errors are outcomes
            outcome = work.failure(task, exc, self.ctx)
        finally:
            self.heartbeat.carrying(local, None)
            if path is not None:
                path.unlink(missing_ok=True)
                transfer.drop_work(self.ctx.workdir, local)
        self._final(index, outcome)


def _origin(task: Task, fetched: Outcome) -> dict[str, str]:
    """What the stored copy records of its source (``transfer.origin_of``)."""
    info = ObjectInfo(task.link, fetched.size, fetched.etag, fetched.version, fetched.last_modified)
    return transfer.origin_of(task.link, info, fetched.size)


def _checksum(recorded: str | None) -> tuple[str, str] | None:
    """``md5:hex`` as the outcome records it -> (algorithm, hex)."""
    if not recorded:
        return None
    algo, _, digest = recorded.partition(":")
    return (algo, digest) if digest else None
