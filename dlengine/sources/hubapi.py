"""The Hub's API for a download's listing (the revision's commit, the tree
pages) through one pycurl easy handle, not urllib3: a re-run that asks
the Hub once, or a listing of a few files, should not import urllib3, ssl,
http.client and email (more than the rest of the command together). The
same answers as ``HFSource.api_page``: the token to the Hub's origin only,
the Hub's own redirects (a renamed repo) followed on its origin, its error
statuses read by ``hfroute.status_error``, every connection's address
checked by the egress policy.
"""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import urljoin

import pycurl

from dlengine import errors
from dlengine.net import egress, tls
from dlengine.sources.hfroute import same_origin, status_error, token

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
_PROTOCOLS = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS


class HubAPI:
    """GETs of the Hub's API on one reused handle (and connection)."""

    def __init__(self) -> None:
        self._handle: Any = None

    def page(self, url: str, what: str, timeout: float = 60.0) -> tuple[Any, str | None]:
        """The JSON answer of one GET, and the ``Link: rel="next"`` header."""
        for _ in range(MAX_REDIRECTS):
            status, reason, headers, body = self._get(url, what, timeout)
            location = headers.get("location")
            if status in REDIRECTS and location and same_origin(urljoin(url, location), url):
                url = urljoin(url, location)
                continue
            if status >= 400:
                raise status_error(what, status, headers, token() is not None, reason)
            if status != 200:
                raise errors.SourceHTTPError(f"{what}: unexpected HTTP {status} from the Hub")
            try:
                return json.loads(body), headers.get("link")
            except ValueError:
                raise errors.SourceHTTPError(f"{what}: the Hub's answer is not JSON") from None
        raise errors.SourceHTTPError(f"{url}: more than {MAX_REDIRECTS} redirects on the Hub")

    def _get(self, url: str, what: str, timeout: float) -> tuple[int, str, dict[str, str], bytes]:
        """(status, reason, headers with lower-case names, body) of one GET."""
        if self._handle is None:
            self._handle = pycurl.Curl()
        handle = self._handle
        handle.reset()
        sent = ["Accept: application/json", "Accept-Encoding: identity", "User-Agent: dlengine"]
        secret = token()
        if secret:
            sent.append(f"Authorization: Bearer {secret}")
        lines: list[bytes] = []
        chunks: list[bytes] = []
        refused: list[errors.DlengineError] = []
        handle.setopt(pycurl.URL, url)
        tls.configure(handle)
        handle.setopt(pycurl.HTTPHEADER, sent)
        handle.setopt(pycurl.NOSIGNAL, 1)
        handle.setopt(pycurl.PROTOCOLS, _PROTOCOLS)
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(timeout * 1000)))
        handle.setopt(pycurl.TIMEOUT_MS, max(1, int(timeout * 1000)))
        handle.setopt(pycurl.HEADERFUNCTION, lines.append)
        handle.setopt(pycurl.WRITEFUNCTION, chunks.append)
        handle.setopt(pycurl.OPENSOCKETFUNCTION, lambda purpose, address: _open_socket(address, refused))
        try:
            handle.perform()
        except pycurl.error as exc:
            if refused:
                raise refused[0] from None
            from dlengine.engine.curl import curl_error  # the same reading of libcurl's errors

            code, message = exc.args[0], str(exc.args[1]) if len(exc.args) > 1 else ""
            raise curl_error(code, message, what) from None
        status = int(handle.getinfo(pycurl.RESPONSE_CODE))
        reason, headers = _headers(lines)
        return status, reason, headers, b"".join(chunks)


def _open_socket(address: Any, refused: list[errors.DlengineError]) -> Any:
    try:
        egress.check_address(str(address.addr[0]))
    except errors.DlengineError as exc:
        refused.append(exc)
        return pycurl.SOCKET_BAD
    return socket.socket(address.family, address.socktype, address.protocol)


def _headers(lines: list[bytes]) -> tuple[str, dict[str, str]]:
    """The last answer's reason phrase and headers (an interim 100 or a
    followed hop starts a new block)."""
    reason, headers = "", dict[str, str]()
    for raw in lines:
        line = raw.decode("latin-1").rstrip("\r\n")
        if line.startswith("HTTP/"):
            reason, headers = (line.split(" ", 2)[2] if line.count(" ") >= 2 else ""), {}
        elif ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return reason, headers
