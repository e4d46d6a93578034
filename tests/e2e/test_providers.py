"""One provider list: aliases, and what each provider may be used for is
decided at submission (exit 2 naming the field), never at dispatch."""

from __future__ import annotations

import json

import pytest

from dlengine.errors import SpecError
from dlengine.providers import LISTABLE, WRITE_THROUGH, Provider, parse_provider
from dlengine.sources import registry
from dlengine.spec import parse_job
from tests.conftest import Home


@pytest.mark.parametrize(
    ("alias", "provider"),
    [("s3", Provider.AWS), ("GS", Provider.GCP), ("gcs", Provider.GCP), ("az", Provider.AZURE), ("ht", Provider.HT)],
)
def test_aliases(alias: str, provider: Provider) -> None:
    assert parse_provider(alias) is provider
    assert str(provider) == provider.value and f"{provider}" == provider.value


def test_unknown_provider_names_the_field() -> None:
    with pytest.raises(SpecError) as err:
        parse_provider("s4", "DST")
    assert err.value.field == "DST" and "s4" in err.value.reason


def test_every_write_through_provider_has_a_link_scheme_the_registry_serves() -> None:
    assert {p.value for p in WRITE_THROUGH} == set(registry.PROVIDER_SCHEMES)
    assert all(p.scheme for p in LISTABLE)


@pytest.mark.parametrize("provider", ["ht", "ais", "dir"])
def test_backend_job_of_an_unlistable_provider_is_refused(provider: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_job({"type": "backend", "bucket": {"name": "b", "provider": provider}})
    assert err.value.field == "bucket.provider"


def test_ht_backend_job_is_refused_at_submission(home: Home) -> None:
    body = json.dumps({"type": "backend", "bucket": {"name": "b", "provider": "ht"}})
    res = home.cli("submit", "-", "--no-start", input=body)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "bucket.provider" in res.stderr and "'ht'" in res.stderr
    assert json.loads(home.cli("show", "--all", "--json").stdout) == []
