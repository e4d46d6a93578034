"""Who may drive the API: no web page, and no name but our own.

The default API is loopback-only and token-less, so any web page a user
opens could reach it (issue 13): a cross-site ``fetch`` or form POST needs
no preflight when its body is ``text/plain`` or a form, and a DNS rebinding
page talks to ``127.0.0.1`` under its own name. Browsers always mark such
requests (``Origin``, ``Sec-Fetch-Site``, the page's name in ``Host``) and
cannot send ``Content-Type: application/json`` cross-site without a
preflight that this server never answers; API clients (curl, AIStore's Go
client, requests) send the JSON type and no ``Origin``. So:

- a request body must be ``application/json`` (415 otherwise);
- ``Sec-Fetch-Site`` other than ``none``/``same-origin`` is refused (403);
- an ``Origin`` (``null`` included) that is not this server's is refused (403);
- ``Host`` must name the listen address or a loopback name (403), unless a
  token guards a server listening on every interface.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlsplit

from dlengine.api.routes import ApiError

_ANY_ADDRESS = frozenset({"0.0.0.0", "::"})
_SAME_SITE_OK = frozenset({"none", "same-origin"})
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Authority:
    """The names this server answers to: the listen host as given, the
    address bound, and (always) loopback names."""

    names: frozenset[str]
    any_host: bool  # a token guards a server on every interface: any name

    @classmethod
    def of(cls, hosts: Iterable[str], token: str | None) -> Authority:
        names = frozenset(h.lower().strip("[]") for h in hosts)
        return cls(names, any_host=token is not None and bool(names & _ANY_ADDRESS))

    def allows(self, name: str) -> bool:
        if self.any_host or name in self.names or name == "localhost" or name.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False


def check(headers: Message, authority: Authority, *, has_body: bool, http11: bool) -> None:
    """Refuse a request a web page may have sent (see the module's doc)."""
    host = _host(headers, http11)
    if host is not None and not authority.allows(_name(host)):
        raise ApiError(403, f"Host {host!r} is not this server's name (DNS rebinding guard)", field="Host")
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() not in _SAME_SITE_OK:
        raise ApiError(403, f"cross-site request refused (Sec-Fetch-Site: {site.strip()})", field="Sec-Fetch-Site")
    origin = headers.get("Origin")
    if origin is not None and not _same_origin(origin.strip(), host):
        raise ApiError(403, f"cross-origin request refused (Origin: {origin.strip()[:200]})", field="Origin")
    if has_body:
        _check_content_type(headers.get("Content-Type"))


def _host(headers: Message, http11: bool) -> str | None:
    values = headers.get_all("Host") or []
    if len(values) > 1:
        raise ApiError(400, "more than one Host header", field="Host")
    if not values:
        if http11:
            raise ApiError(400, "HTTP/1.1 request without a Host header", field="Host")
        return None
    host = values[0].strip().lower()
    if not host:
        raise ApiError(400, "empty Host header", field="Host")
    return host


def _name(host: str) -> str:
    """The name in a ``Host`` value, without its port: ``[::1]:80`` → ``::1``."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _same_origin(origin: str, host: str | None) -> bool:
    """The page that sent the request was served by this very server (as the
    client addressed it): ``Origin`` is ``http://`` + ``Host``."""
    if host is None:
        return False
    try:
        parts = urlsplit(origin.lower())
        port = parts.port or 80
    except ValueError:
        return False
    if parts.scheme != "http" or parts.path or parts.query or not parts.hostname:
        return False
    own = urlsplit("http://" + host)
    try:
        return (parts.hostname, port) == (own.hostname, own.port or 80)
    except ValueError:
        return False


def _check_content_type(value: str | None) -> None:
    kind = (value or "").split(";", 1)[0].strip().lower()
    if kind != JSON_TYPE:
        given = f"got {value.strip()[:100]!r}" if value else "none given"
        raise ApiError(415, f"a request body must be sent as Content-Type: {JSON_TYPE} ({given})", field="Content-Type")
