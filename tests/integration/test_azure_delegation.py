"""Azure token credentials get signed GETs without the SDK (issue 17): with
a token credential (``DefaultAzureCredential`` and the like, no account
key) the user delegation key is asked for over REST once per process
(``sources.azdeleg``) and each blob's read SAS, each listing page's list
SAS, is signed in Python: the SDK's URL and SAS for the same key and
times; Azurite accepts them (a wrong key is refused); a backend job
downloads through the libcurl loop with them, nothing reaching the SDK,
and a fresh worker imports nothing of azure.storage; a service that
refuses the key leaves the SDK path (None), asked again only after a while.

Azurite hands out user delegation keys only with OAuth on, which needs
HTTPS: it runs here with ``--oauth basic`` and a self-signed certificate
(``openssl``), and takes a bearer token whose issuer, audience, times are
right (it does not check the token's signature). dlengine's pycurl
handles cannot be told to trust that certificate, so they reach Azurite
through ``harness.cloud_servers.TLSFront`` (plain HTTP on 127.0.0.1, a
TLS-terminating proxy; the token goes over HTTP only to a loopback
address). The SDK, for its side of the comparisons, talks HTTPS to Azurite
directly. dlengine signs SAS version 2025-05-05, which Azurite 3.35
verifies; azure-storage-blob 12.31 signs only 2026-10-06, whose
user-delegation string-to-sign has two lines (signed request headers and
query) Azurite does not know: the SDK's own SAS is refused there, so that
layout is compared with the SDK's text, not served."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from dlengine import errors
from dlengine.sources import azdeleg, azure, signed
from harness.cloud_servers import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    OID,
    TENANT,
    AzuriteServer,
    TLSFront,
    azurite_binary,
    fake_identity,
    self_signed_cert,
)
from harness.home import ROOT

NAMES = ["plain.bin", "dir/a b+c~ü?#%.bin", "x/y=z&q"]


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
        claims = {"aud": self.audience, "iss": f"https://sts.windows.net/{TENANT}/", "nbf": now - 60, "iat": now - 60,
                  "exp": now + 3600, "oid": OID, "tid": TENANT}  # fmt: skip
        return AccessToken(_jwt(claims), now + 3600)


KEY = azdeleg.DelegationKey(OID, TENANT, "2026-12-01T10:00:00Z", "2026-12-08T10:00:00Z", "b", "2025-11-05",
                            base64.b64encode(b"delegation key value 32 bytes!!!").decode())  # fmt: skip


def _sdk_key(key: azdeleg.DelegationKey) -> Any:
    from azure.storage.blob import UserDelegationKey

    sdk = UserDelegationKey()
    sdk.signed_oid, sdk.signed_tid, sdk.signed_start, sdk.signed_expiry = key.oid, key.tid, key.start, key.expiry
    sdk.signed_service, sdk.signed_version, sdk.value = key.service, key.version, key.value
    sdk.signed_delegated_user_tid = key.delegated_user_tid
    return sdk


@pytest.mark.parametrize("delegated", [None, "11111111-2222-3333-4444-555555555555"])
@pytest.mark.parametrize("name", NAMES)
def test_the_url_and_sas_are_the_sdks(name: str, delegated: str | None) -> None:
    """The SDK's blob URL, and its SAS for the same key and expiry at the
    version it signs (its newest); a container's list SAS too."""
    pytest.importorskip("azure.storage.blob", reason="azure-storage-blob is not installed")
    from azure.storage.blob import (
        BlobSasPermissions,
        BlobServiceClient,
        ContainerSasPermissions,
        generate_blob_sas,
        generate_container_sas,
    )
    from azure.storage.blob import _shared_access_signature as shared

    key = azdeleg.DelegationKey(**{**KEY.__dict__, "delegated_user_tid": delegated})
    account = azdeleg.endpoint("https://acc.blob.core.windows.net/")
    assert account is not None and account.name == "acc"
    now = 1796150000.0
    expiry = datetime.datetime.fromtimestamp(now + 3600, datetime.timezone.utc)
    version = shared.X_MS_VERSION
    theirs = generate_blob_sas("acc", "cont", name, user_delegation_key=_sdk_key(key),
                               permission=BlobSasPermissions(read=True), expiry=expiry)  # fmt: skip
    se = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert azdeleg.sas(key, f"/blob/acc/cont/{name}", "r", "b", se, version) == theirs
    sdk_url = BlobServiceClient("https://acc.blob.core.windows.net/", credential=FakeToken()).get_blob_client(
        "cont", name
    )
    ours = azdeleg.blob_url(account, key, "cont", name, 1, now)
    assert ours.split("?")[0] == sdk_url.url
    assert dict(parse_qsl(urlsplit(ours).query))["sv"] == azdeleg.SAS_VERSION
    listing = generate_container_sas("acc", "cont", user_delegation_key=_sdk_key(key),
                                     permission=ContainerSasPermissions(list=True), expiry=expiry)  # fmt: skip
    assert azdeleg.sas(key, "/blob/acc/cont", "l", "c", se, version) == listing
    assert KEY.value not in repr(key) and "value" not in repr(key)


