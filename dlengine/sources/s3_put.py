"""A small S3 upload as one presigned PUT through libcurl (issue 16).

boto3's ``put_object`` cost ~0.9 ms of CPU per 10 KiB object on an idle
machine (about half of a Dask worker's CPU per object): request
serialisation, the event hooks, SigV4 with the payload's SHA-256 over
plain HTTP, the answer parsed. Here the URL is signed in the query as the
signed GETs are (``sigv4``, ``UNSIGNED-PAYLOAD``: the body is checked by
its ``Content-MD5``, which is a signed header, as are the metadata), and
sent with a pycurl handle kept per thread (its connections reused). The
SDK stays for multipart and for what the presigner does not cover.

Errors: libcurl's through ``engine.curl.curl_error`` (connect, timeout,
reset: transient), the store's answer by its S3 error code and status
through ``s3._classify`` (5xx, SlowDown, throttling: transient; a wrong
digest, denied, no such bucket: permanent).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pycurl

from dlengine import errors
from dlengine.sources.s3plain import error_code

__all__ = ["put"]

_local = threading.local()
ERROR_BODY_LIMIT = 64 << 10  # bytes of an error answer kept (its code is near the start)


def _handle() -> Any:
    """This thread's pycurl handle (reset per request: its connection
    cache stays, so requests to one store reuse their connections)."""
    handle = getattr(_local, "handle", None)
    if handle is None:
        handle = _local.handle = pycurl.Curl()
    else:
        handle.reset()
    return handle


def put(
    url: str,
    headers: Mapping[str, str],
    data: Path | bytes,
    size: int,
    timeout: float,
    what: str,
    classify: Callable[[str, int, str], errors.DlengineError],
) -> None:
    """PUT ``data`` (a file, or bytes in memory; ``size`` bytes) to the presigned ``url``
    with ``headers`` (the signed ones, exactly as signed). ``what`` names
    the object in errors (never the URL: it carries the credential);
    ``classify(code, status, what)`` makes the store's refusal an error."""
    handle = _handle()
    answer = io.BytesIO()

    def keep(data: bytes) -> None:
        if answer.tell() < ERROR_BODY_LIMIT:
            answer.write(data)

    # no "Expect: 100-continue": the body is small, one round trip less
    lines = [f"{name}: {value}" for name, value in headers.items()]
    lines.append("Expect:")
    with nullcontext() if isinstance(data, bytes) else data.open("rb") as body:
        handle.setopt(pycurl.URL, url)
        if body is None:  # bytes: libcurl sends them from memory, no read callback into Python per chunk
            handle.setopt(pycurl.CUSTOMREQUEST, "PUT")
            handle.setopt(pycurl.POSTFIELDS, data)
            lines.append("Content-Type:")  # (a POST's default form type: none, as with UPLOAD)
        else:
            handle.setopt(pycurl.UPLOAD, 1)
            handle.setopt(pycurl.READFUNCTION, body.read)
            handle.setopt(pycurl.INFILESIZE_LARGE, size)
        handle.setopt(pycurl.HTTPHEADER, lines)
        handle.setopt(pycurl.WRITEFUNCTION, keep)
        handle.setopt(pycurl.NOSIGNAL, 1)
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, int(timeout * 1000))
        handle.setopt(pycurl.LOW_SPEED_LIMIT, 1)  # a store that stops answering: a timeout, not a hang
        handle.setopt(pycurl.LOW_SPEED_TIME, max(1, int(timeout)))
        try:
            handle.perform()
        except pycurl.error as exc:
            from dlengine.engine.curl import curl_error  # here: the loop's module imports the sources

            code, message = exc.args
            raise curl_error(code, str(message), what) from None
    status = int(handle.getinfo(pycurl.RESPONSE_CODE))
    if 200 <= status < 300:
        return
    raise classify(error_code(answer.getvalue()), status, what)
