"""A blob's read SAS from a connection string's key without the SDK
(``sources.azsas``, issue 17): the SDK's URL and the SDK's SAS for the same
version and expiry, Azurite accepts it (a wrong key is refused); a SAS
the user gave (connection string, account URL) is carried as the SDK
carries it; and the worker's signing path imports nothing of azure.*."""

from __future__ import annotations

import datetime
import hashlib
import os
import subprocess
import sys
import uuid
from io import BytesIO
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from dlengine import errors
from dlengine.sources import azsas
from harness.cloud_servers import AZURITE_KEY, AzuriteServer
from harness.home import ROOT

NAMES = ["plain.bin", "dir/a b+c~ü?#%.bin", "x/y=z&q"]


def test_parse_reads_what_the_sdk_reads() -> None:
    from azure.storage.blob import BlobServiceClient

    for text in (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
        "BlobEndpoint=http://127.0.0.1:1000/devstoreaccount1;",
        "DefaultEndpointsProtocol=https;AccountName=acc;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        "AccountName=acc;AccountKey=a2V5",
    ):
        account = azsas.parse(text)
        sdk = BlobServiceClient.from_connection_string(text)
        assert account is not None and (account.name, account.endpoint) == (sdk.account_name, sdk.url.rstrip("/"))
        assert AZURITE_KEY not in repr(account)
    assert azsas.parse("UseDevelopmentStorage=true") is None
    assert azsas.parse("BlobEndpoint=https://a.example;SharedAccessSignature=sv=x") is None  # no signature
    assert azsas.from_url("https://acc.blob.core.windows.net") is None  # a token credential's, or anonymous


SAS = "sv=2025-05-05&ss=b&srt=co&sp=rl&se=2030-01-01T00%3A00%3A00Z&sig=abc%2Bdef%3D"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "given",
    [
        f"BlobEndpoint=http://127.0.0.1:1000/devstoreaccount1;SharedAccessSignature={SAS}",
        f"BlobEndpoint=https://acc.blob.core.windows.net/;SharedAccessSignature=?{SAS}",
        f"AccountName=acc;SharedAccessSignature={SAS}",
        f"http://127.0.0.1:1000/devstoreaccount1?{SAS}",
        f"https://acc.blob.core.windows.net/?{SAS}",
    ],
)
def test_a_given_sas_is_carried_as_the_sdk_carries_it(given: str, name: str) -> None:
    from azure.storage.blob import BlobServiceClient

    url = given.startswith(("http://", "https://"))
    account = azsas.from_url(given) if url else azsas.parse(given)
    sdk = BlobServiceClient(given) if url else BlobServiceClient.from_connection_string(given)
    assert account is not None and "abc" not in repr(account)
    assert azsas.blob_url(account, "cont", name, 1) == sdk.get_blob_client("cont", name).url
    assert azsas.parse("AccountName=acc;AccountKey=not base64!") is None


