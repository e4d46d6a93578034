"""``dlengine download --hf-dataset/--hf-model REPO DST``: a HuggingFace
repository, or some of its files, into a bucket.

Into a local bucket (``ais://dst[/dir/]``): the files are listed here, at
submission, and become multi jobs of ``hf://`` links at the requested
revision, each row carrying the listing's size, blob id / LFS sha256 and
checksum. ``--max-job-bytes`` splits them by size: a file at least that big
gets a job of its own, the others fill jobs in name order. Sizes the
listing lacks (``--hf-file`` names files without listing) come from
parallel HEAD requests.

Into the repo's own local copy (``hf://org/name``): one backend job, its
rows listed here the same way (a ``sync`` removes vanished files here too).

Re-runs ask the Hub once: the commit the revision points to (one GET) is
recorded with the jobs (``Ledger.record_listing``, keyed by destination,
repo, revision and selection). At the same commit the files come from
those jobs' rows, without listing the tree; at a new commit the tree is
listed. Either way a file whose catalog entry has the same link, size and
blob id / sha256 (and whose copy is still there) goes in skipped, and a
job with nothing left to download finishes here, without a supervisor.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dlengine.cli import output
from dlengine.cli.download import add_common_fields, size_flag
from dlengine.client import Client
from dlengine.errors import PermanentError, SpecError
from dlengine.ledger.models import NewObject
from dlengine.ledger.states import ACTIVE_JOB_STATES
from dlengine.progress import human_bytes
from dlengine.providers import Provider
from dlengine.sources.base import ObjectInfo
from dlengine.spec import JobSpec, hflink, parse_job, validate_object_name
from dlengine.spec.model import BucketRef, HubOptions
from dlengine.spec.names import validate_bucket_name
from dlengine.spec.uri import parse_bucket_uri

if TYPE_CHECKING:  # imported where used: `dlengine run` and every other command skip urllib3 and the Hub
    from dlengine.sources import hf

HEAD_THREADS = 16
# ------------------------------------------------------------- the command


@dataclass(frozen=True)
class Planned:
    """One job of a plan: its request, and its rows when they were listed
    here (None: a multi job of named files, asked file by file)."""

    spec: JobSpec
    rows: list[NewObject] | None = None
    cursor: str | None = None  # a backend job's last listed key
    dispatched: bool = True  # False: a sync still has to run after the rows


@dataclass(frozen=True)
class Plan:
    jobs: list[Planned]
    listing: tuple[str, str, int] | None = None  # (key, commit, files) to record once all are created


def download(args: argparse.Namespace, client: Client) -> int:
    """Validate every job first, then submit them all; print every id.
    A supervisor starts only if some job has something left to download."""
    if args.src:
        print(f"dlengine: warning: SRC {args.src!r} is ignored with --hf-dataset/--hf-model", file=sys.stderr)
    if args.hf_auth:
        os.environ["HF_TOKEN"] = args.hf_auth  # the listing, in this process only (read before any use)
        from dlengine.sources import hf as hub

        hub.forget_token()
    planned = plan(args, client)
    if args.dry_run:
        return _dry_run(client, planned, args)
    ids = [_submit(client, job) for job in planned.jobs]
    if planned.listing is not None:
        key, commit, files = planned.listing
        client.ledger.record_listing(key, commit, ids, files)
    for job, job_id in zip(planned.jobs, ids, strict=True):
        if not job.dispatched:
            _sync_here(client, job_id)
    active = any(j.state in ACTIVE_JOB_STATES for j in client.ledger.jobs_by_id(ids))
    if not active or args.no_start:
        return _report(client, ids, args)
    if not (args.wait or args.progress):
        from dlengine.supervisor.background import start_background  # only when there is work

        start_background(client.settings, client.close)
        return _report(client, ids, args)
    from dlengine.cli.main import start_jobs

    with start_jobs(client, ids) as following:  # a few files: downloaded in this command
        return _report(client, ids, args, following.sleep)


def _dry_run(client: Client, planned: Plan, args: argparse.Namespace) -> int:
    """What would be submitted; nothing is recorded."""
    plans = [client.plan(job.spec) for job in planned.jobs]
    for one, job in zip(plans, planned.jobs, strict=True):
        if job.rows is not None:  # listed here: the objects and what is already held
            one["count"] = len(job.rows)
    if args.json:
        output.print_json(plans)
    for one in [] if args.json else plans:
        output.dry_run(one)
    return 0


def _with_token(job: dict[str, Any], args: argparse.Namespace) -> None:
    """``--hf-auth``: the token as the job's Authorization header, a secret
    header (its 0600 file, never the ledger), sent to the Hub's origin only."""
    if args.hf_auth:
        job.setdefault("headers", {})["Authorization"] = f"Bearer {args.hf_auth}"


