"""The HTTP API of ``dlengine serve``: AIStore's ``/v1/download`` endpoints.

``routes`` decides answers through the Python API (``dlengine.Client``);
``server`` speaks HTTP (standard library) beside the supervisor; ``listen``
parses the address and guards it with a bearer token. ``openapi.json``
describes the endpoints.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def openapi() -> dict[str, Any]:
    """The OpenAPI document of the endpoints."""
    data: dict[str, Any] = json.loads(resources.files(__name__).joinpath("openapi.json").read_text())
    return data
