"""The ``--hf-*`` flags of ``download`` and their checks: what the parser
needs of the Hub, without ``cli.hf`` (its planning, the client, the
ledger's records), which only a ``--hf-*`` download imports."""

from __future__ import annotations

import argparse

from dlengine.errors import SpecError

_HF_ONLY = ("hf_file", "hf_revision", "hf_include", "hf_exclude", "max_job_bytes", "hf_auth")

USAGE_EXAMPLES = """
  dlengine download --hf-dataset org/name ais://dst                 # a whole dataset repo
  dlengine download --hf-model org/model ais://models/m1/ --hf-include '*.json' --hf-include '*.safetensors'
  dlengine download --hf-model org/model --hf-file config.json --hf-revision v1.0 ais://dst
  dlengine download --hf-dataset org/name ais://dst --max-job-bytes 50GiB   # one job id per line
  dlengine download --hf-dataset org/name hf://org/name --sync      # backend job: the repo's local copy"""


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The ``--hf-*`` flags of ``download``."""
    group = parser.add_argument_group("HuggingFace Hub (SRC is omitted; token from HF_TOKEN or `hf auth login`)")
    repo = group.add_mutually_exclusive_group()
    repo.add_argument("--hf-dataset", metavar="REPO", help="download the dataset repository REPO (org/name)")
    repo.add_argument("--hf-model", metavar="REPO", help="download the model repository REPO (org/name)")
    group.add_argument(
        "--hf-file", action="append", default=[], metavar="PATH", help="only this file of the repo (repeatable)"
    )
    group.add_argument("--hf-revision", metavar="REV", help="branch, tag or commit (default: main)")
    group.add_argument("--hf-include", action="append", default=[], metavar="GLOB", help="only matching files")
    group.add_argument("--hf-exclude", action="append", default=[], metavar="GLOB", help="leave matching files out")
    group.add_argument(
        "--hf-auth",
        metavar="TOKEN",
        help="a Hub token for this download (instead of HF_TOKEN); kept out of the ledger, sent to the Hub only",
    )
    group.add_argument(
        "--max-job-bytes",
        metavar="SIZE",
        help="split into jobs of at most SIZE (e.g. 50GiB); bigger files get a job each; prints every job id",
    )


def requested(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "hf_dataset", None) or getattr(args, "hf_model", None))


def check_plain(args: argparse.Namespace) -> None:
    """A ``download`` without a repo: SRC is required, ``--hf-*`` flags are not."""
    for name in _HF_ONLY:
        if getattr(args, name, None):
            flag = "--" + name.replace("_", "-")
            raise SpecError(flag, "needs --hf-dataset REPO or --hf-model REPO")
    if not args.src:
        raise SpecError("SRC", "is required (or give --hf-dataset REPO / --hf-model REPO)")