def _submit(client: Client, job: Planned) -> str:
    if job.rows is None:
        return client.submit(job.spec, start=False)
    return client.submit_listed(job.spec, job.rows, cursor=job.cursor, dispatched=job.dispatched)


def _sync_here(client: Client, job_id: str) -> None:
    """A backend job's sync, as the dispatcher would run it after its last
    page: local copies of files gone from the repo are removed."""
    from dlengine.supervisor import backend

    record = client.ledger.job(job_id)
    while client.ledger.end_dispatch(record, lambda led: backend.sync_step(led, record)):
        pass


def _report(
    client: Client, ids: list[str], args: argparse.Namespace, sleep: Callable[[float], None] = time.sleep
) -> int:
    if not (args.wait or args.progress):
        print(json.dumps({"id": ids[-1], "ids": ids}) if args.json else "\n".join(ids))
        return 0
    failed = False
    for job_id in ids:
        print(job_id, file=sys.stderr)
        try:
            failed = output.follow(client, job_id, args.progress, args.interval, sleep) or failed
        except KeyboardInterrupt:
            output.interrupted(job_id, others=[i for i in ids if i != job_id])
            return 130
        if not args.json:
            output.outcome(client.status(job_id))
    if args.json:
        print(json.dumps({"id": ids[-1], "ids": ids, "jobs": [client.status(i) for i in ids]}))
    else:
        print("\n".join(ids))
    return 1 if failed else 0


# ----------------------------------------------------------------- planning


def plan(args: argparse.Namespace, client: Client) -> Plan:
    """The jobs of one ``download --hf-*``, validated, not yet submitted."""
    from dlengine.sources import hf

    repo_type, repo_id, flag = _repo(args)
    revision = args.hf_revision or hflink.DEFAULT_REVISION
    bucket, subdir = parse_bucket_uri(args.dst, "DST")
    if bucket.provider is Provider.HF:
        return _backend_plan(args, client, repo_type, repo_id, revision, bucket, subdir, flag)
    if args.sync:
        raise SpecError("--sync", "only a repo's own local copy (DST hf://org/name) can be synchronized")
    lister = hf.HubLister(repo_id, _options(repo_type, revision, args))
    if args.hf_file:
        return _named_plan(args, lister, bucket, subdir)
    return _listed_plan(args, client, lister, bucket, subdir, flag)


def _named_plan(args: argparse.Namespace, lister: hf.HubLister, bucket: BucketRef, subdir: str) -> Plan:
    """``--hf-file``: multi jobs of the named files, not listed."""
    files = _named_files(args)
    batches = _batches(_with_sizes(files, lister, "--hf-file") if args.max_job_bytes else files, args)
    jobs = [_multi_job(args, lister, bucket, subdir, b, (n, len(batches))) for n, b in enumerate(batches, 1)]
    return Plan([Planned(parse_job(job)) for job in jobs])


def _listed_plan(
    args: argparse.Namespace, client: Client, lister: hf.HubLister, bucket: BucketRef, subdir: str, flag: str
) -> Plan:
    """The repo's selected files, listed (or known from the last listing
    at this commit): multi jobs whose unchanged files are skipped."""
    from dlengine import listing

    key = listing_key(bucket, subdir, lister)
    files = _listed_files(client, lister, key, flag)
    if not files:
        raise SpecError(flag, f"{lister.describe()}: no file matches --hf-include/--hf-exclude")
    batches = _batches(_with_sizes(files, lister, flag) if args.max_job_bytes else files, args)
    prefix = subdir.rstrip("/") + "/" if subdir else ""
    planned = []
    for n, batch in enumerate(batches, 1):
        spec = parse_job(_multi_job(args, lister, bucket, subdir, batch, (n, len(batches))))
        rows = [listing.new_object(lister.link(f.key), f, name=prefix + f.key) for f in batch]
        planned.append(Planned(spec, _skipped_if_held(client, spec.bucket, rows)))
    return Plan(planned, (key, _commit(lister), len(files)))


