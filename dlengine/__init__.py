"""dlengine: crash-safe batch downloads into local buckets.

import dlengine
client = dlengine.Client()
job_id = client.submit({"type": "single", "bucket": {"name": "abc"}, "link": "http://host/x.tar"})
client.wait(job_id)
"""

from __future__ import annotations

__version__ = "0.1.0"

from dlengine.client import Client
from dlengine.errors import DlengineError, NotFoundError, SpecError, StateError

__all__ = ["Client", "DlengineError", "NotFoundError", "SpecError", "StateError", "__version__"]
