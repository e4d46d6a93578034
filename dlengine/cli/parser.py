"""Argument parsing: every subcommand and its help text."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from dlengine.cli import hfflags
from dlengine.errors import ConfigError

EPILOG = """\
exit codes: 0 success; 1 a job ended with failed objects or was aborted;
2 bad input (job spec, arguments, unknown id); 3 internal error; 130 Ctrl-C.

environment: DLENGINE_HOME (ledger, config, default mountpath; ~/.dlengine),
DLENGINE_MOUNTPATHS (data directories, ':'-separated).

examples:
  dlengine download "http://host/abc/shard-{001..010}.tar" ais://abc --wait
  id=$(dlengine submit job.json) && dlengine show "$id"
  dlengine run          # in cron: process queued jobs, then exit
  dlengine ls ais://abc
"""


def _follow_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true", help="follow the job until it ends; exit 1 if it had failures")
    p.add_argument("--progress", action="store_true", help="like --wait, with a progress bar on a terminal")
    _interval_flag(p, "--progress-interval")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the bare job id")
    p.add_argument("--no-start", action="store_true", help="only enqueue; do not start a background supervisor")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the job's type, object count, first and last names and destination; create nothing",
    )


def _interval_flag(p: argparse.ArgumentParser, *names: str) -> None:
    p.add_argument(
        *names,
        dest="interval",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="how often progress is shown, e.g. 500ms, 10s (default: 2s for lines; the bar redraws each 0.5s)",
    )


def _duration(text: str) -> float:
    """``10s``, ``500ms``, ``1m``: AIStore's --refresh / --progress-interval."""
    from dlengine.errors import SpecError
    from dlengine.spec import parse_duration

    try:
        seconds = parse_duration(text, "")
    except SpecError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 500ms, 10s or 1m") from None
    if not 0.05 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (50ms to 1h)")
    return seconds


def _download(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "download",
        help="download SRC into bucket DST",
        description="Download a link, a brace-range template or a list of links into a bucket.",
        epilog="""examples:
  dlengine download http://host/data/file.tar ais://abc             # single -> file.tar
  dlengine download http://host/data/file.tar ais://abc/dir/x.tar   # single, named dir/x.tar
  dlengine download "http://host/shard-{0001..1000}.tar" ais://abc/train/   # range into train/
  dlengine download http://host/data ais://abc --object-list names.txt      # multi
  dlengine download s3://bkt/train/ s3://bkt --sync     # backend job: local copy of s3://bkt/train/*
  dlengine download http://host/data/file.tar s3://bkt/dir/                  # write-through into S3"""
        + hfflags.USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", nargs="?", help="a link, or a link template with {a..b} ranges (omitted with --hf-*)")
    p.add_argument(
        "dst", help="destination: a bucket (ais://abc, ais://abc/sub/dir/, s3://bkt) or a directory (./data/, /srv/ds)"
    )
    # a shell that expanded an unquoted {1..3} passes several SRCs: caught to say so (AIStore's hint)
    # (a default: argparse would name it among the missing arguments of a bare `dlengine download`)
    p.add_argument("unexpected", nargs="*", default=[], help=argparse.SUPPRESS)
    p.add_argument("--desc", "--description", dest="desc", help="job description (default: generated)")
    p.add_argument(
        "--timeout",
        "--download-timeout",
        dest="timeout",
        help="per-request timeout, e.g. 30s, 5m (default: configured)",
    )
    p.add_argument(
        "--blob-threshold",
        metavar="SIZE",
        help="accepted for AIStore's CLI; dlengine's data path decides itself when to fetch large objects in parts",
    )
    p.add_argument("--max-conns", type=int, metavar="N", help="at most N concurrent connections for this job")
    p.add_argument("--limit-bph", metavar="SIZE", help="at most SIZE bytes per hour, e.g. 1GiB, 500MB")
    p.add_argument(
        "--object-list",
        "--from",
        dest="object_list",
        metavar="FILE",
        help="file of object names or links (one per line, or a JSON list), relative to SRC",
    )
    p.add_argument(
        "--header", action="append", default=[], metavar="'NAME: VALUE'", help="extra request header (repeatable)"
    )
    p.add_argument("--sync", action="store_true", help="bucket SRC: also delete local copies of objects gone from SRC")
    hfflags.add_flags(p)
    _follow_flags(p)


def _executor_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--executor",
        metavar="local|dask://HOST:PORT",
        help="where downloads run (default: setting executor / DLENGINE_EXECUTOR, else local);"
        " dask:// stores into cloud buckets only (pip install 'dlengine[dask]')",
    )


