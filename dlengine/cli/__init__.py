"""The ``dlengine`` command line."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The command; ``run``'s workers start before the rest is imported
    (``supervisor.prespawn``)."""
    from dlengine.supervisor import prespawn

    prespawn.early(sys.argv[1:] if argv is None else argv)
    try:
        from dlengine.cli.main import main as command

        return command(argv)
    finally:
        prespawn.discard()


__all__ = ["main"]
