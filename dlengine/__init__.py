"""dlengine: crash-safe batch downloads into local buckets.

import dlengine
client = dlengine.Client()
job_id = client.submit({"type": "single", "bucket": {"name": "abc"}, "link": "http://host/x.tar"})
client.wait(job_id)
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from dlengine.errors import DlengineError, NotFoundError, SpecError, StateError

if TYPE_CHECKING:
    from dlengine.client import Client


def __getattr__(name: str) -> Any:
    """``Client`` on first use: worker processes import dlengine's modules
    without paying for the client (the ledger's job code, spec parsing)."""
    if name == "Client":
        from dlengine.client import Client

        return Client
    raise AttributeError(f"module 'dlengine' has no attribute {name!r}")


__all__ = ["Client", "DlengineError", "NotFoundError", "SpecError", "StateError", "__version__"]