def _serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the supervisor with the HTTP API (AIStore's /v1/download)",
        description="Run the supervisor forever, with AIStore's downloader REST API beside it (see docs/api.md).",
        epilog="""examples:
  dlengine serve                                    # http://127.0.0.1:8080/v1/download
  dlengine serve --listen 0.0.0.0:8080 --token-file ~/.dlengine/api.token
  curl -Li -X GET 'http://127.0.0.1:8080/v1/download'""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="address (default 127.0.0.1:8080)")
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="require 'Authorization: Bearer <token>' with the token in FILE (needed off loopback)",
    )
    p.add_argument("--quiet", action="store_true", help="log warnings only (no access log)")
    _executor_flag(p)


class Parser(argparse.ArgumentParser):
    """argparse's parser whose help formatters get the terminal's width
    from ``columns`` (shutil's rule) instead of importing shutil: argparse
    makes a formatter for every ``add_argument`` (to check its metavar),
    and shutil brings bz2 and lzma: ~4 ms of every command."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        # (every argparse formatter takes width, typeshed's protocol names prog only; 2: argparse's margin)
        return self.formatter_class(prog=self.prog, width=columns() - 2)  # type: ignore[call-arg]


def columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` gives it:
    ``COLUMNS`` if positive, else the width of the terminal on stdout,
    else 80."""
    try:
        width = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        width = 0
    if width <= 0:
        try:
            width = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            width = 0
    return width or 80


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser. ``argv`` naming a command first (as every
    command but ``dlengine --help`` or ``--version`` does): only that
    command's arguments are added, the others' were ~10 ms of a short
    command's start (a parser of every command: ``argv`` None or starting
    with an option, e.g. the top-level help)."""
    parser: argparse.ArgumentParser = Parser(
        prog="dlengine",
        description="Crash-safe batch downloads into local buckets, recorded in an SQLite ledger.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _ALIASES.get(argv[0], argv[0]) if argv else None
    only = chosen if chosen in _SUBCOMMANDS else None
    for name, add in _SUBCOMMANDS.items():
        if only is None or name == only:
            add(sub)
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, but with a command's arguments in any
    order (``download SRC --wait DST``, as rclone and aria2c take them;
    argparse takes a command's positionals in one run), and an option no
    parser knows refused by the command it was given to, with that
    command's usage and the closest option it has (``--wiat``: did you mean
    --wait?); argparse's own answer is the top-level usage alone."""
    words = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(words)
    if not extra:
        return args
    owner, commands = _command_parser(parser, args)
    if any(word.startswith("-") and word != "-" for word in extra) or words[: len(commands)] != commands:
        owner.error(f"unrecognized arguments: {' '.join(extra)}{_closest(owner, extra)}")
    # only positionals were left over, after an option: the command's parser again, positionals in one run
    seed = argparse.Namespace(**{k: v for k, v in vars(args).items() if k in _TOP_LEVEL_DESTS})
    return owner.parse_intermixed_args(words[len(commands) :], namespace=seed)


_TOP_LEVEL_DESTS = frozenset({"version", "command", "bucket_command"})  # set before a command's own arguments


def _command_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser of the innermost command ``args`` name (``bucket ls``),
    and the words that name it."""
    commands: list[str] = []
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, subs[0].dest, None) if subs else None
        if not subs or name not in subs[0].choices:
            return parser, commands
        parser = subs[0].choices[name]
        commands.append(name)


def _closest(parser: argparse.ArgumentParser, extra: Sequence[str]) -> str:
    """`` (did you mean --wait?)`` for the first unknown option like a known one."""
    import difflib  # (a mistyped option only)

    known = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    for word in extra:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.partition("=")[0], known, n=1)
            if close:
                return f" (did you mean {close[0]}?)"
    return ""


_Sub = argparse._SubParsersAction  # (argparse's type of ``add_subparsers``' result)


def _submit(sub: _Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "submit",
        help="submit a job.json (or - for stdin)",
        description="Submit a job request file: AIStore's downloader request body (type single, multi, range or"
        " backend).",
        epilog="""job.json, e.g.:
  {"type": "range", "bucket": {"name": "abc"}, "template": "http://host/shard-{001..100}.tar",
   "subdir": "train/", "timeout": "30s", "limits": {"connections": 8}}
  {"type": "single", "bucket": {"name": "abc"}, "link": "http://host/data/file.tar", "object_name": "x.tar"}
  {"type": "multi", "bucket": {"name": "abc"}, "objects": ["http://host/a.tar", "http://host/b.tar"]}

examples:
  id=$(dlengine submit job.json)          # the job id is the last line of stdout
  dlengine submit job.json --wait         # follow it; exit 1 if objects failed
  dlengine submit job.json --dry-run      # what it would download, and where; creates nothing
  dlengine submit - < job.json            # - reads the request from stdin""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="job request (JSON); - reads stdin")
    _follow_flags(p)


def _show(sub: _Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "show",
        help="list jobs, or show one job",
        description="Without ID: list jobs (active ones unless --all).",
        epilog="""examples:
  dlengine show                      # active jobs
  dlengine show --all --regex abc    # every job whose description matches abc
  dlengine show "$id" -v             # one job: counters, running objects, errors
  dlengine show "$id" --json         # its status object (AIStore's fields)""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("id", nargs="?", help="job id")
    p.add_argument("--all", action="store_true", help="include finished and aborted jobs")
    p.add_argument("--regex", metavar="R", help="only jobs whose description matches R")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-v", "--verbose", action="store_true", help="limits, current tasks and errors")
    p.add_argument("--progress", action="store_true", help="with ID: follow the job with a progress bar until it ends")
    _interval_flag(p, "--refresh")


def _selecting(sub: _Sub[argparse.ArgumentParser], names: tuple[str, ...], text: str) -> None:
    """abort and rm: one job, or every one that --all / --regex selects."""
    p = sub.add_parser(
        names[0],
        aliases=names[1:],
        help=text,
        description=text[0].upper() + text[1:] + ".",
        epilog=f"""examples:
  dlengine {names[0]} "$id"
  dlengine {names[0]} --regex 'shard-.*'   # every job whose description matches
  dlengine {names[0]} --all""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("id", nargs="?", help="job id")
    p.add_argument("--all", action="store_true", help="every job (of the state this command acts on)")
    p.add_argument("--regex", metavar="R", help="every job whose description matches R")


def _abort(sub: _Sub[argparse.ArgumentParser]) -> None:
    _selecting(sub, ("abort", "stop"), "abort a job (or every active one matching --all/--regex)")


def _rm(sub: _Sub[argparse.ArgumentParser]) -> None:
    _selecting(sub, ("rm",), "remove a finished or aborted job (or every ended one matching --all/--regex)")


def _retry(sub: _Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "retry",
        help="re-queue a job's failed objects",
        description="Re-queue a job's failed objects (and those an abort stopped).",
        epilog="""examples:
  dlengine retry "$id" && dlengine wait "$id"   # the failed objects again, followed""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("id", help="job id")
    p.add_argument("--no-start", action="store_true", help="do not start a background supervisor")


def _wait(sub: _Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "wait",
        help="follow a job until it ends (again, e.g. after Ctrl-C)",
        description="Follow a job until it ends; exit 1 if it had failures or was aborted (as `ais wait download`).",
        epilog="""examples:
  dlengine wait "$id" --progress     # again after a Ctrl-C: the download went on""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("id", help="job id")
    p.add_argument("--progress", action="store_true", help="a progress bar on a terminal")
    _interval_flag(p, "--refresh", "--progress-interval")
    p.add_argument("--json", action="store_true", help="print the final status as JSON")


def _run(sub: _Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="process queued jobs until none is left (for cron)",
        description="Run the supervisor in the foreground; exit when no job is left.",
        epilog="""examples:
  */10 * * * * dlengine run --quiet     # crontab: a second run while one works exits at once (0)
  dlengine download "http://host/x-{1..9}.tar" ais://abc --no-start && dlengine run""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--linger", type=_seconds, default=0.0, metavar="S", help="wait S seconds for new jobs before exiting"
    )
    p.add_argument("--quiet", action="store_true", help="log warnings only (the workers too)")
    _executor_flag(p)


def _ls(sub: _Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "ls",
        help="list the objects stored in a bucket (no bucket: the buckets)",
        description="List a bucket (NAME, SIZE; -l adds when each was stored and its path); without a bucket,"
        " the buckets this home knows, as `dlengine bucket ls` (and `ais ls`).",
        epilog="""examples:
  dlengine ls                        # the buckets
  dlengine ls ais://abc/train/ -l    # the objects under train/, with their paths
  dlengine ls ./data/ --json""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bucket", nargs="?", help="e.g. ais://abc, ais://abc/prefix, s3://bkt (its local copy), ./data/")
    p.add_argument("-l", "--long", action="store_true", help="also STORED (UTC time) and PATH of each object")
    p.add_argument("--json", action="store_true", help="one JSON array (name, size, path, stored_time, source)")
    p.add_argument("--remote", action="store_true", help="list the cloud bucket itself (s3://, gs://, az://)")


def _bucket(sub: _Sub[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bucket",
        help="manage buckets",
        description="Manage local buckets.",
        epilog="""examples:
  dlengine bucket create ais://abc
  dlengine bucket ls
  dlengine bucket rm ais://abc       # deletes its stored objects""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bsub = p.add_subparsers(dest="bucket_command", metavar="ACTION", required=True)
    pc = bsub.add_parser(
        "create",
        help="create a bucket",
        description="Create local buckets. One that exists already is an error (exit 2), and then none is"
        " created, as with `ais bucket create`; --ignore-error lets it be.",
    )
    pc.add_argument("bucket", nargs="+", help="e.g. ais://abc")
    pc.add_argument("--ignore-error", action="store_true", help="a bucket that exists is not an error ('exists:')")
    pl = bsub.add_parser(
        "ls", help="list buckets", description="List the buckets this home knows (BUCKET, OBJECTS, SIZE)."
    )
    pl.add_argument("--json", action="store_true", help="one JSON array")
    pr = bsub.add_parser(
        "rm",
        help="remove a bucket and its stored objects",
        description="Remove buckets: their stored objects (only files dlengine stored, also in a directory"
        " destination), their catalog and their record. A directory destination loses its work directory and"
        " home mark too, and goes itself unless it holds files dlengine did not store (those stay)."
        " Refused while a job of the bucket is active.",
    )
    pr.add_argument("bucket", nargs="+", help="e.g. ais://abc, ./data/")


# every command in the order of the help, each adding its parser
_SUBCOMMANDS: dict[str, Callable[[_Sub[argparse.ArgumentParser]], None]] = {
    "submit": _submit,
    "download": _download,
    "show": _show,
    "abort": _abort,
    "rm": _rm,
    "retry": _retry,
    "wait": _wait,
    "run": _run,
    "serve": _serve,
    "ls": _ls,
    "bucket": _bucket,
}
_ALIASES = {"stop": "abort"}


def _seconds(text: str) -> float:
    """A finite, non-negative number of seconds (``nan`` would never expire),
    within the bounds of DLENGINE_LINGER."""
    from dlengine.config import BOUNDS, check_number  # (the settings: not for every command's parser)

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    try:
        return check_number(value, *BOUNDS["linger_seconds"], "")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
