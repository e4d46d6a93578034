"""Where the API listens, and who may talk to it.

``--listen HOST:PORT`` is parsed here; binding anywhere but loopback needs
a bearer token (``--token-file``), read here too. A token is never part of
an error message or a log line.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from dlengine.errors import SpecError

log = logging.getLogger("dlengine.api")

_ALL_INTERFACES = "0.0.0.0"


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def is_loopback(self) -> bool:
        """True only if every address the host stands for is a loopback one."""
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(str(info[4][0])).is_loopback for info in infos)


def parse_listen(text: str) -> ListenAddress:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` (every interface) or ``PORT``
    (loopback). Port 0 picks a free port."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        return ListenAddress("127.0.0.1", _port(text))
    host, sep, port = text.rpartition(":")
    if not sep:
        raise SpecError("--listen", f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise SpecError("--listen", f"write an IPv6 address in brackets, e.g. [::1]:8080, got {text!r}")
    return ListenAddress(host or _ALL_INTERFACES, _port(port))


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise SpecError("--listen", f"port must be a number from 0 to 65535, got {text!r}")
    return int(text)


def read_token(path: str) -> str:
    """The bearer token in ``path``: one line of visible ASCII, surrounding
    whitespace ignored."""
    try:
        raw = Path(path).read_bytes()
        info = Path(path).stat()
    except OSError as exc:
        raise SpecError("--token-file", f"cannot read {path}: {exc.strerror or exc}") from None
    token = raw.decode("ascii", errors="replace").strip()
    if not token:
        raise SpecError("--token-file", f"{path} is empty")
    if not all(33 <= ord(c) <= 126 for c in token):
        raise SpecError("--token-file", f"{path} must hold one token of visible ASCII characters, no spaces")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("token file %s is readable by other users; chmod 600 it", path)
    return token


def require_token_off_loopback(address: ListenAddress, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token."""
    if token is None and not address.is_loopback():
        raise SpecError(
            "--listen",
            f"{address} is not a loopback address; serving it needs --token-file FILE"
            " (clients then send 'Authorization: Bearer <token>')",
        )
