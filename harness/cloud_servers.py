"""Cloud servers on 127.0.0.1 for the tests and the bench.

- ``s3_server``: moto's S3 in this process, behind a WSGI wrapper that
  counts every request (method, path, query), so tests can assert that an
  unchanged object cost no GET.
- ``gcs_server``: gcp-storage-emulator in this process (in memory).
- ``azurite_server``: Azurite (Node) in a child process, from the cache
  directory ``.ci/run`` installs it into (the suite installs it there itself
  only with DLENGINE_INSTALL_AZURITE=1); skipped, saying so, without it.

Each exposes ``env``: the SDK's own variables that point a client (in this
process or in a worker process) at it. The tests' session fixtures of the
same names are in ``tests/conftest_cloud.py``.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AZURITE_VERSION = "3.35.0"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_ACCOUNT = "devstoreaccount1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


# ----------------------------------------------------------------- S3


def s3_env(endpoint: str, access_key: str = "testing", secret_key: str = "testing") -> dict[str, str]:
    """The AWS SDK's variables that point a client (boto3 here, dlengine's
    signed GETs in a worker) at an S3-compatible store on 127.0.0.1."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@dataclass
class S3Server:
    """moto's S3 on a free port, counting requests."""

    port: int = 0
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    _server: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return s3_env(self.endpoint)

    def start(self) -> S3Server:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server("127.0.0.1", 0, self._counting(app), threaded=True)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True, name="moto").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()

    def _counting(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            with self._lock:
                self.requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], environ["QUERY_STRING"]))
            return app(environ, start_response)

        return wrapped

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.endpoint, **_aws_keys())

    def count(self, method: str | None = None, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for m, p, _ in self.requests if (method in (None, m)) and (path in (None, p)))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()


def _aws_keys() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


# ---------------------------------------------------------------- GCS


@dataclass
class GCSServer:
    """gcp-storage-emulator, in memory."""

    port: int = 0
    _server: Any = None

    @property
    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.port}"}

    def start(self) -> GCSServer:
        from gcp_storage_emulator.server import create_server

        logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
        self.port = free_port()
        self._server = create_server("127.0.0.1", self.port, in_memory=True)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        options = {"api_endpoint": f"http://127.0.0.1:{self.port}"}
        return storage.Client(project="test", credentials=AnonymousCredentials(), client_options=options)


# -------------------------------------------------------------- Azure


def azurite_dir() -> Path:
    """Where ``.ci/run`` (or the fixture) installs Azurite with npm."""
    default = Path.home() / ".cache" / "dlengine" / f"azurite-{AZURITE_VERSION}"
    return Path(os.environ.get("DLENGINE_AZURITE_DIR") or default)


INSTALL_OPT_IN = "DLENGINE_INSTALL_AZURITE"  # =1: the suite may npm-install Azurite itself


