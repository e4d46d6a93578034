"""The Python API: submit, status, list, abort, remove, retry, wait, and
local buckets. The CLI and the HTTP server both go through here."""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from dlengine import jobsecrets
from dlengine.config import Settings, load_settings, make_home
from dlengine.errors import BucketExistsError, NotFoundError, SpecError
from dlengine.ledger import jobs
from dlengine.ledger.ledger import Ledger
from dlengine.ledger.models import NewJob, NewObject
from dlengine.ledger.states import ACTIVE_JOB_STATES
from dlengine.providers import WRITE_THROUGH, Provider
from dlengine.spec import (
    JobSpec,
    JobType,
    ObjectRef,
    derive_name,
    dump_spec,
    iter_objects,
    load_job,
    object_count,
    parse_job,
    parse_template,
)
from dlengine.spec.model import BucketRef
from dlengine.spec.names import join_subdir
from dlengine.spec.uri import parse_bucket_uri
from dlengine.status import JobSummary, ShownStatus, full, iso, summary
from dlengine.storage import identity, layout
from dlengine.storage.mountpaths import bucket_placer

JobInput = JobSpec | dict[str, Any] | str | bytes  # a spec, or its JSON (the CLI and API input)


class NamedLink(TypedDict):
    name: str
    link: str


class JobPlan(TypedDict):
    """What ``submit`` would record (``--dry-run``)."""

    type: str
    count: int | None
    first: NamedLink | None
    last: NamedLink | None
    bucket: str
    destination: list[str]
    description: str


class ListedObject(TypedDict):
    """One object of ``ls``: a cloud bucket's as its provider lists it
    (``--remote``), or a local bucket's as the catalog holds it, with the
    keys only the catalog has."""

    name: str
    size: int | None  # a provider may not say
    etag: str | None
    version: str | None
    path: NotRequired[str]  # the stored file
    source: NotRequired[str]  # the link it came from
    checksum: NotRequired[str | None]  # "algo:hex"
    stored_time: NotRequired[str | None]  # ISO 8601, UTC
    mountpath: NotRequired[str]


class BucketInfo(TypedDict):
    """One bucket of ``bucket ls``: what this home stores of it."""

    uri: str
    provider: str
    namespace: str
    name: str
    objects: int
    size: int  # bytes
    destination: list[str]  # where its objects are stored


