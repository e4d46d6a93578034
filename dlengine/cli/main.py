"""Entry point: parse arguments, run one command, map errors to exit codes."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dlengine import __version__, startup
from dlengine.cli.parser import build_parser, parse
from dlengine.errors import (
    ConfigError,
    DlengineError,
    LedgerError,
    MissingExtraError,
    NotFoundError,
    SpecError,
    StateError,
    SupervisorError,
    SupervisorRunning,
)

if TYPE_CHECKING:  # the client, the spec parser, the output, the settings: imported by the commands using them
    from dlengine.client import Client
    from dlengine.config import Settings

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parse(parser, argv)
    if args.version:
        print(f"dlengine {__version__}")
        return EXIT_OK
    if not args.command:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return COMMANDS[args.command](args)
    except (SpecError, ConfigError, NotFoundError, StateError, MissingExtraError) as exc:
        print(f"dlengine: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("dlengine: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (LedgerError, SupervisorError) as exc:
        print(f"dlengine: {exc}", file=sys.stderr)  # names the file, or the thread and the reason
        return EXIT_INTERNAL
    except DlengineError as exc:  # a source's answer (denied, not found, unreachable): what it said
        print(f"dlengine: error: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except ValueError as exc:
        print(f"dlengine: internal error: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except OSError as exc:  # a file of the home (the lock, the log) that cannot be opened: name it
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"dlengine: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_INTERNAL


def exit_now(code: int) -> None:
    """End the process at once when only this thread is left: the
    interpreter's teardown (freeing every module, closing the ledger with
    a checkpoint of its WAL) was ~30-50 ms of a short command, and the
    ledger's commits, files and logs are already where they belong. Output
    and logs are flushed first, coverage saved when the suite measures it.
    Returns when other threads still run (they are waited for as usual)."""
    import threading

    if threading.active_count() > 1:
        return
    from dlengine.process import exit_at_once

    exit_at_once(code)


def _client(reading: bool = False) -> Client:
    """``reading``: a command that only reads (or acts on a job it must
    find first): a home with no ledger is read as empty, nothing created,
    and a note says so (a mistyped DLENGINE_HOME is the likely cause)."""
    from dlengine.client import Client

    client = Client(reading=reading)
    home = client.settings.ledger_path.parent
    if reading and not client.has_ledger and (home.is_dir() or not home.exists()):  # (a file: the error says it)
        print(f"dlengine: note: {home} has no ledger (DLENGINE_HOME): no job was ever submitted there", file=sys.stderr)
    return client


def _submit_and_report(client: Client, job: Any, args: argparse.Namespace) -> int:
    from dlengine.cli import output
    from dlengine.spec import JobSpec, parse_job

    if args.dry_run:
        plan = client.plan(job)
        output.print_json(plan) if args.json else output.dry_run(plan)
        return EXIT_OK
    follow = bool(args.wait or args.progress)
    if not isinstance(job, JobSpec):
        job = parse_job(job)  # once, for the twins and the submit
    twins = client.active_twins(job)
    job_id = client.submit(job, start=not (args.no_start or follow))
    for twin in twins:
        print(
            f"dlengine: note: {twin} (still active) was submitted with the same request, and both download"
            f" every object: follow it with `dlengine wait {twin}`, or stop one (`dlengine stop {job_id}`)",
            file=sys.stderr,
        )
    if not follow:
        print(json.dumps({"id": job_id}) if args.json else job_id)
        if not args.json and sys.stderr.isatty():
            output.submitted(client.status(job_id, only_active=True))
        return EXIT_OK
    if not args.json:
        print(job_id, file=sys.stderr)
    if args.no_start:
        return follow_and_report(client, job_id, args, print_id=True)
    with start_jobs(client, [job_id]) as following:
        return follow_and_report(client, job_id, args, print_id=True, following=following)


class Following:
    """How a command follows the jobs it started: the pause between looks
    at a job (a job run in this process wakes it when it ends), and what to
    do once they ended (stop this process's workers before the report)."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep, ended: Callable[[], None] = lambda: None) -> None:
        self.sleep = sleep
        self.ended = ended


@contextlib.contextmanager
def start_jobs(client: Client, job_ids: list[str]) -> Iterator[Following]:
    """Jobs that the command follows: a few objects downloaded here
    (``supervisor.inline``: no supervisor, no worker processes), others by
    a background supervisor."""
    from dlengine.supervisor import inline  # the data path: only when there is work

    run = inline.start(client.settings, client.ledger, job_ids)
    if run is None:
        from dlengine.supervisor.background import start_background

        start_background(client.settings, client.close)  # (its ledger reopened to follow)
        yield Following()
        return
    with run:
        yield Following(run.sleep, run.close)


def follow_and_report(
    client: Client,
    job_id: str,
    args: argparse.Namespace,
    *,
    print_id: bool,
    following: Following | None = None,
) -> int:
    """Follow a job until it ends, then say where its objects are and which
    failed (stderr); the id (or, with --json, the status) on stdout. Ctrl-C
    stops following only: the job goes on, and the message says so."""
    from dlengine.cli import output

    following = following or Following()
    startup.done()  # (the command has started: what follows may run for hours)
    try:
        failed = output.follow(client, job_id, args.progress, args.interval, following.sleep)
    except KeyboardInterrupt:
        output.interrupted(job_id)
        return EXIT_INTERRUPTED
    following.ended()
    status = client.status(job_id)
    if args.json:
        status.pop("spec", None)  # as show ID --json
        print(json.dumps(status))
    else:
        output.outcome(status)
        if print_id:
            print(job_id)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    try:  # bytes: JSON's own detection reads UTF-8 (with or without a BOM), UTF-16 and UTF-32
        data = sys.stdin.buffer.read() if args.file == "-" else _read_bytes(args.file)
    except OSError as exc:
        raise SpecError("file", f"cannot read {args.file}: {exc.strerror}") from None
    from dlengine.spec import load_job

    spec = load_job(data)
    return _submit_and_report(_client(), spec, args)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def cmd_download(args: argparse.Namespace) -> int:
    from dlengine.cli import hfflags

    if args.unexpected:
        # the shell expanded an unquoted {a..b} (or a glob) into several words
        raise SpecError(
            "SRC",
            f"too many arguments ({len(args.unexpected) + 2} where SRC DST was expected): enclose source in"
            ' quotation marks, e.g. "http://host/shard-{001..010}.tar"',
        )
    from dlengine.cli.download import check_limit_flags, job_from_args

    check_limit_flags(args)  # (--blob-threshold: checked, then left to the data path)
    if hfflags.requested(args):
        from dlengine.cli import hf  # the Hub's planning: only for --hf-* downloads

        return hf.download(args, _client())
    hfflags.check_plain(args)
    return _submit_and_report(_client(), job_from_args(args), args)


def cmd_show(args: argparse.Namespace) -> int:
    from dlengine.cli import output

    client = _client(reading=True)
    if args.progress:
        if not args.id:
            raise SpecError("--progress", "needs a job ID (dlengine show ID --progress)")
        return cmd_wait(args)
    if args.id:
        status = client.status(args.id)
        if args.json:
            status.pop("spec", None)
            output.print_json(status)
        else:
            output.job_detail(status, args.verbose)
        return EXIT_OK
    jobs = client.list(args.regex, active_only=not args.all)
    if args.json:
        output.print_json(jobs)
    else:
        output.job_list(jobs)
    return EXIT_OK


def _selected(client: Client, args: argparse.Namespace, *, active: bool) -> list[str]:
    """The job ids an abort (active jobs) or rm (ended jobs) acts on: ID,
    or every job that --all / --regex selects."""
    if args.id and (args.all or args.regex):
        raise SpecError("ID", "give a job ID, or --all / --regex, not both")
    if args.id:
        return [args.id]
    if not (args.all or args.regex):
        raise SpecError("ID", "is required (or --all, or --regex R)")
    jobs = client.list(args.regex, active_only=active)
    chosen = [j for j in jobs if (j["state"] in ("pending", "running")) == active]
    if active:
        return [j["id"] for j in chosen]
    for job in chosen:  # an aborted job whose downloads still stop: not ended yet, not a reason to stop half-way
        if job["finished_time"] is None:
            print(f"dlengine: note: {job['id']} is being aborted (downloads still stopping): left", file=sys.stderr)
    return [j["id"] for j in chosen if j["finished_time"] is not None]


def cmd_abort(args: argparse.Namespace) -> int:
    client = _client(reading=True)
    ids = _selected(client, args, active=True)
    for job_id in ids:
        if client.abort(job_id):
            print(f"aborted {job_id}")
        else:
            print(f"{job_id} had already ended; nothing to abort")
    if not ids:
        print("no active job matches; nothing to abort", file=sys.stderr)
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    client = _client(reading=True)
    ids = _selected(client, args, active=False)
    for job_id in ids:
        client.remove(job_id)
        print(f"removed {job_id}")
    if not ids:
        print("no finished or aborted job matches; nothing to remove", file=sys.stderr)
    return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    """Follow a job (again): ``dlengine wait ID`` after a Ctrl-C."""
    client = _client(reading=True)
    client.summary(args.id)  # an unknown id is exit 2 before anything is drawn
    return follow_and_report(client, args.id, args, print_id=False)


def cmd_retry(args: argparse.Namespace) -> int:
    count = _client(reading=True).retry(args.id, start=not args.no_start)
    print(f"re-queued {count} failed or aborted object(s) of {args.id}")
    return EXIT_OK


def _with_executor(args: argparse.Namespace) -> Settings:
    """The settings, with ``--executor`` over the configured executor."""
    from dlengine.config import load_settings

    settings = load_settings()
    if not args.executor:
        return settings
    import dataclasses  # (not for every run: records need no dataclasses module, dlengine.records)

    return dataclasses.replace(settings, executor=args.executor)


def _log_to_stderr(quiet: bool) -> None:
    """The log of run and serve (the other commands log nothing)."""
    import logging

    from dlengine.logredact import install_log_redaction

    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    install_log_redaction()


def cmd_run(args: argparse.Namespace) -> int:
    from dlengine.supervisor.supervisor import Supervisor

    _log_to_stderr(args.quiet)
    supervisor = Supervisor(_with_executor(args), linger=args.linger)
    supervisor.install_signal_handlers()
    try:
        code = supervisor.run()
    except SupervisorRunning as exc:
        print(f"dlengine: {exc}; nothing to do", file=sys.stderr)
        return EXIT_OK
    if supervisor.stopped_by is None:
        return code
    _say_what_is_left(_client(), supervisor.stopped_by.name)
    return EXIT_INTERRUPTED if supervisor.stopped_by.name == "SIGINT" else code  # (a SIGTERM: a service's stop)


def _say_what_is_left(client: Client, signal_name: str) -> None:
    """After a run stopped by a signal: what it left, and who takes it up."""
    left = client.ledger.busy_job_ids()
    if not left:
        print(f"dlengine: run stopped by {signal_name}; no job is left", file=sys.stderr)
        return
    shown = ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
    print(
        f"dlengine: run stopped by {signal_name}: {len(left)} job(s) not done ({shown}): they go on at the next"
        " `dlengine run`",
        file=sys.stderr,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from dlengine.api.server import serve

    _log_to_stderr(args.quiet)
    try:
        return serve(_with_executor(args), args.listen, args.token_file)
    except SupervisorRunning as exc:
        print(f"dlengine: {exc}; stop it (or let it finish) and start serve again", file=sys.stderr)
        return EXIT_INTERNAL


def cmd_ls(args: argparse.Namespace) -> int:
    from dlengine.cli import output

    client = _client(reading=True)
    if args.bucket is None:  # the buckets, as `ais ls`
        if args.remote or args.long:
            raise SpecError("bucket", "--remote and -l list one bucket: name it (e.g. s3://bkt)")
        buckets = client.buckets()
        output.print_json(buckets) if args.json else output.bucket_table(buckets)
        return EXIT_OK
    entries = client.list_remote(args.bucket) if args.remote else client.list_bucket(args.bucket)
    if args.json:
        keys = ("name", "size", "path", "stored_time", "source", "etag", "version")
        shown: Iterable[Mapping[str, object]] = entries
        output.print_json([{k: e[k] for k in keys if k in e} for e in shown])
    else:
        output.bucket_listing(entries, long=args.long)
    return EXIT_OK


def cmd_bucket(args: argparse.Namespace) -> int:
    from dlengine.cli import output

    client = _client()
    if args.bucket_command == "ls":
        buckets = client.buckets()
        output.print_json(buckets) if args.json else output.bucket_table(buckets)
        return EXIT_OK
    if args.bucket_command == "rm":
        for uri in args.bucket:
            removed = client.remove_bucket(uri)
            print(f"removed {uri} ({removed} stored object(s) deleted{_kept_directory(uri)})")
        return EXIT_OK
    for uri, created in zip(args.bucket, client.create_buckets(args.bucket, args.ignore_error), strict=True):
        print(f"{'created' if created else 'exists:'} {uri}")
    return EXIT_OK


def _kept_directory(uri: str) -> str:
    """Of a removed directory bucket still there: why (the user's files)."""
    from dlengine.providers import Provider
    from dlengine.spec.uri import parse_bucket_uri

    bucket, _ = parse_bucket_uri(uri)
    if bucket.provider is Provider.DIR and os.path.isdir(bucket.name):
        return f"; {bucket.name} kept: it holds files dlengine did not store"
    return ""


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "submit": cmd_submit,
    "download": cmd_download,
    "show": cmd_show,
    "abort": cmd_abort,
    "stop": cmd_abort,
    "rm": cmd_rm,
    "wait": cmd_wait,
    "retry": cmd_retry,
    "run": cmd_run,
    "serve": cmd_serve,
    "ls": cmd_ls,
    "bucket": cmd_bucket,
}
