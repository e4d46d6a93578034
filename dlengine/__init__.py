"""dlengine: crash-safe batch downloads into local buckets.

import dlengine
client = dlengine.Client()
job_id = client.submit({"type": "single", "bucket": {"name": "abc"}, "link": "http://host/x.tar"})
client.wait(job_id)
"""

from __future__ import annotations

__version__ = "0.1.0"

# Nothing is imported here, typing neither (its TYPE_CHECKING is the
# type checkers' constant of the same name, as PEP 781 describes): the
# program (``cli.entry``) first sets the collector for its start-up
# (``dlengine/startup.py``), which ``import typing`` alone made collect 7
# times. The public names come on first use.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from dlengine.client import Client
    from dlengine.errors import DlengineError, NotFoundError, SpecError, StateError

_PUBLIC = {
    "Client": "dlengine.client",  # (worker processes import dlengine's modules without the client)
    "DlengineError": "dlengine.errors",
    "NotFoundError": "dlengine.errors",
    "SpecError": "dlengine.errors",
    "StateError": "dlengine.errors",
}


def __getattr__(name: str) -> object:
    """A public name, imported on first use."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'dlengine' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["Client", "DlengineError", "NotFoundError", "SpecError", "StateError", "__version__"]