class Client:
    """Talks to the ledger of one home. Cheap to create; not thread-safe
    (make one per thread)."""

    def __init__(self, settings: Settings | None = None, *, reading: bool = False) -> None:
        """``reading``: for commands that only read (``show``, ``ls``, and
        ``abort``/``rm``/``retry``/``wait`` of a job id): a home with no
        ledger yet is read as an empty one, and nothing is created (a
        mistyped DLENGINE_HOME would otherwise be made a new, empty home)."""
        self.settings = settings or load_settings()
        self._ledger: Ledger | None = None
        self._reading = reading

    @property
    def has_ledger(self) -> bool:
        """Whether the home has a ledger (a job was ever submitted there)."""
        return self.settings.ledger_path.exists()

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            path = self.settings.ledger_path
            if self._reading and not path.exists():
                if path.parent.exists() and not path.parent.is_dir():
                    make_home(path.parent)  # (the error that names DLENGINE_HOME)
                self._ledger = Ledger.empty()
            else:
                self._ledger = Ledger.open(path)
        return self._ledger

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    # jobs

    def submit(self, job: JobInput, *, start: bool = True, directories: bool = True) -> str:
        """Validate and record a job; start a background supervisor unless
        ``start`` is False or one runs already. Returns the job id.
        ``directories=False`` (the HTTP API) refuses a directory destination:
        a client must not pick where on this machine files are written."""
        spec = _as_spec(job)
        if spec.bucket.provider is Provider.DIR and not directories:
            raise SpecError(
                "bucket.provider",
                "a local directory ('dir') is a destination of the command line only, not of the HTTP API"
                " (it would let a client write wherever this user can): use an ais:// bucket",
            )
        self._check(spec)
        place = self._placer(spec)
        # range and backend jobs are filled in later, page by page, by the
        # supervisor's dispatcher: submitting stays O(1); a range of a few
        # objects is inserted now, so that a command may run it itself
        # (supervisor.inline)
        count = object_count(spec)
        small_range = spec.type is JobType.RANGE and count is not None and count <= self.settings.inline_objects
        later = spec.type is JobType.BACKEND or (spec.type is JobType.RANGE and not small_range)
        objects = iter(()) if later else ((o.name, o.link) for o in iter_objects(spec))
        record = _new_job(spec)
        total = -1 if count is None else count  # a backend job's: unknown until listed (AIStore's -1)
        job_id = self._with_secrets(
            spec, record, lambda: self.ledger.create_job(record, objects, place, dispatched=not later, total=total)
        )
        if start:
            _start_background(self.settings, self.close)
        return job_id

    def active_twins(self, job: JobInput) -> builtins.list[str]:
        """Ids of active jobs recorded from the same request (the same
        command again after a Ctrl-C of ``--wait``): each would download
        every object."""
        text = dump_spec(_as_spec(job))
        return [j.id for j in self.ledger.jobs(None, active_only=True) if j.spec == text]

    def submit_listed(
        self, spec: JobSpec, objects: Sequence[NewObject], *, cursor: str | None = None, dispatched: bool = True
    ) -> str:
        """Record a job whose objects were listed by the caller, some of
        them already skipped (``listing.skip_unchanged``): finished at once
        if nothing is left to download. Starts no supervisor: the caller
        does when ``pending`` says there is work."""
        self._check(spec)
        place = self._placer(spec)
        record = _new_job(spec)
        return self._with_secrets(
            spec,
            record,
            lambda: self.ledger.create_listed_job(record, objects, place, cursor=cursor, dispatched=dispatched),
        )

    def _check(self, spec: JobSpec) -> None:
        if self.settings.remote_executor:
            _check_executor(spec)
        self._claim_mountpaths()
        if spec.bucket.provider is Provider.DIR:
            self._claim_directory(Path(spec.bucket.name))

    def _placer(self, spec: JobSpec) -> Callable[[str], str]:
        """name -> mountpath of a job's objects (a directory destination is its own)."""
        bucket = spec.bucket
        return bucket_placer([str(p) for p in self.settings.mountpaths], bucket.provider, bucket.name, bucket.uri())

    def _with_secrets(self, spec: JobSpec, record: NewJob, create: Callable[[], str]) -> str:
        # secrets first: a worker claiming the first object must find them,
        # and a crash before the commit leaves an orphan file, not a job without them
        jobsecrets.save(self.settings.secrets_dir, record.id, spec.secret_headers)
        try:
            return create()
        except BaseException:
            jobsecrets.remove(self.settings.secrets_dir, record.id)
            raise

    def _claim_mountpaths(self) -> None:
        """Refuse to submit into mountpaths that another home uses."""
        home = self.ledger.home_id()
        for mountpath in self.settings.mountpaths:
            identity.claim(mountpath, home, self.settings.home)

    def _claim_directory(self, directory: Path) -> None:
        """A directory destination is its own mountpath (work files beside
        the objects, on the same file system)."""
        self._check_directory(directory)
        identity.claim(directory, self.ledger.home_id(), self.settings.home, "bucket.name")

    def _check_directory(self, directory: Path) -> None:
        """A directory destination may not overlap the home or a mountpath:
        an object named like the ledger, or a bucket of another job, would
        be overwritten. Nor be, or lie under, a file (as --dry-run says too)."""
        existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise SpecError("bucket.name", f"cannot use {directory} as a directory: {existing} is not a directory")
        for taken in (self.settings.home, *self.settings.mountpaths):
            if _overlap(directory, taken):
                raise SpecError(
                    "bucket.name",
                    f"directory {directory} overlaps {taken} (dlengine's home or a mountpath): choose another"
                    " directory, or use an ais:// bucket",
                )

    def plan(self, job: JobInput) -> JobPlan:
        """What ``submit`` would record, without recording anything (``--dry-run``):
        type, object count, first and last objects, destination."""
        spec = _as_spec(job)
        if self.settings.remote_executor:
            _check_executor(spec)
        if spec.bucket.provider is Provider.DIR:
            self._check_directory(Path(spec.bucket.name))
        first = next(iter_objects(spec), None)
        last = _last_object(spec) or first
        return {
            "type": spec.type.value,
            "count": object_count(spec),
            "first": None if first is None else {"name": first.name, "link": first.link},
            "last": None if last is None else {"name": last.name, "link": last.link},
            "bucket": spec.bucket.uri(),
            "destination": self.destinations(spec.bucket.provider.value, spec.bucket.namespace, spec.bucket.name,
                                              spec.type.value),
            "description": spec.description,
        }  # fmt: skip

    def destinations(self, provider: str, namespace: str, bucket: str, job_type: str = "") -> list[str]:
        """Where a bucket's objects are stored: its directory under each
        mountpath, the directory itself (``dir``), or the cloud bucket a
        single/multi/range job writes through."""
        if provider == Provider.DIR.value:
            return [bucket]
        if provider in {p.value for p in WRITE_THROUGH} and job_type != JobType.BACKEND.value:
            return [f"{Provider(provider).scheme}://{bucket}"]
        return [str(layout.bucket_dir(mp, provider, namespace, bucket)) for mp in self.settings.mountpaths]

    def status(self, job_id: str, *, only_active: bool = False) -> ShownStatus:
        """The status object of a job; ``only_active`` leaves out the lists
        of finished and failed objects (AIStore's ``only_active_tasks``)."""
        job = self.ledger.job(job_id)
        status = full(self.ledger, job, tasks_limit=0) if only_active else full(self.ledger, job)
        return {**status, "destination": self.destinations(job.provider, job.namespace, job.bucket, job.type)}

    def summary(self, job_id: str) -> JobSummary:
        return summary(self.ledger.job(job_id))

    def progress(self, job_id: str) -> JobSummary:
        """The summary, with the bytes of objects in flight counted in
        ``bytes_done`` (a 50 MiB file moves the bar while it downloads)."""
        job = self.ledger.job(job_id)
        current = summary(job)
        current["bytes_done"] += self.ledger.running_bytes(job.seq)
        return current

    def list(self, regex: str | None = None, active_only: bool = False) -> list[JobSummary]:
        return [summary(j) for j in self.ledger.jobs(regex, active_only)]

    def abort(self, job_id: str) -> bool:
        """Abort a job; False if it had already ended. Work files of its
        queued objects go now; running ones are removed by their workers."""
        aborted = self.ledger.abort(job_id)
        self._remove_work_files(job_id)
        return aborted

    def remove(self, job_id: str) -> None:
        self.ledger.remove(job_id)
        jobsecrets.remove(self.settings.secrets_dir, job_id)

    def retry(self, job_id: str, *, start: bool = True) -> int:
        count = self.ledger.retry(job_id)
        if count and start:
            _start_background(self.settings, self.close)
        return count

    def wait(
        self,
        job_id: str,
        *,
        poll: float = 0.5,
        timeout: float | None = None,
        on_progress: Callable[[JobSummary], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> JobSummary:
        """Block until the job ends; returns its final summary. Asked at
        ``poll`` seconds, the first times sooner (from 10 ms, doubling): a
        job of a few small files ends well before half a second. ``sleep``:
        the pause between looks (a job run in this process wakes it when it
        ends)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = min(poll, 0.01)
        while True:
            current = self.progress(job_id)
            if on_progress is not None:
                on_progress(current)
            if current["state"] not in ACTIVE_JOB_STATES:
                return current
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {current['state']} after {timeout}s")
            sleep(pause)
            pause = min(poll, pause * 2)

    def _remove_work_files(self, job_id: str) -> None:
        for row_id, mountpath in self.ledger.aborted_work(self.ledger.job(job_id).seq):
            layout.remove_work_files(Path(mountpath), row_id)

    # buckets

    def create_bucket(self, uri: str, exist_ok: bool = False) -> bool:
        """Create a local bucket; if it exists already, raise
        ``BucketExistsError`` (``exist_ok``: return False instead)."""
        return self.create_buckets([uri], exist_ok)[0]

    def create_buckets(self, uris: Sequence[str], exist_ok: bool = False) -> builtins.list[bool]:
        """Create local buckets, each created or not as ``create_bucket``
        says; every one is checked before any is created (one that exists,
        unless ``exist_ok``, or is named twice, or a directory that cannot
        be a bucket: none is created)."""
        buckets = [_whole_bucket(uri) for uri in uris]
        seen: set[str] = set()
        for uri, bucket in zip(uris, buckets, strict=True):
            if bucket.provider is Provider.DIR:
                self._check_directory(Path(bucket.name))
            named_before = bucket.uri() in seen
            seen.add(bucket.uri())
            exists = named_before or self.ledger.bucket_exists(bucket.provider, bucket.namespace, bucket.name)
            if exists and not exist_ok:
                raise BucketExistsError(f'bucket "{uri}" already exists')  # (the words of ``ais bucket create``)
        return [self._create_bucket(bucket) for bucket in buckets]

    def _create_bucket(self, bucket: BucketRef) -> bool:
        created = self.ledger.ensure_bucket(bucket.provider, bucket.namespace, bucket.name)
        if bucket.provider is Provider.DIR:
            self._claim_directory(Path(bucket.name))
            return created
        for mountpath in self.settings.mountpaths:
            layout.bucket_dir(mountpath, bucket.provider, bucket.namespace, bucket.name).mkdir(
                parents=True, exist_ok=True
            )
        return created

    def list_bucket(self, uri: str, prefix: str = "") -> Iterator[ListedObject]:
        """Objects stored in a bucket (from the catalog), by name."""
        bucket, path = parse_bucket_uri(uri)
        if not self.ledger.bucket_exists(bucket.provider, bucket.namespace, bucket.name):
            raise NotFoundError(f"bucket {bucket.uri()} not found")
        # the local copy only: objects written through to the cloud are not here
        for entry in self.ledger.catalog(bucket.provider, bucket.namespace, bucket.name, prefix or path):
            stored = layout.object_path(
                Path(entry.mountpath), entry.provider, entry.namespace, entry.bucket, entry.name
            )
            yield {
                "name": entry.name, "size": entry.size, "path": str(stored), "source": entry.source,
                "etag": entry.etag, "version": entry.version, "checksum": entry.checksum,
                "stored_time": iso(entry.stored_time), "mountpath": entry.mountpath,
            }  # fmt: skip

    def buckets(self) -> builtins.list[BucketInfo]:
        """Every bucket this home knows, with its stored objects and bytes."""
        out: builtins.list[BucketInfo] = []
        for provider, namespace, name, count, size in self.ledger.buckets():
            ref = BucketRef(name=name, provider=Provider(provider), namespace=namespace)
            out.append({
                "uri": ref.uri(), "provider": provider, "namespace": namespace, "name": name,
                "objects": count, "size": size, "destination": self.destinations(provider, namespace, name, "backend"),
            })  # fmt: skip
        return out

    def remove_bucket(self, uri: str) -> int:
        """Delete a bucket's stored objects, catalog and record (refused while
        a job of it is active); returns how many objects were deleted. In a
        directory destination only what dlengine made goes: the files it
        stored, its work directory and its mark, then the directory if
        nothing else is left (the user's files stay, and the directory)."""
        bucket = _whole_bucket(uri)
        key = (bucket.provider.value, bucket.namespace, bucket.name)
        if not self.ledger.bucket_exists(*key):
            raise NotFoundError(f"bucket {bucket.uri()} not found")
        entries = self.ledger.bucket_contents(*key)
        deleted = layout.remove_stored(entries)
        if bucket.provider is not Provider.DIR:
            mountpaths = {*self.settings.mountpaths, *(Path(e.mountpath) for e in entries if "://" not in e.mountpath)}
            for mountpath in mountpaths:
                layout.remove_bucket_dir(layout.bucket_dir(mountpath, *key))
        self.ledger.remove_bucket(*key)
        if bucket.provider is Provider.DIR:
            directory = Path(bucket.name)
            identity.release(directory, self.ledger.home_id())
            layout.remove_directory_bucket(directory)
        return deleted

    def list_remote(self, uri: str, prefix: str = "") -> Iterator[ListedObject]:
        """Objects of a cloud bucket (``s3://``, ``gs://``, ``az://``), listed
        by its provider, by name."""
        bucket, path = parse_bucket_uri(uri)
        from dlengine.storage import remote  # imports every source: only when needed

        for info in remote.list_remote(bucket.provider, bucket.name, prefix or path):
            yield {"name": info.key, "size": info.size, "etag": info.etag, "version": info.version}


def _whole_bucket(uri: str) -> BucketRef:
    """The bucket a ``bucket create``/``rm`` acts on: a path inside it is
    refused, not dropped (``rm ais://abc/sub`` deleted all of ais://abc)."""
    bucket, path = parse_bucket_uri(uri)
    if path.strip("/"):
        raise SpecError(
            "bucket",
            f"{uri!r} names {path!r} inside the bucket {bucket.uri()}: buckets are created and removed whole"
            f" (give {bucket.uri()})",
        )
    return bucket


def _new_job(spec: JobSpec) -> NewJob:
    bucket = spec.bucket
    return NewJob(
        id=jobs.new_job_id(),
        type=spec.type.value,
        description=spec.description,
        provider=bucket.provider.value,
        namespace=bucket.namespace,
        bucket=bucket.name,
        spec=dump_spec(spec),
        conns=spec.limits.connections,
        bytes_per_hour=spec.limits.bytes_per_hour,
        timeout=spec.timeout,
    )


def _last_object(spec: JobSpec) -> ObjectRef | None:
    """The last object of a job, without expanding a range."""
    if spec.type is JobType.MULTI and spec.objects:
        return spec.objects[-1]
    if spec.type is JobType.RANGE:
        link = parse_template(spec.template).last()
        return ObjectRef(join_subdir(spec.subdir, derive_name(link)), link)
    return None


def _overlap(a: Path, b: Path) -> bool:
    """Whether one directory is the other or inside it (symlinks resolved)."""
    ra, rb = os.path.realpath(a), os.path.realpath(b)
    return os.path.commonpath([ra, rb]) in (ra, rb)


def _as_spec(job: JobInput) -> JobSpec:
    if isinstance(job, JobSpec):
        return job
    if isinstance(job, str | bytes):
        return load_job(job)
    return parse_job(job)


def _check_executor(spec: JobSpec) -> None:
    """A remote executor's hosts cannot write into this machine's disks:
    refuse such a job before it is recorded."""
    from dlengine.supervisor.dask_executor import refusal

    reason = refusal(spec.bucket.provider, spec.type.value)
    if reason:
        raise SpecError("bucket", reason)


def _start_background(settings: Settings, release: Callable[[], None]) -> None:
    """``release``: closes the client's ledger (reopened when next asked
    for): the supervisor may then be forked from this process."""
    # imported here: a CLI call that only reads the ledger does not start one
    from dlengine.supervisor.background import start_background

    start_background(settings, release)