def azurite_binary() -> Path | None:
    """The azurite-blob launcher; installed here only on request
    (DLENGINE_INSTALL_AZURITE=1): a test run must not npm-install into the
    user's home unasked (issue 11). ``.ci/run`` installs it."""
    binary = azurite_dir() / "node_modules" / ".bin" / "azurite-blob"
    if binary.exists():
        return binary
    if os.environ.get(INSTALL_OPT_IN) != "1" or not (shutil.which("node") and shutil.which("npm")):
        return None
    azurite_dir().mkdir(parents=True, exist_ok=True)
    cmd = ["npm", "install", "--prefix", str(azurite_dir()), f"azurite@{AZURITE_VERSION}", "--no-audit", "--no-fund"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    return binary


@dataclass
class AzuriteServer:
    binary: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def connection_string(self, key: str = AZURITE_KEY) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};"
        )

    @property
    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string()}

    def start(self, workdir: Path, extra: tuple[str, ...] = ()) -> AzuriteServer:
        """``extra``: more options (``--oauth basic --cert C --key K``: HTTPS and bearer tokens)."""
        self.port = free_port()
        cmd = [str(self.binary), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--inMemoryPersistence"]
        cmd += ["--disableTelemetry", "--silent", "--skipApiVersionCheck", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def client(self, key: str = AZURITE_KEY) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string(key))


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class TLSFront:
    """Plain HTTP on 127.0.0.1 in front of an HTTPS server of this machine
    (Azurite with ``--oauth basic``, which takes bearer tokens only over
    HTTPS), trusting that server's certificate: dlengine's libcurl handles
    cannot be told to trust a test certificate, so they speak HTTP to this
    front, as to a TLS-terminating proxy. Every request is recorded:
    (method, path with query, User-Agent)."""

    upstream_port: int
    cert: Path
    port: int = 0
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    _server: Any = None

    def start(self) -> TLSFront:
        import http.client
        import ssl

        context = ssl.create_default_context(cafile=str(self.cert))

        def forward(handler: Any) -> None:
            self.requests.append((handler.command, handler.path, handler.headers.get("User-Agent", "")))
            upstream = http.client.HTTPSConnection("127.0.0.1", self.upstream_port, context=context, timeout=60)
            try:
                answer = _relay_request(handler, upstream)
                data = answer.read()
                head = handler.command == "HEAD"
                length = (answer.getheader("Content-Length") or "0") if head else str(len(data))
                _relay_head(handler, answer, [], length)
                if not head:
                    handler.wfile.write(data)
            finally:
                upstream.close()

        self._server, self.port = _serve(_front_handler(forward))
        return self

    def stop(self) -> None:
        _close(self._server)


@dataclass
class Exchange:
    """One request a ``PacedFront`` forwarded and the answer it got."""

    method: str
    path: str  # with the query
    headers: dict[str, str]  # the request's, lower-case names
    status: int = 0
    answer: dict[str, str] = field(default_factory=dict)  # the answer's headers, lower-case names

    @property
    def range_start(self) -> int | None:
        """Where the request's ``Range: bytes=N-`` starts (None without one)."""
        value = self.headers.get("range")
        return int(value.removeprefix("bytes=").partition("-")[0]) if value else None


@dataclass
class PacedFront:
    """Plain HTTP on 127.0.0.1 in front of a server of this machine (a
    cloud emulator), recording every exchange and sending bodies at most
    ``rate`` bytes/s per connection (None: as fast as they come), so that a
    test can kill a download in the middle of its segments. ``add``:
    headers put on every answer (what a real service sends and the
    emulator does not)."""

    upstream_port: int
    rate: int | None = None
    add: dict[str, str] = field(default_factory=dict)
    port: int = 0
    exchanges: list[Exchange] = field(default_factory=list)
    _server: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PacedFront:
        import http.client

        def forward(handler: Any) -> None:
            seen = Exchange(handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()})
            self.exchanges.append(seen)
            upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
            try:
                answer = _relay_request(handler, upstream)
                seen.status = answer.status
                added = list(self.add.items())
                seen.answer = {k.lower(): v for k, v in [*answer.getheaders(), *added]}
                declared = answer.getheader("Content-Length")
                data = None if declared is not None or handler.command == "HEAD" else answer.read()
                _relay_head(handler, answer, added, declared if data is None else str(len(data)))
                if handler.command == "HEAD":
                    return
                if data is not None:
                    handler.wfile.write(data)
                else:
                    self._copy(answer, handler.wfile, int(declared or 0))
            except OSError:
                handler.close_connection = True  # the client went away (killed)
            finally:
                upstream.close()

        self._server, self.port = _serve(_front_handler(forward))
        return self

    def _copy(self, source: Any, sink: Any, length: int) -> None:
        """``length`` bytes of ``source`` to ``sink``, paced to ``rate`` (read at each piece)."""
        began, done = time.monotonic(), 0
        while done < length:
            piece = source.read(min(16 << 10, length - done))
            if not piece:
                raise ConnectionError("the upstream answer ended early")
            sink.write(piece)
            done += len(piece)
            rate = self.rate
            if rate:
                ahead = done / rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)

    def since(self, mark: int, path_part: str) -> list[Exchange]:
        """The exchanges from the ``mark``-th on whose path contains ``path_part``."""
        return [e for e in self.exchanges[mark:] if path_part in e.path]

    def stop(self) -> None:
        _close(self._server)


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) for HTTPS on 127.0.0.1 in ``directory``, made
    with openssl (OSError or CalledProcessError without it)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _front_handler(forward: Callable[[Any], None]) -> Any:
    """A quiet HTTP/1.1 request handler class that hands every request
    (GET, HEAD, PUT, POST, DELETE) to ``forward(handler)``."""
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            forward(self)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

    return Handler