def test_the_account_is_read_as_the_sdk_reads_it() -> None:
    pytest.importorskip("azure.storage.blob", reason="azure-storage-blob is not installed")
    from azure.storage.blob import BlobServiceClient

    for url in ("https://acc.blob.core.windows.net", "https://acc-secondary.blob.core.windows.net/",
                "https://acc.blob.core.chinacloudapi.cn", "https://acc-ipv6.blob.core.windows.net"):  # fmt: skip
        account = azdeleg.endpoint(url)
        sdk = BlobServiceClient(url, credential=FakeToken())
        assert account is not None and account.name == sdk.account_name, url
        assert f"{account.url}/c/b" == sdk.get_blob_client("c", "b").url, url
    emulator = "http://127.0.0.1:10000/devstoreaccount1"
    account = azdeleg.endpoint(emulator)
    sdk = BlobServiceClient(emulator)  # (the SDK refuses a token credential over HTTP)
    assert account is not None and account.name == sdk.account_name == "devstoreaccount1"
    assert f"{account.url}/c/b" == sdk.get_blob_client("c", "b").url
    assert azdeleg.endpoint("http://acc.blob.core.windows.net") is None  # no token over the network in clear
    assert azdeleg.endpoint("https://files.example.com/") is None  # a custom domain: the SDK cannot name it either
    assert azdeleg.endpoint("https://acc.blob.core.windows.net/?sv=x&sig=y") is None  # a SAS: azsas's


@pytest.fixture(scope="module")
def https_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AzuriteServer, Path, TLSFront]]:
    pytest.importorskip("azure.storage.blob", reason="azure-storage-blob is not installed")
    binary = azurite_binary()
    if binary is None or shutil.which("openssl") is None:
        pytest.skip("needs Azurite (.ci/run installs it) and openssl")
    work = tmp_path_factory.mktemp("azurite-https")
    cert, key = self_signed_cert(work)
    server = AzuriteServer(binary).start(work, ("--oauth", "basic", "--cert", str(cert), "--key", str(key)))
    front = TLSFront(server.port, cert).start()
    yield server, cert, front
    front.stop()
    server.stop()


def _https_url(server: AzuriteServer) -> str:
    return f"https://127.0.0.1:{server.port}/{AZURITE_ACCOUNT}"


