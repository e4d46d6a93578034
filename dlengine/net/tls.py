"""Which certificate authorities libcurl trusts.

The pycurl wheel's libcurl looks for the CA bundle where it was built
(``/etc/pki/tls/certs/ca-bundle.crt``, Red Hat's place) and reads no
environment variable: on Debian, Ubuntu or Alpine every HTTPS request
would fail verification. Every handle is told the bundle instead, once
per request (``configure``; a reset handle forgets it), looked up once
per process: the first of ``SSL_CERT_FILE``, ``CURL_CA_BUNDLE``,
``REQUESTS_CA_BUNDLE`` (and ``SSL_CERT_DIR``) that is set, else the
system's bundle, else certifi's (installed with requests).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import pycurl

ENV_FILES = ("SSL_CERT_FILE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE")
SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",  # Red Hat, Fedora
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # macOS, BSDs
)


@functools.lru_cache(maxsize=1)
def ca_options() -> tuple[tuple[int, str], ...]:
    """(option, value) pairs for a handle: CAINFO and, if given, CAPATH."""
    options: list[tuple[int, str]] = []
    named = next((os.environ[name] for name in ENV_FILES if os.environ.get(name)), None)
    bundle = named or next((path for path in SYSTEM_BUNDLES if os.path.isfile(path)), None) or _certifi()
    if bundle:
        options.append((pycurl.CAINFO, bundle))
    directory = os.environ.get("SSL_CERT_DIR")
    if directory:
        options.append((pycurl.CAPATH, directory))
    return tuple(options)


def configure(handle: Any) -> None:
    """Tell ``handle`` (new or reset) which authorities to trust."""
    for option, value in ca_options():
        handle.setopt(option, value)


def _certifi() -> str | None:
    try:
        import certifi
    except ImportError:
        return None
    where: str = certifi.where()
    return where
