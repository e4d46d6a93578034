"""The /v1/download endpoints: from a request to a status and a JSON answer.

No sockets here: ``server.py`` reads requests and writes answers; this
module decides what they say, through the Python API (``Client``), as the
CLI does. Bodies are AIStore's: a job request for ``POST``, and for the
others its admin body ``{"id", "regex", "only_active_tasks"}`` (which may
also come as query parameters, for clients that cannot send a body with
GET).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NotRequired, TypedDict
from urllib.parse import parse_qsl

from dlengine.client import Client
from dlengine.errors import NotFoundError, SpecError, StateError

log = logging.getLogger("dlengine.api")

DOWNLOAD = "/v1/download"
ADMIN_FIELDS = ("id", "regex", "only_active_tasks")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


class ErrorBody(TypedDict):
    """The JSON body of an error answer."""

    message: str
    error: str  # the same text
    status: int
    field: NotRequired[str]  # the request field at fault, when one is


class ApiError(Exception):
    """An answer other than success: its status, reason and extra headers."""

    def __init__(self, status: int, message: str, *, field: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}

    def payload(self) -> ErrorBody:
        """AIStore's ``cmn.ErrHTTP`` (``message``, ``status``), which its
        clients print, plus ``error`` (the same text) and ``field``."""
        body: ErrorBody = {"message": self.message, "error": self.message, "status": self.status}
        if self.field:
            body["field"] = self.field
        return body


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int
    payload: object


@dataclass(frozen=True)
class AdminBody:
    """AIStore's body of status, list, abort and remove requests."""

    id: str = ""
    regex: str = ""
    only_active: bool = False


Handler = Callable[[Client, Request], Reply]


# ---------------------------------------------------------------- handlers


def post_job(client: Client, request: Request) -> Reply:
    """Validate and record a job; the supervisor of this process runs it."""
    if request.query:
        raise SpecError("query", "POST takes the job request as its body, not query parameters")
    return Reply(200, {"id": client.submit(request.body, start=False, directories=False)})


def get_jobs(client: Client, request: Request) -> Reply:
    """Status of one job with ``id``; otherwise the list of jobs."""
    admin = admin_body(request, require_id=False)
    if admin.id:
        status = client.status(admin.id, only_active=admin.only_active)
        status.pop("spec", None)  # as `dlengine show ID --json`
        return Reply(200, status)
    return Reply(200, client.list(admin.regex or None, active_only=admin.only_active))


def abort_job(client: Client, request: Request) -> Reply:
    """Abort a job (a finished one is marked aborted, as AIStore does); its summary."""
    admin = admin_body(request, require_id=True)
    client.abort(admin.id)
    return Reply(200, client.summary(admin.id))


def remove_job(client: Client, request: Request) -> Reply:
    """Forget a finished or aborted job; its objects stay."""
    admin = admin_body(request, require_id=True)
    client.remove(admin.id)
    return Reply(200, {"id": admin.id, "removed": True})


ROUTES: dict[str, dict[str, Handler]] = {
    DOWNLOAD: {"GET": get_jobs, "POST": post_job},
    DOWNLOAD + "/abort": {"DELETE": abort_job},
    DOWNLOAD + "/remove": {"DELETE": remove_job},
}


def resolve(method: str, path: str) -> Handler:
    """The handler of a request; 404 for an unknown path, 405 for a method
    the path does not take."""
    methods = ROUTES.get(path.rstrip("/") or "/")
    if methods is None:
        raise ApiError(404, f"no such endpoint: {path}; see {DOWNLOAD}")
    handler = methods.get(method)
    if handler is None:
        allowed = ", ".join(sorted(methods))
        raise ApiError(405, f"{method} is not allowed on {path} (allowed: {allowed})", headers={"Allow": allowed})
    return handler


def call(handler: Handler, client: Client, request: Request) -> Reply:
    """Run a handler; dlengine's errors become 400 or 404 answers."""
    try:
        return handler(client, request)
    except SpecError as exc:
        raise ApiError(400, str(exc), field=exc.field) from None
    except NotFoundError as exc:
        raise ApiError(404, exc.message) from None
    except StateError as exc:
        raise ApiError(400, exc.message) from None


# ------------------------------------------------------------- admin body


def admin_body(request: Request, *, require_id: bool) -> AdminBody:
    """Parse and check an admin body (JSON body and/or query parameters)."""
    fields = _merge(_body_fields(request.body), _query_fields(request.query))
    admin = AdminBody(
        id=_string(fields, "id"),
        regex=_string(fields, "regex"),
        only_active=_boolean(fields, "only_active_tasks"),
    )
    if admin.id and admin.regex:
        raise SpecError("regex", "cannot be given together with id (choose one or the other)")
    if require_id and not admin.id:
        raise SpecError("id", "is required")
    return admin


def _body_fields(body: bytes) -> dict[str, object]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise SpecError("json", f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError("json", f"the request body must be a JSON object, got {_kind(data)}")
    _reject_unknown(data)
    return data


def _query_fields(query: str) -> dict[str, object]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=len(ADMIN_FIELDS) * 2)
    except ValueError as exc:
        raise SpecError("query", str(exc)) from None
    fields: dict[str, object] = {}
    for key, value in pairs:
        if key in fields:
            raise SpecError(key, "given more than once in the query")
        fields[key] = value
    _reject_unknown(fields)
    if "only_active_tasks" in fields:
        fields["only_active_tasks"] = _query_boolean(str(fields["only_active_tasks"]), "only_active_tasks")
    return fields


def _merge(body: dict[str, object], query: dict[str, object]) -> dict[str, object]:
    for key in body.keys() & query.keys():
        raise SpecError(key, "given both in the body and in the query")
    return {**body, **query}


def _reject_unknown(fields: dict[str, object]) -> None:
    for key in fields:
        if key not in ADMIN_FIELDS:
            raise SpecError(key, f"unknown field (known: {', '.join(ADMIN_FIELDS)})")


def _string(fields: dict[str, object], key: str) -> str:
    value = fields.get(key)
    if value is None:  # AIStore's Go client sends empty fields; null is as absent
        return ""
    if not isinstance(value, str):
        raise SpecError(key, f"must be a string, got {_kind(value)}")
    return value


def _boolean(fields: dict[str, object], key: str) -> bool:
    value = fields.get(key)
    if value is None or isinstance(value, bool):
        return bool(value)
    raise SpecError(key, f"must be a boolean, got {_kind(value)}")


def _query_boolean(value: str, key: str) -> bool:
    word = value.strip().lower()
    if word not in _TRUE + _FALSE:
        raise SpecError(key, f"must be true or false, got {value!r}")
    return word in _TRUE


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")