def _backend_plan(
    args: argparse.Namespace,
    client: Client,
    repo_type: str,
    repo_id: str,
    revision: str,
    bucket: BucketRef,
    prefix: str,
    flag: str,
) -> Plan:
    """DST ``hf://org/name[/prefix]``: one backend job, listed here."""
    from dlengine import listing
    from dlengine.sources import hf

    spec = parse_job(_backend_job(args, repo_type, repo_id, revision, bucket, prefix))
    lister = hf.HubLister(repo_id, spec.options)
    key = listing_key(bucket, "", lister, spec.prefix, spec.suffix)
    files = _listed_files(client, lister, key, flag, spec.prefix, spec.suffix)
    rows = [listing.new_object(lister.link(f.key), f) for f in files if not f.key.endswith("/")]
    cursor = files[-1].key if files else None
    job = Planned(spec, _skipped_if_held(client, spec.bucket, rows), cursor=cursor, dispatched=not spec.sync)
    return Plan([job], (key, _commit(lister), len(rows)))


def listing_key(bucket: BucketRef, subdir: str, lister: hf.HubLister, prefix: str = "", suffix: str = "") -> str:
    """What a listing is of: destination, repo, revision and selection (the
    key a backend job's dispatcher uses too)."""
    from dlengine import listing

    return listing.listing_key(bucket.uri(), subdir, lister, prefix, suffix)


def _commit(lister: hf.HubLister) -> str:
    assert lister.commit is not None  # resolved by _listed_files
    return lister.commit


def _skipped_if_held(client: Client, bucket: BucketRef, rows: list[NewObject]) -> list[NewObject]:
    from dlengine import listing

    return listing.skip_unchanged(client.ledger, bucket.provider.value, bucket.namespace, bucket.name, rows)


def _batches(files: Sequence[ObjectInfo], args: argparse.Namespace) -> list[list[ObjectInfo]]:
    limit = _max_job_bytes(args)
    return [list(files)] if limit is None else split(files, limit)


def _repo(args: argparse.Namespace) -> tuple[str, str, str]:
    """(repo type, repo id, the flag that named it)."""
    repo_type, repo_id, flag = ("dataset", args.hf_dataset, "--hf-dataset")
    if not repo_id:
        repo_type, repo_id, flag = ("model", args.hf_model, "--hf-model")
    validate_bucket_name(repo_id, Provider.HF, flag)
    if args.hf_revision is not None and (not args.hf_revision.strip() or not args.hf_revision.isprintable()):
        raise SpecError("--hf-revision", f"invalid revision {args.hf_revision!r}")
    return repo_type, repo_id, flag


def _options(repo_type: str, revision: str, args: argparse.Namespace) -> HubOptions:
    if args.hf_file and (args.hf_include or args.hf_exclude):
        raise SpecError("--hf-file", "names the files itself: --hf-include/--hf-exclude do not apply")
    return {"repo_type": repo_type, "revision": revision, "include": args.hf_include, "exclude": args.hf_exclude}


def _named_files(args: argparse.Namespace) -> list[ObjectInfo]:
    files = []
    for path in dict.fromkeys(p.strip().lstrip("/") for p in args.hf_file):
        validate_object_name(path, "--hf-file")
        files.append(ObjectInfo(key=path))
    return files


def _listed_files(
    client: Client, lister: hf.HubLister, key: str, flag: str, prefix: str = "", suffix: str = ""
) -> list[ObjectInfo]:
    """The selected files at the commit the revision points to (one
    request): from the rows of the jobs that listed that commit last, else
    from the Hub's tree."""
    from dlengine import listing

    try:
        commit = lister.resolve()
        recorded = client.ledger.listing(key, commit)
        files = listing.infos_of(recorded, key) if recorded is not None else lister.files(prefix, suffix)
    except PermanentError as exc:
        raise SpecError(flag, str(exc)) from None
    files = sorted(files, key=lambda f: f.key)
    total = sum(f.size or 0 for f in files)
    known = " (listed at this commit before: not listed again)" if recorded is not None else ""
    print(f"{lister.describe()} is commit {commit}: {len(files)} files, {human_bytes(total)}{known}", file=sys.stderr)
    return files