def _keyed(https_azurite: tuple[AzuriteServer, Path, TLSFront]) -> Any:
    from azure.storage.blob import BlobServiceClient

    server, cert, _ = https_azurite
    credential = {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
    return BlobServiceClient(_https_url(server), credential=credential, connection_verify=str(cert))


@pytest.fixture
def token_env(https_azurite: tuple[AzuriteServer, Path, TLSFront], monkeypatch: pytest.MonkeyPatch) -> Any:
    """This process as a worker with a token credential and a bare account
    URL (the TLS front); a container with a blob stored."""
    _, _, front = https_azurite
    container = f"c{uuid.uuid4().hex[:10]}"
    keyed = _keyed(https_azurite)
    keyed.create_container(container)
    keyed.get_blob_client(container, "dir/a b.bin").upload_blob(b"delegated" * 1000)
    credential = FakeToken()
    monkeypatch.delenv(azure.ENV_CONNECTION_STRING, raising=False)  # the azurite_server fixture's, if it ran
    monkeypatch.setenv(azure.ENV_ACCOUNT_URL, f"http://127.0.0.1:{front.port}/{AZURITE_ACCOUNT}")
    monkeypatch.setattr(azure, "_client", [])
    monkeypatch.setattr(azure, "_credentials", [credential])
    monkeypatch.setattr(azure, "_signers", {})
    monkeypatch.setattr(azure, "_accounts", {})
    monkeypatch.setattr(azure, "_delegation", [])
    monkeypatch.setattr(signed, "_instances", {})
    return container, credential, front


def _fetch(url: str) -> tuple[int, bytes]:
    import pycurl

    body = BytesIO()
    handle = pycurl.Curl()
    try:
        handle.setopt(pycurl.URL, url)
        handle.setopt(pycurl.WRITEDATA, body)
        handle.perform()
        return int(handle.getinfo(pycurl.RESPONSE_CODE)), body.getvalue()
    finally:
        handle.close()


def test_a_token_credential_signs_a_user_delegation_sas(token_env: Any) -> None:
    container, credential, front = token_env
    got = signed.signed_get(f"az://{container}/dir/a b.bin")
    assert got is not None and got.headers == {}
    query = dict(parse_qsl(urlsplit(got.url).query))
    assert query["sp"] == "r" and query["sr"] == "b" and query["sig"] and query["sv"] == azdeleg.SAS_VERSION
    key = azure._delegation[0][1]  # the key Azurite issued for the token's identity signs it
    assert isinstance(key, azdeleg.DelegationKey)
    assert (query["skoid"], query["sktid"], query["skt"], query["ske"]) == (OID, TENANT, key.start, key.expiry)
    assert _fetch(got.url) == (200, b"delegated" * 1000)  # Azurite verifies the signature
    wrong = azdeleg.DelegationKey(**{**key.__dict__, "value": base64.b64encode(b"w" * 32).decode()})
    assert azure._signers
    endpoint = next(iter(azure._signers.values()))
    assert endpoint is not None
    assert _fetch(azdeleg.blob_url(endpoint[0], wrong, container, "dir/a b.bin", 1))[0] == 403
    calls = credential.calls
    for _ in range(5):
        assert signed.signed_get(f"az://{container}/dir/a b.bin") is not None
    assert credential.calls == calls == 1  # the delegation key is kept: no token, no request per blob
    posts = [r for r in front.requests if r[0] == "POST"]
    assert len(posts) == 1 and "comp=userdelegationkey" in posts[0][1]


def test_a_refused_delegation_key_leaves_the_sdk_path(token_env: Any) -> None:
    container, credential, _ = token_env
    credential.audience = "https://someone-else.example"  # Azurite refuses the token
    signer = azure._token_signer()
    assert signer is not None
    with pytest.raises(errors.SourceDeniedError, match="HTTP 403"):
        azure._plain_key(signer)
    assert azure._delegation[0][1] is None  # remembered: not asked again for a while
    azure._delegation[:] = []
    assert signed.signed_get(f"az://{container}/dir/a b.bin") is None
    calls = credential.calls
    assert signed.signed_get(f"az://{container}/dir/a b.bin") is None
    assert credential.calls == calls  # not asked again at once


LISTED = ["a/1.bin", "a/2 two.txt", "a/3+plus.bin", "a/ü~*.bin", "a/sub/4.bin", "b/5.bin", "c"]


def test_the_listing_with_a_token_is_the_sdks(token_env: Any, https_azurite: Any) -> None:
    """List Blobs pages with a list SAS signed by the delegation key: what
    the SDK's ``list_blobs`` with the token gives, page after page."""
    from azure.storage.blob import BlobServiceClient, ContentSettings

    container, credential, _ = token_env
    keyed = _keyed(https_azurite).get_container_client(container)
    for name in LISTED:
        body = name.encode() * 3
        md5 = bytearray(hashlib.md5(body).digest())
        keyed.get_blob_client(name).upload_blob(body, content_settings=ContentSettings(content_md5=md5))
    for selection in ({}, {"prefix": "a/"}, {"suffix": ".bin"}, {"start_after": "a/3+plus.bin"}):
        plain = list(azure.AzureSource(container, page_size=2).list(**selection))
        server, cert, _ = https_azurite
        sdk = BlobServiceClient(_https_url(server), credential=FakeToken(), connection_verify=str(cert))
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(azure, "_token_signer", lambda: None)
            mp.setattr(azure, "_client", [sdk])
            theirs = list(azure.AzureSource(container, page_size=2).list(**selection))
        assert plain == theirs and plain, selection
    assert credential.calls == 1


def test_a_fresh_worker_imports_nothing_of_azure_storage(https_azurite: Any, tmp_path: Path) -> None:
    """A worker's signing and a supervisor's listing with the token
    credential ``_default_credential`` makes (azure-identity's
    DefaultAzureCredential): azure.identity and the namespace are
    imported, nothing of azure.storage nor azure.core; Azurite serves the URL."""
    _, _, front = https_azurite
    container = f"f{uuid.uuid4().hex[:10]}"
    keyed = _keyed(https_azurite)
    keyed.create_container(container)
    keyed.get_blob_client(container, "k.bin").upload_blob(b"fresh" * 100)
    code = (
        "import sys; from dlengine.sources.signed import signed_get;"
        f" got = signed_get('az://{container}/k.bin'); assert got is not None and 'skoid=' in got.url, got;"
        " from dlengine.sources import registry;"
        f" keys = [i.key for i in registry.lister('azure', {container!r}).list()]; assert keys == ['k.bin'], keys;"
        " print(got.url); print(' '.join(sorted(m for m in sys.modules if m == 'azure' or m.startswith('azure.'))))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env.update(AZURE_STORAGE_ACCOUNT_URL=f"http://127.0.0.1:{front.port}/{AZURITE_ACCOUNT}",
               PYTHONPATH=f"{fake_identity(tmp_path)}{os.pathsep}{ROOT}")  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    url, _, modules = res.stdout.partition("\n")
    assert modules.split() == ["azure", "azure.identity"], modules
    assert _fetch(url) == (200, b"fresh" * 100)


def test_a_backend_job_with_a_token_goes_through_the_loop(https_azurite: Any, tmp_path: Path) -> None:
    """An az:// backend job (small blobs and a large one in ranged segments)
    with the token credential of every process: each blob GET is the
    loop's with a Python-signed delegation SAS, no request comes from the
    SDK, one key request per process, and no token or SAS is kept."""
    from azure.storage.blob import ContentSettings

    from tests.conftest import new_home
    from tests.e2e.test_cloud_signed import _catalog, _errors, _secrets_left

    _, _, front = https_azurite
    name = f"t{uuid.uuid4().hex[:10]}"
    keyed = _keyed(https_azurite)
    container = keyed.create_container(name)
    data = {f"z/{i} +x.bin": os.urandom(800 + 777 * i) for i in range(4)}
    data["z/big.bin"] = os.urandom(3 << 20)
    for key, body in data.items():
        md5 = bytearray(hashlib.md5(body).digest())
        container.upload_blob(key, body, content_settings=ContentSettings(content_md5=md5))
    home = new_home(tmp_path / "home")
    for var in [v for v in home.env if v.startswith("AZURE_")]:
        del home.env[var]
    home.env.update(AZURE_STORAGE_ACCOUNT_URL=f"http://127.0.0.1:{front.port}/{AZURITE_ACCOUNT}",
                    PYTHONPATH=f"{fake_identity(tmp_path)}{os.pathsep}{ROOT}",
                    DLENGINE_SEGMENT_THRESHOLD=str(1 << 20))  # fmt: skip
    seen = len(front.requests)
    try:
        job_id = home.submit({"type": "backend", "bucket": {"name": name, "provider": "azure"}})
        res = home.run()
        assert res.returncode == 0, res.stderr[-3000:]
        status = home.status(job_id)
        assert (status["done_cnt"], status["error_cnt"]) == (len(data), 0), _errors(home)
        root = home.mountpaths[0] / "azure" / name
        assert {k: (root / k).read_bytes() for k in data} == data
        assert all(v[5] for v in _catalog(home).values())  # the stored MD5 recorded as the checksum
        assert _secrets_left(home, res.stdout, res.stderr) == []
        ledger = b"".join(p.read_bytes() for p in home.path.glob("ledger.db*"))
        assert b"skoid" not in ledger and OID.encode() not in ledger
    finally:
        home.stop_all()
    requests = front.requests[seen:]
    assert not [r for r in requests if "azsdk" in r[2]], requests  # nothing through the SDK, in any process
    gets = [r for r in requests if r[0] == "GET" and "comp=list" not in r[1]]
    assert gets and all(ua == "dlengine" and "skoid=" in path and "sig=" in path for _, path, ua in gets), gets
    assert len({urlsplit(path).path for _, path, _ in gets}) == len(data)
    assert len(gets) > len(data)  # the large blob in several ranged GETs
    posts = [r for r in requests if r[0] == "POST"]
    assert 1 <= len(posts) <= 3, posts  # the lister's process and the workers', once each
