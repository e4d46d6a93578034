"""The ``dlengine`` command line."""

from dlengine.cli.main import main

__all__ = ["main"]
