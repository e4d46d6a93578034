"""The ``dlengine`` command line."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dlengine import startup


def main(argv: Sequence[str] | None = None) -> int:
    """The command; ``run``'s workers start before the rest is imported
    (``supervisor.prespawn``; only ``run`` imports it). Also ``program``:
    once ``dlengine.cli.main`` (the module) is imported, this package's
    ``main`` names that module."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "run":
        return _command(argv)
    from dlengine.supervisor import prespawn

    prespawn.early(args)
    try:
        return _command(argv)
    finally:
        prespawn.discard()


program = main


def _command(argv: Sequence[str] | None) -> int:
    from dlengine.cli.main import main as command

    return command(argv)


def entry() -> None:
    """The program (console script, ``python -m dlengine``, ``bin/dlengine``):
    the command, then its exit without the interpreter's teardown when
    nothing else runs (``cli.main.exit_now``). ``main`` stays a plain
    function for callers in-process."""
    startup.begin()  # (the collector while the command imports: startup.py)
    from dlengine import process  # (typing: after begin)

    process.be_the_program()
    code = main()
    from dlengine.cli.main import exit_now  # imported by main() by now

    exit_now(code)
    sys.exit(code)


__all__ = ["entry", "main", "program"]