@pytest.mark.parametrize("name", NAMES)
def test_the_url_and_sas_are_the_sdks(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas
    from azure.storage.blob import _shared_access_signature as shared

    text = f"AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:1000/devstoreaccount1"
    account = azsas.parse(text)
    assert account is not None
    now = 1796150000.0
    ours = azsas.blob_url(account, "cont", name, 1, now)
    monkeypatch.setattr(shared, "X_MS_VERSION", azsas.SAS_VERSION)
    expiry = datetime.datetime.fromtimestamp(now + 3600, datetime.timezone.utc)
    sdk = BlobServiceClient.from_connection_string(text)
    theirs = sdk.get_blob_client("cont", name).url + "?" + generate_blob_sas(
        "devstoreaccount1", "cont", name, account_key=AZURITE_KEY, permission=BlobSasPermissions(read=True),
        expiry=expiry,
    )  # fmt: skip
    assert ours == theirs


@pytest.mark.parametrize("name", NAMES)
def test_azurite_accepts_it(azurite_server: AzuriteServer, name: str) -> None:
    import pycurl

    container = f"s{uuid.uuid4().hex[:10]}"
    client = azurite_server.client()
    client.create_container(container)
    client.get_blob_client(container, name).upload_blob(b"keyed" * 100)
    account = azsas.parse(azurite_server.connection_string())
    assert account is not None

    def status(url: str) -> int:
        handle = pycurl.Curl()
        try:
            handle.setopt(pycurl.URL, url)
            handle.setopt(pycurl.WRITEFUNCTION, lambda _chunk: None)
            handle.perform()
            return int(handle.getinfo(pycurl.RESPONSE_CODE))
        finally:
            handle.close()

    url = azsas.blob_url(account, container, name, 1)
    assert status(url) == 200
    wrong = azsas.parse(azurite_server.connection_string(key="d3Jvbmcta2V5"))
    assert wrong is not None and status(azsas.blob_url(wrong, container, name, 1)) == 403
    assert dict(parse_qsl(urlsplit(url).query))["sp"] == "r"


def _given_sas(azurite_server: AzuriteServer, container: str, list_too: bool = False) -> str:
    """A read SAS of ``container`` made by the SDK (what a user would paste)."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    perms = ContainerSasPermissions(read=True, list=list_too)
    return str(generate_container_sas("devstoreaccount1", container, AZURITE_KEY, permission=perms, expiry=expiry))


def _signed_in_a_fresh_process(env: dict[str, str], link: str) -> tuple[str, list[str]]:
    """(the signed URL, the azure.* modules imported) of a worker's signing
    and a supervisor's listing of the link's container."""
    code = (
        "import sys; from dlengine.sources.signed import signed_get;"
        f" got = signed_get({link!r}); assert got is not None and 'sig=' in got.url and not got.headers;"
        " from dlengine.sources import registry;"
        f" keys = [i.key for i in registry.lister('azure', {link.split('/')[2]!r}).list()]; assert keys, keys;"
        " print(got.url); print(' '.join(m for m in sys.modules if m == 'azure' or m.startswith('azure.')))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    res = subprocess.run([sys.executable, "-c", code], env={**base, **env}, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    url, _, modules = res.stdout.partition("\n")
    return url, modules.split()


def test_signing_imports_nothing_of_azure(azurite_server: AzuriteServer) -> None:
    """Account key, a SAS connection string, a SAS account URL: Azurite
    accepts each signed GET, and no azure.* module (not even the namespace)
    is imported."""
    import pycurl

    container = f"s{uuid.uuid4().hex[:10]}"
    client = azurite_server.client()
    client.create_container(container)
    client.get_blob_client(container, "k.bin").upload_blob(b"given" * 100)
    sas = _given_sas(azurite_server, container, list_too=True)
    endpoint = f"http://127.0.0.1:{azurite_server.port}/devstoreaccount1"
    cases = [
        azurite_server.env,
        {"AZURE_STORAGE_CONNECTION_STRING": f"BlobEndpoint={endpoint};SharedAccessSignature={sas}"},
        {"AZURE_STORAGE_ACCOUNT_URL": f"{endpoint}?{sas}"},
    ]
    for env in cases:
        url, modules = _signed_in_a_fresh_process(env, f"az://{container}/k.bin")
        assert modules == [], (env, modules)
        body = BytesIO()
        handle = pycurl.Curl()
        try:
            handle.setopt(pycurl.URL, url)
            handle.setopt(pycurl.WRITEDATA, body)
            handle.perform()
            assert (handle.getinfo(pycurl.RESPONSE_CODE), body.getvalue()) == (200, b"given" * 100), env
        finally:
            handle.close()


LISTED = ["a/1.bin", "a/2 two.txt", "a/3+plus.bin", "a/ü~*.bin", "a/sub/4.bin", "b/5.bin", "c"]


def _listing(container: str, plain: bool, **selection: str) -> list[Any]:
    """The container's listing through azsas (``plain``) or the SDK, 2 blobs a page."""
    from dlengine.sources import azure

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(azure, "_accounts", {})
        if not plain:
            mp.setattr(azure, "_keyed_account", lambda: None)
        return list(azure.AzureSource(container, page_size=2).list(**selection))


@pytest.mark.parametrize("selection", [{}, {"prefix": "a/"}, {"suffix": ".bin"}, {"start_after": "a/3+plus.bin"}])
def test_plain_listing_is_the_sdks(azurite_server: AzuriteServer, selection: dict[str, str]) -> None:
    """List Blobs through pycurl with a list-only container SAS: what the
    SDK's ``list_blobs`` gives, page after page; a given SAS lists too."""
    from azure.storage.blob import ContentSettings

    container = f"l{uuid.uuid4().hex[:10]}"
    client = azurite_server.client()
    client.create_container(container)
    for name in LISTED:
        body = name.encode() * 3
        md5 = bytearray(hashlib.md5(body).digest())
        client.get_blob_client(container, name).upload_blob(body, content_settings=ContentSettings(content_md5=md5))
    plain, sdk = _listing(container, True, **selection), _listing(container, False, **selection)
    assert plain == sdk and plain
    if not selection:
        assert [o.key for o in plain] == sorted(LISTED)
        assert all(o.etag and o.etag.startswith('"') and o.last_modified for o in plain)
        assert all(o.checksums.keys() == {"md5"} for o in plain)  # (Azurite stores one for every single-shot upload)
        sas = _given_sas(azurite_server, container, list_too=True)
        endpoint = f"http://127.0.0.1:{azurite_server.port}/devstoreaccount1"
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("AZURE_STORAGE_CONNECTION_STRING")
            mp.setenv("AZURE_STORAGE_ACCOUNT_URL", f"{endpoint}?{sas}")
            assert _listing(container, True) == plain


def test_plain_listing_of_a_missing_container_is_not_found(azurite_server: AzuriteServer) -> None:
    with pytest.raises(errors.SourceNotFoundError, match="ContainerNotFound"):
        _listing(f"gone{uuid.uuid4().hex[:8]}", True)
