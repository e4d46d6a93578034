"""GCS without google-cloud-storage (``sources.gcsplain``, issue 17): a
listing through the JSON API and pycurl gives what the SDK's
``list_blobs`` gave (names with spaces, ``+``, unicode; prefix, suffix,
start after), refusals as the same error classes; a worker's signed GET
and a supervisor's listing import nothing of google.* on the emulator,
and with credentials (a service account's key file whose token endpoint
is a server of this test) only google-auth: the token is asked once, through
pycurl, and sent as the bearer of the GET."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dlengine import errors
from dlengine.sources import gcs, gcsplain
from harness.cloud_servers import GCSServer

ROOT = Path(__file__).resolve().parents[2]
KEYS = ["a/1.bin", "a/2 two.txt", "a/3+plus.bin", "a/ü~*.bin", "a/sub/4.bin", "b/5.bin", "c"]


def _listing(bucket: str, plain: bool, **kw: str) -> list[Any]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gcsplain, "_cache", {})
        if not plain:
            mp.setattr(gcsplain, "access", lambda: None)
        return list(gcs.GCSSource(bucket, page_size=3).list(**kw))


@pytest.fixture
def bucket(gcs_server: GCSServer) -> str:
    made = gcs_server.client().create_bucket(f"pl-{uuid.uuid4().hex[:10]}")
    for key in KEYS:
        made.blob(key).upload_from_string(key.encode() * 3)
    return str(made.name)


@pytest.mark.parametrize("selection", [{}, {"prefix": "a/"}, {"suffix": ".bin"}, {"start_after": "a/3+plus.bin"}])
def test_plain_listing_is_the_sdks(bucket: str, selection: dict[str, str]) -> None:
    plain = _listing(bucket, True, **selection)
    sdk = _listing(bucket, False, **selection)
    assert plain == sdk and plain
    if not selection:
        assert [o.key for o in plain] == sorted(KEYS)
        assert all(o.version and o.checksums.keys() == {"md5", "crc32c"} for o in plain)
        assert all(o.last_modified and o.last_modified.endswith(" GMT") for o in plain)


def test_plain_listing_of_a_missing_bucket_is_not_found(gcs_server: GCSServer) -> None:
    with pytest.raises(errors.SourceNotFoundError, match="HTTP 404"):
        _listing(f"gone-{uuid.uuid4().hex[:8]}", True)


def test_status_errors_are_the_sdks_classes() -> None:
    read = {s: type(gcsplain.status_error(s, "m", "gs://b/")) for s in (401, 403, 404, 412, 429, 503, 400)}
    assert read == {
        401: errors.SourceDeniedError,
        403: errors.SourceDeniedError,
        404: errors.SourceNotFoundError,
        412: errors.SourceChangedError,
        429: errors.ServerBusyError,
        503: errors.ServerBusyError,
        400: errors.SourceHTTPError,
    }


# what a worker and a supervisor do: sign a GET, list the bucket; which google.* modules that took
_PROBE = (
    "import sys, json; from dlengine.sources.signed import signed_get; from dlengine.sources import registry;"
    " a = signed_get('gs://{b}/a/1.bin'); b = signed_get('gs://{b}/c');"
    " keys = [i.key for i in registry.lister('gcp', '{b}').list()];"
    " print(json.dumps([a.url, dict(a.headers), dict(b.headers), keys,"
    " sorted({{m.split('.')[0] + '.' + m.split('.')[1] for m in sys.modules if m.startswith('google.')}}),"
    " 'requests' in sys.modules]))"
)


def _probe(bucket: str, env: dict[str, str]) -> list[Any]:
    code = _PROBE.format(b=bucket)
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return list(json.loads(res.stdout.strip().splitlines()[-1]))


def _clean_env() -> dict[str, str]:
    drop = ("STORAGE_EMULATOR_HOST", "API_ENDPOINT_OVERRIDE", "GOOGLE_", "CLOUDSDK_", "DLENGINE_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def test_emulator_gets_and_listing_import_nothing_of_google(gcs_server: GCSServer, bucket: str) -> None:
    url, first, second, keys, google, requests = _probe(bucket, {**_clean_env(), **gcs_server.env})
    assert url == f"http://127.0.0.1:{gcs_server.port}/download/storage/v1/b/{bucket}/o/a%2F1.bin?alt=media"
    assert first == second == {}  # anonymous: no Authorization at all
    assert keys == sorted(KEYS)
    assert google == [] and requests is False


class _TokenEndpoint(BaseHTTPRequestHandler):
    """An OAuth token endpoint: every POST gets a fresh access token."""

    calls: list[str] = []  # reset by the fixture

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.calls.append(body)
        answer = json.dumps({"access_token": f"tok-{len(self.calls)}", "expires_in": 3600, "token_type": "Bearer"})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def token_endpoint() -> Iterator[tuple[str, list[str]]]:
    _TokenEndpoint.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/token", _TokenEndpoint.calls
    finally:
        server.shutdown()
        server.server_close()


def _service_account(path: Path, token_uri: str) -> Path:
    """A service account's key file (a fresh RSA key) whose tokens come
    from ``token_uri`` (google-auth honours it for this type only)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    info = {"type": "service_account", "project_id": "p", "private_key_id": "k1", "private_key": pem.decode(),
            "client_email": "sa@p.iam.gserviceaccount.com", "client_id": "1", "token_uri": token_uri}  # fmt: skip
    path.write_text(json.dumps(info))
    return path


def test_credentials_give_a_bearer_token_through_pycurl(
    gcs_server: GCSServer, bucket: str, token_endpoint: tuple[str, list[str]], tmp_path: Path
) -> None:
    token_uri, calls = token_endpoint
    adc = _service_account(tmp_path / "sa.json", token_uri)
    env = {**_clean_env(), "GOOGLE_APPLICATION_CREDENTIALS": str(adc)}
    env["API_ENDPOINT_OVERRIDE"] = f"http://127.0.0.1:{gcs_server.port}"  # the emulator, reached with a token
    url, first, second, keys, google, requests = _probe(bucket, env)
    assert url.startswith(f"http://127.0.0.1:{gcs_server.port}/download/storage/v1/b/{bucket}/o/")
    assert first["authorization"] == second["authorization"] == "Bearer tok-1"  # (and google-auth's metrics header)
    assert len(calls) == 1 and "grant_type=urn" in calls[0] and "assertion=" in calls[0]  # once per process
    assert keys == sorted(KEYS)
    assert google == ["google.auth", "google.oauth2"] and requests is False  # no SDK, no requests


def test_a_refused_refresh_is_an_auth_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.cloud_servers import free_port

    adc = _service_account(tmp_path / "sa.json", f"http://127.0.0.1:{free_port()}/token")
    for name in ("STORAGE_EMULATOR_HOST", "API_ENDPOINT_OVERRIDE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    monkeypatch.setattr(gcsplain, "_cache", {})
    where = gcsplain.access()
    assert where is not None and where.endpoint == gcsplain.DEFAULT_ENDPOINT and "anonymous=False" in repr(where)
    with pytest.raises(errors.SourceDeniedError, match="credentials"):
        where.headers("https://storage.googleapis.com/x")
