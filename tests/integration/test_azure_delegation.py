"""Azure token credentials get signed GETs too (issue 17): with a token
credential (``DefaultAzureCredential`` and the like, no account key) the
blob's GET is its URL with a read SAS signed by a user delegation key the
SDK asked for once; a service that refuses the key leaves the SDK path
(None), asked again only after a while.

Azurite hands out user delegation keys only with OAuth on, which needs
HTTPS: it runs here with ``--oauth basic`` and a self-signed certificate
(``openssl``), and takes a bearer token whose issuer, audience, times are
right (it does not check the token's signature). What is NOT checked here:
that a store accepts the SAS. azure-storage-blob 12.31 signs SAS version
2026-10-06, whose user-delegation string-to-sign has two lines (signed
request headers and query) that Azurite 3.35 (API 2025-11-05) does not
know, so Azurite refuses every user delegation SAS this SDK makes
("Signature based on UDK failed"), dlengine's or not. The signature is
the SDK's own (``generate_blob_sas(user_delegation_key=...)``); the loop's
handling of a SAS URL is the one ``tests/e2e/test_cloud_signed.py``
proves with account-key SAS over HTTP."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from dlengine.sources import azure, signed
from harness.cloud_servers import AZURITE_ACCOUNT, AZURITE_KEY, AzuriteServer, azurite_binary


def _jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


class FakeToken:
    """A token credential (azure-core's protocol) handing out bearer tokens."""

    def __init__(self, audience: str = "https://storage.azure.com") -> None:
        self.audience = audience
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.calls += 1
        now = int(time.time())
        tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
        claims = {"aud": self.audience, "iss": f"https://sts.windows.net/{tenant}/", "nbf": now - 60, "iat": now - 60,
                  "exp": now + 3600, "oid": "0b8f5b8e-aaaa-bbbb-cccc-111122223333", "tid": tenant}  # fmt: skip
        return AccessToken(_jwt(claims), now + 3600)


@pytest.fixture(scope="module")
def https_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AzuriteServer, Path]]:
    pytest.importorskip("azure.storage.blob", reason="azure-storage-blob is not installed")
    binary = azurite_binary()
    if binary is None or shutil.which("openssl") is None:
        pytest.skip("needs Azurite (.ci/run installs it) and openssl")
    work = tmp_path_factory.mktemp("azurite-https")
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = AzuriteServer(binary).start(work, ("--oauth", "basic", "--cert", str(cert), "--key", str(key)))
    yield server, cert
    server.stop()


def _url(server: AzuriteServer) -> str:
    return f"https://127.0.0.1:{server.port}/{AZURITE_ACCOUNT}"


@pytest.fixture
def token_client(https_azurite: tuple[AzuriteServer, Path], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The process's Azure client with a token credential; a blob stored."""
    from azure.storage.blob import BlobServiceClient

    server, cert = https_azurite
    keyed = BlobServiceClient(_url(server), credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
                              connection_verify=str(cert))  # fmt: skip
    container = f"c{uuid.uuid4().hex[:10]}"
    keyed.create_container(container)
    keyed.get_blob_client(container, "dir/a b.bin").upload_blob(b"delegated" * 1000)
    credential = FakeToken()
    client = BlobServiceClient(_url(server), credential=credential, connection_verify=str(cert))
    monkeypatch.delenv(azure.ENV_CONNECTION_STRING, raising=False)  # the azurite_server fixture's, if it ran
    monkeypatch.setattr(azure, "_client", [client])
    monkeypatch.setattr(azure, "_delegation", [])
    monkeypatch.setattr(signed, "_instances", {})
    client.container, client.fake = container, credential
    return client


def test_a_token_credential_signs_a_user_delegation_sas(token_client: Any) -> None:
    container = token_client.container
    got = signed.signed_get(f"az://{container}/dir/a b.bin")
    assert got is not None and got.headers == {}
    query = dict(parse_qsl(urlsplit(got.url).query))
    assert query["sp"] == "r" and query["sr"] == "b" and query["sig"]  # read only, this blob
    key = azure._delegation[0][1]  # the key Azurite issued for the token's identity signs it
    assert (query["skoid"], query["sktid"], query["skt"], query["ske"]) == (
        key.signed_oid,
        key.signed_tid,
        key.signed_start,
        key.signed_expiry,
    )
    other = signed.signed_get(f"az://{container}/dir/a b.bin")
    assert other is not None and len(azure._delegation) == 1
    calls = token_client.fake.calls
    for _ in range(5):
        assert signed.signed_get(f"az://{container}/dir/a b.bin") is not None
    assert token_client.fake.calls == calls  # the delegation key is kept: no token, no request per blob


def test_a_refused_delegation_key_leaves_the_sdk_path(token_client: Any) -> None:
    token_client.fake.audience = "https://someone-else.example"  # Azurite refuses the token
    assert signed.signed_get(f"az://{token_client.container}/dir/a b.bin") is None
    calls = token_client.fake.calls
    assert signed.signed_get(f"az://{token_client.container}/dir/a b.bin") is None
    assert token_client.fake.calls == calls  # not asked again at once
