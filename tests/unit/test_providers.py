"""One provider list: aliases, and what each provider may be used for is
decided at submission, never at dispatch (the CLI's exit 2:
tests/e2e/test_providers.py)."""

from __future__ import annotations

import pytest

from dlengine.errors import SpecError
from dlengine.providers import LISTABLE, WRITE_THROUGH, Provider, parse_provider
from dlengine.sources import registry
from dlengine.spec import parse_job


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


@pytest.mark.parametrize(
    ("alias", "provider"),
    [("s3", Provider.AWS), ("GS", Provider.GCP), ("gcs", Provider.GCP), ("az", Provider.AZURE), ("ht", Provider.HT)],
)
def test_aliases(alias: str, provider: Provider) -> None:
    assert parse_provider(alias) is provider
    assert str(provider) == provider.value and f"{provider}" == provider.value


@pytest.mark.parametrize(
    ("link", "url"),
    [
        ("gs://b/dir é/a b?#.txt", "https://storage.googleapis.com/b/dir%20%C3%A9/a%20b%3F%23.txt"),
        ("s3://b/train/x~1_2-3.tar", "https://b.s3.amazonaws.com/train/x~1_2-3.tar"),
        ("s3://b/50%.txt", "https://b.s3.amazonaws.com/50%25.txt"),  # keys are literal
    ],
)
def test_a_cloud_link_without_its_sdk_is_a_public_url_of_the_key(
    link: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NoSdk:
        @staticmethod
        def available() -> bool:
            return False

    monkeypatch.setattr(registry, "cloud_module", lambda scheme: NoSdk)
    assert registry.resolve(link)[1] == url