def _relay_request(handler: Any, upstream: Any) -> Any:
    """The handler's request (its body, its headers but the hop-by-hop ones
    and Host) sent on the ``upstream`` connection; the answer."""
    length = int(handler.headers.get("Content-Length") or 0)
    body = handler.rfile.read(length) if length else None
    headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
    upstream.request(handler.command, handler.path, body=body, headers=headers)
    return upstream.getresponse()


def _relay_head(handler: Any, answer: Any, extra: list[tuple[str, str]], length: str) -> None:
    """The answer's status line and headers (but the hop-by-hop ones and
    its length), then ``extra`` ones and ``Content-Length: length``."""
    handler.send_response(answer.status, answer.reason)
    for name, value in [*answer.getheaders(), *extra]:
        if name.lower() not in _HOP_BY_HOP | {"content-length"}:
            handler.send_header(name, value)
    handler.send_header("Content-Length", length)
    handler.end_headers()


def _serve(handler: Any) -> tuple[Any, int]:
    """A threaded HTTP server on 127.0.0.1 (a free port) serving ``handler``
    (a BaseHTTPRequestHandler class) in the background."""
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def _close(server: Any) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()


TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OID = "0b8f5b8e-aaaa-bbbb-cccc-111122223333"

# a stand-in for azure-identity's DefaultAzureCredential in the processes the tests and
# the bench start (azure-identity is not installed here): ``fake_identity`` puts it on
# their PYTHONPATH, ``azure`` being a namespace package. Azurite (--oauth basic) takes
# its tokens: issuer, audience and times right, the signature not checked.
FAKE_IDENTITY = f'''
import base64, json, time
from typing import NamedTuple


class AccessToken(NamedTuple):
    token: str
    expires_on: int


class DefaultAzureCredential:
    def get_token(self, *scopes, **kwargs):
        def part(data):
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

        now = int(time.time())
        claims = {{"aud": "https://storage.azure.com", "iss": "https://sts.windows.net/{TENANT}/", "nbf": now - 60,
                   "iat": now - 60, "exp": now + 3600, "oid": "{OID}", "tid": "{TENANT}"}}
        return AccessToken(part({{"alg": "RS256", "typ": "JWT"}}) + "." + part(claims) + ".c2lnbmF0dXJl", now + 3600)
'''


def fake_identity(root: Path) -> Path:
    """A directory holding ``azure/identity/__init__.py`` (FAKE_IDENTITY), for a PYTHONPATH."""
    package = root / "fake-identity" / "azure" / "identity"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(FAKE_IDENTITY)
    return root / "fake-identity"


@dataclass
class ManagedIdentityEndpoint:
    """An App Service managed-identity endpoint on 127.0.0.1 (what
    ``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER`` point azure-identity's
    ``ManagedIdentityCredential``, hence ``DefaultAzureCredential``, at)
    handing out tokens Azurite takes, as FAKE_IDENTITY's."""

    port: int = 0
    calls: int = 0
    _server: Any = None

    @property
    def env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": f"http://127.0.0.1:{self.port}/msi/token", "IDENTITY_HEADER": "test-header"}

    def start(self) -> ManagedIdentityEndpoint:
        import base64
        import json
        from http.server import BaseHTTPRequestHandler

        endpoint = self

        def part(data: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                endpoint.calls += 1
                now = int(time.time())
                claims = {"aud": "https://storage.azure.com", "iss": f"https://sts.windows.net/{TENANT}/",
                          "nbf": now - 60, "iat": now - 60, "exp": now + 3600, "oid": OID, "tid": TENANT}  # fmt: skip
                token = f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"
                body = json.dumps({"access_token": token, "expires_on": str(now + 3600), "token_type": "Bearer",
                                   "resource": "https://storage.azure.com"}).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server, self.port = _serve(Handler)
        return self

    def stop(self) -> None:
        _close(self._server)
