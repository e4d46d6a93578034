"""``sigv4.GetSigner``: a bucket's presigned GETs, what they share kept a
second, are byte for byte what botocore's ``S3SigV4QueryAuth`` signs;
new keys (a refreshed chain) or a new second are signed with at once; the
chain's cache key follows the environment."""

from __future__ import annotations

import datetime
from unittest import mock
from urllib.parse import quote, urlsplit

import pytest

from dlengine.sources import s3, sigv4

ORIGIN, HOST = "http://127.0.0.1:8000", "127.0.0.1:8000"
HEADERS = {"x-amz-checksum-mode": "ENABLED"}
NOW = 1796150000.0


def _botocores(path: str, keys: tuple[str, str, str | None], region: str, now: float, expires: int) -> str:
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest("GET", ORIGIN + path, headers=dict(HEADERS))
    fixed = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=fixed):
        S3SigV4QueryAuth(Credentials(*keys), "s3", region, expires=expires).add_auth(request)
    return str(request.url)


def _same(ours: str, theirs: str) -> bool:
    """The same URL but the order of the query's parameters (botocore puts
    the session token after the signed headers; the canonical query, and
    so the signature, sorts them), each pair byte for byte as sent."""
    mine, other = urlsplit(ours), urlsplit(theirs)
    same_pairs = sorted(mine.query.split("&")) == sorted(other.query.split("&"))
    return mine[:3] == other[:3] and same_pairs and "X-Amz-Signature=" in mine.query


@pytest.mark.parametrize(
    ("key", "token", "region"),
    [
        ("plain/key.bin", None, "us-east-1"),
        ("a b/c+d ü~*.bin", "FwoGZX/session+tok==", "eu-west-1"),
        ("x/y=z&q?#%", None, "ap-southeast-2"),
        ("dir/obj-00001.bin", "t", "us-east-1"),
    ],
)
def test_urls_are_botocores_byte_for_byte(key: str, token: str | None, region: str) -> None:
    keys = ("AKID", "sec/ret+", token)
    signer = sigv4.GetSigner(ORIGIN, HOST, "/bkt/", region, HEADERS, 900)
    encoded = quote(key, safe="/~")
    for now in (NOW, NOW + 0.5, NOW + 1, NOW + 86400):  # the same second kept, the next one, the next day
        ours = signer.url(encoded, keys, now)
        assert _same(ours, _botocores("/bkt/" + encoded, keys, region, now, 900))
        assert ours == sigv4.presign_get(ORIGIN, HOST, "/bkt/" + encoded, keys, region, HEADERS, 900, now)


def test_new_keys_are_signed_with_at_once() -> None:
    """A refreshed chain's keys within the same second: the URL carries
    them (never the kept second's), as botocore's would."""
    signer = sigv4.GetSigner(ORIGIN, HOST, "/bkt/", "us-east-1", HEADERS, 3600)
    old, new = ("AKID", "old-secret", "token-1"), ("AKID2", "new-secret", "token-2")
    first = signer.url("k.bin", old, NOW)
    second = signer.url("k.bin", new, NOW)
    assert "AKID2" in urlsplit(second).query and "token-2" in second and "token-1" not in second
    assert _same(second, _botocores("/bkt/k.bin", new, "us-east-1", NOW, 3600))
    assert first != second and signer.url("k.bin", old, NOW) == first
    assert "secret" not in repr(signer._kept)


def test_a_presigners_url_encodes_only_keys_that_need_it() -> None:
    """The unreserved-key shortcut gives the URL percent-encoding would."""
    keys = ("AKID", "sec", None)
    presigner = s3._made(ORIGIN, HOST, "/bkt/", "us-east-1", lambda: keys, True)
    for key in ("plain/k-1_2.~bin", "a b/ü.bin", "q?x#y", "100%/+"):
        url = presigner.url(key)
        assert url is not None and urlsplit(url).path == "/bkt/" + quote(key, safe="/~")
        assert url == presigner.gets.url(quote(key, safe="/~"), keys)


def test_the_chains_cache_key_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "one")
    first = s3._chain()
    assert s3._chain() == first
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "two")
    assert s3._chain() != first
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "one")
    assert s3._chain() == first
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    assert s3._chain() not in (first,)