def _max_job_bytes(args: argparse.Namespace) -> int | None:
    if not args.max_job_bytes:
        return None
    return size_flag(args.max_job_bytes, "--max-job-bytes", least=1)


def _with_sizes(files: Sequence[ObjectInfo], lister: hf.HubLister, field: str) -> list[ObjectInfo]:
    """Sizes the listing lacks, from HEAD requests to the Hub in parallel."""
    from dlengine.sources import hf

    missing = [f for f in files if f.size is None]
    if not missing:
        return list(files)
    source = hf.HFSource(pool_size=HEAD_THREADS)

    def head(info: ObjectInfo) -> ObjectInfo:
        from dlengine.sources import hf

        url = hflink.HubFile(lister.repo_type, lister.repo_id, lister.revision, info.key).resolve_url(hf.endpoint())
        try:
            return replace(info, size=source.stat(url).size)
        except PermanentError as exc:
            raise SpecError(field, f"{info.key}: {exc}") from None

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(HEAD_THREADS, len(missing))) as pool:
        sized = dict(zip([f.key for f in missing], pool.map(head, missing), strict=True))
    return [sized.get(f.key, f) for f in files]


def split(files: Sequence[ObjectInfo], limit: int) -> list[list[ObjectInfo]]:
    """Jobs of at most ``limit`` bytes: a file at least that big alone
    (biggest first), the others packed in name order."""
    big = sorted((f for f in files if (f.size or 0) >= limit), key=lambda f: (-(f.size or 0), f.key))
    batches = [[f] for f in big]
    current: list[ObjectInfo] = []
    total = 0
    for info in sorted((f for f in files if (f.size or 0) < limit), key=lambda f: f.key):
        if current and total + (info.size or 0) > limit:
            batches.append(current)
            current, total = [], 0
        current.append(info)
        total += info.size or 0
    if current:
        batches.append(current)
    return batches


def _multi_job(
    args: argparse.Namespace,
    lister: hf.HubLister,
    bucket: BucketRef,
    subdir: str,
    files: Sequence[ObjectInfo],
    part: tuple[int, int],
) -> dict[str, Any]:
    prefix = subdir.rstrip("/") + "/" if subdir else ""
    objects = {prefix + f.key: lister.link(f.key) for f in files}
    description = args.desc or f"{lister.describe()} -> {bucket.uri()}"
    if part[1] > 1:
        description += f" (part {part[0]}/{part[1]})"
    job: dict[str, Any] = {"type": "multi", "bucket": _bucket_dict(bucket), "objects": objects}
    add_common_fields(job, args)
    _with_token(job, args)
    job["description"] = description
    return job


def _backend_job(
    args: argparse.Namespace, repo_type: str, repo_id: str, revision: str, bucket: BucketRef, prefix: str
) -> dict[str, Any]:
    """DST ``hf://org/name[/prefix]``: the repo's local copy, as a backend job."""
    if bucket.name != repo_id:
        raise SpecError("DST", f"a repo downloads into a local bucket (ais://...) or its own copy hf://{repo_id}")
    if args.hf_file or args.max_job_bytes:
        raise SpecError("DST", "hf://org/name makes one backend job: select files with --hf-include/--hf-exclude")
    job: dict[str, Any] = {"type": "backend", "bucket": _bucket_dict(bucket), "prefix": prefix, "sync": args.sync}
    job.update(repo_type=repo_type, revision=revision, include=args.hf_include, exclude=args.hf_exclude)
    add_common_fields(job, args)
    _with_token(job, args)
    return job


def _bucket_dict(bucket: BucketRef) -> dict[str, str]:
    out = {"name": bucket.name, "provider": bucket.provider}
    if bucket.namespace:
        out["namespace"] = bucket.namespace
    return out
