"""The API's OpenAPI document is valid and names every route (the routes
against it: tests/e2e/test_api_fuzz.py)."""

from __future__ import annotations

import pytest

from dlengine.api import openapi
from dlengine.api.routes import DOWNLOAD


def test_openapi_document_is_valid() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    document = openapi()
    validator.validate(document)
    assert set(document["paths"]) == {DOWNLOAD, DOWNLOAD + "/abort", DOWNLOAD + "/remove"}
