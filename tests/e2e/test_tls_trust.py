"""HTTPS that should verify does: the pycurl wheel's libcurl looks for its
CA bundle where it was built (a Red Hat path) and reads no environment
variable, so without ``net.tls`` every HTTPS download failed verification
on Debian and Ubuntu. A server whose certificate the user trusts through
``SSL_CERT_FILE`` (the OpenSSL convention, as requests and pip honour it)
serves its object; the same server is refused without it."""

from __future__ import annotations

import http.server
import os
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlengine.net import tls
from tests.conftest import new_home, self_signed_cert

BODY = os.urandom(50_000)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.send_header("ETag", '"tls-v1"')
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, certificate) of an HTTPS server on 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = self_signed_cert(tmp)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def _download(tmp: Path, url: str, env: dict[str, str]) -> tuple[dict[str, object], bytes | None]:
    home = new_home(tmp / "home")
    for name in (*tls.ENV_FILES, "SSL_CERT_DIR"):
        home.env.pop(name, None)
    home.env.update(env, DLENGINE_ATTEMPTS="1")
    job = home.submit({"type": "single", "link": f"{url}/obj.bin", "bucket": {"name": "t"}})
    home.run(timeout=60)
    path = home.find("ais", "t", "obj.bin")
    return home.status(job), None if path is None else path.read_bytes()


def test_a_certificate_trusted_through_ssl_cert_file_verifies(https: tuple[str, Path], tmp_path: Path) -> None:
    url, cert = https
    status, stored = _download(tmp_path, url, {"SSL_CERT_FILE": str(cert)})
    assert stored == BODY, status


def test_without_it_the_same_server_is_refused(https: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = https
    status, stored = _download(tmp_path, url, {})
    assert stored is None
    errors = status["download_errors"]
    assert errors and "certificate verification failed" in errors[0]["error"], status


def test_the_bundle_is_one_that_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a variable: the system's bundle or certifi's, never a path
    that is not there (the wheel's default on this Debian box)."""
    for name in (*tls.ENV_FILES, "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    tls.ca_options.cache_clear()
    try:
        options = dict(tls.ca_options())
        import pycurl

        assert os.path.isfile(options[pycurl.CAINFO])
        monkeypatch.setenv("CURL_CA_BUNDLE", "/some/bundle.pem")
        tls.ca_options.cache_clear()
        assert dict(tls.ca_options())[pycurl.CAINFO] == "/some/bundle.pem"
    finally:
        tls.ca_options.cache_clear()
