"""A blob's read SAS from a connection string's key without the SDK
(``sources.azsas``, issue 17): the SDK's URL and the SDK's SAS for the same
version and expiry, Azurite accepts it (a wrong key is refused), and the
worker's signing path never imports azure-storage-blob."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import uuid
from urllib.parse import parse_qsl, urlsplit

import pytest

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
    assert azsas.parse("BlobEndpoint=https://a.example;SharedAccessSignature=sv=x&sig=y") is None
    assert azsas.parse("UseDevelopmentStorage=true") is None
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


def test_signing_imports_no_sdk(azurite_server: AzuriteServer) -> None:
    code = (
        "import sys; from dlengine.sources.signed import signed_get;"
        " got = signed_get('az://cont/k.bin'); assert got is not None and 'sig=' in got.url;"
        " print('azure.storage.blob' in sys.modules, 'azure.core' in sys.modules)"
    )
    env = {**os.environ, **azurite_server.env}
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["False", "False"]
