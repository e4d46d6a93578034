"""One provider list: aliases, and what each provider may be used for is
decided at submission (exit 2 naming the field), never at dispatch."""

from __future__ import annotations

import json

import pytest

from dlengine.providers import Provider, parse_provider
from tests.conftest import Home


@pytest.mark.parametrize(
    ("alias", "provider"),
    [("s3", Provider.AWS), ("GS", Provider.GCP), ("gcs", Provider.GCP), ("az", Provider.AZURE), ("ht", Provider.HT)],
)
def test_aliases(alias: str, provider: Provider) -> None:
    assert parse_provider(alias) is provider
    assert str(provider) == provider.value and f"{provider}" == provider.value


def test_ht_backend_job_is_refused_at_submission(home: Home) -> None:
    body = json.dumps({"type": "backend", "bucket": {"name": "b", "provider": "ht"}})
    res = home.cli("submit", "-", "--no-start", input=body)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "bucket.provider" in res.stderr and "'ht'" in res.stderr
    assert json.loads(home.cli("show", "--all", "--json").stdout) == []
