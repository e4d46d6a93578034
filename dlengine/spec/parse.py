"""Job request (JSON) -> validated ``JobSpec``, and back.

Everything a job will do is checked here, before anything is created: a
bad field, a bad object name or a duplicate name rejects the whole job
with a ``SpecError`` naming the field. Range templates are checked
arithmetically and never expanded here.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypedDict
from urllib.parse import unquote, urlsplit

from dlengine import providers
from dlengine.errors import SpecError
from dlengine.providers import Provider, parse_provider
from dlengine.redact import redact
from dlengine.spec.durations import duration_field, format_duration, size_field
from dlengine.spec.model import BucketRef, HubOptions, JobSpec, JobType, Limits, ObjectRef
from dlengine.spec.names import (
    derive_name,
    escape_object_name,
    is_secret_header,
    join_subdir,
    normalize_link,
    normalize_object_name,
    validate_bucket_name,
    validate_object_name,
)
from dlengine.spec.template import BraceRange, Template, parse_template

_TYPE_NAMES = frozenset(t.value for t in JobType)
_JOB_TYPES = ", ".join(t.value for t in JobType)
_COMMON_FIELDS = ("type", "bucket", "description", "timeout", "limits", "headers")
# Fields AIStore's Go client always sends; accepted so its requests work as-is.
_AISTORE_FIELDS = ("progress_interval", "etl_name", "etl_args")
_TYPE_FIELDS: dict[JobType, tuple[str, ...]] = {
    JobType.SINGLE: ("link", "object_name", "from_remote"),
    JobType.MULTI: ("objects",),
    JobType.RANGE: ("template", "subdir"),
    JobType.BACKEND: ("prefix", "suffix", "sync", "synchronize", "backend_bck"),
}
_HF_FIELDS = ("repo_type", "revision", "include", "exclude")
_HF_REPO_TYPES = ("model", "dataset")
_HEADER_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_MAX_LISTED_DUPLICATES = 10
MAX_CONNECTIONS = 100_000
# Headers dlengine sets itself: framing (a user's Content-Length or
# Transfer-Encoding would desynchronise the connection, a Host would send a
# request for one site to another) and the Range/conditional headers of
# resume and skip-unchanged (a user's Range would store a slice as the object).
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "range",
        "if-range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
    }
)

Body = dict[str, object]


# --------------------------------------------------------------------- JSON


class _JsonObject(dict[str, object]):
    """A decoded JSON object that remembers keys given more than once
    (``json`` would silently keep the last one)."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, object]]) -> _JsonObject:
    obj = _JsonObject(pairs)
    if len(obj) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        obj.duplicates = tuple(key for key, n in counts.items() if n > 1)
    return obj


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def load_job(text: str | bytes) -> JobSpec:
    """Parse a job request from JSON text; see ``parse_job``."""
    return parse_job(_decode_json(text))


def _decode_json(text: str | bytes) -> object:
    if isinstance(text, str):
        text = text.removeprefix("\ufeff")  # editors on Windows add a BOM
    try:
        return json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise SpecError(
            "json",
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    except UnicodeDecodeError as exc:
        raise SpecError("json", f"not valid UTF-8 (byte {exc.object[exc.start]:#x} at offset {exc.start})") from None
    except (ValueError, RecursionError) as exc:  # NaN, huge ints, deep nesting
        raise SpecError("json", f"malformed JSON: {exc}") from None


# ------------------------------------------------------------ parse_job


def parse_job(data: object) -> JobSpec:
    """Validate a decoded job request and build its ``JobSpec``.

    Raises ``SpecError(field, reason)`` on the first problem found.
    """
    body = _as_object(data, "", what="the job request")
    job_type = _parse_type(body.get("type"))
    source = _parse_source(body.get("backend_bck")) if job_type is JobType.BACKEND else None
    bucket = _parse_bucket(body.get("bucket"), job_type, copy=source is not None)
    _check_known_fields(body, job_type, (source or bucket).provider)
    _check_aistore_fields(body)
    headers, secret_headers = _parse_headers(body.get("headers"))
    specific, default_description = _TYPE_PARSERS[job_type](body, source or bucket)
    if job_type is JobType.BACKEND:
        specific["source"] = source
        default_description = f"remote bucket prefetch -> {bucket.cname()}"
    return JobSpec(
        type=job_type,
        bucket=bucket,
        description=_optional_str(body, "description") or redact(default_description),  # no signature in a title
        timeout=duration_field(body.get("timeout"), "timeout"),
        limits=_parse_limits(body.get("limits")),
        headers=headers,
        secret_headers=secret_headers,
        **specific,
    )


def _as_object(value: object, path: str, what: str = "") -> Body:
    """``value`` as a JSON object; ``path`` is its field ("" = top level)."""
    if not isinstance(value, dict):
        kind = _json_kind(value)
        if path:
            raise SpecError(path, f"must be an object, got {kind}")
        raise SpecError("json", f"{what} must be a JSON object, got {kind}")
    for key in value:
        if not isinstance(key, str):
            raise SpecError(path or "json", f"key {key!r} is not a string")
    duplicates = getattr(value, "duplicates", ())
    if duplicates:
        raise SpecError(_join(path, duplicates[0]), "given more than once")
    return value


def _parse_type(value: object) -> JobType:
    if value is None or value == "":
        raise SpecError("type", f"is required (one of: {_JOB_TYPES})")
    name = value.strip().lower() if isinstance(value, str) else None
    if name in _TYPE_NAMES:
        return JobType(name)
    raise SpecError("type", f"unknown job type {value!r} (expected one of: {_JOB_TYPES})")


def _check_known_fields(body: Body, job_type: JobType, provider: Provider) -> None:
    known = _COMMON_FIELDS + _AISTORE_FIELDS + _TYPE_FIELDS[job_type]
    if job_type is JobType.BACKEND and provider is Provider.HF:
        known += _HF_FIELDS
    unknown = [key for key in body if key not in known]
    if unknown:
        noun = "field" if len(unknown) == 1 else "fields"
        raise SpecError(
            unknown[0],
            f"unknown {noun} {', '.join(map(repr, unknown))} for a {job_type.value} job (known: {', '.join(known)})",
        )


def _check_aistore_fields(body: Body) -> None:
    duration_field(body.get("progress_interval"), "progress_interval")
    for key in ("etl_name", "etl_args"):
        if _optional_str(body, key):
            raise SpecError(key, "ETL is not supported by dlengine")
    if _optional_bool(body, "from_remote"):
        raise SpecError("from_remote", "is an AIStore-internal field; not supported")


# --------------------------------------------------------------- bucket


def _parse_bucket(value: object, job_type: JobType, *, copy: bool = False) -> BucketRef:
    """The job's destination; for a backend job without ``backend_bck``
    also its source (the remote bucket, stored as its local copy)."""
    if value is None:
        raise SpecError("bucket.name", "is required")
    obj = _as_object(value, "bucket")
    _reject_unknown(obj, ("name", "provider", "namespace"), "bucket")
    name = obj.get("name")
    if name is None or name == "":
        raise SpecError("bucket.name", "is required")
    if not isinstance(name, str):
        raise SpecError("bucket.name", f"must be a string, got {_json_kind(name)}")
    provider = _parse_provider(obj.get("provider"))
    if not copy:
        _check_provider_for_type(provider, job_type)
    elif provider not in (Provider.AIS, Provider.DIR):
        raise SpecError(
            "bucket.provider",
            f"a backend job with backend_bck copies into a local 'ais' bucket or a local directory ('dir');"
            f" got {provider.value!r}",
        )
    validate_bucket_name(name, provider, "bucket.name")
    return BucketRef(name, provider, _parse_namespace(obj.get("namespace")))


def _parse_source(value: object) -> BucketRef | None:
    """``backend_bck`` (AIStore's name of a bucket's remote backend): the
    remote bucket a backend job copies from into ``bucket``."""
    if value is None:
        return None
    obj = _as_object(value, "backend_bck")
    _reject_unknown(obj, ("name", "provider", "namespace"), "backend_bck")
    name = obj.get("name")
    if not isinstance(name, str) or name == "":
        raise SpecError("backend_bck.name", "is required (a string)")
    raw = obj.get("provider")
    if not isinstance(raw, str) or raw == "":
        raise SpecError("backend_bck.provider", f"is required: one of {', '.join(providers.LISTABLE)}")
    provider = parse_provider(raw, "backend_bck.provider")
    if provider not in providers.LISTABLE:
        raise SpecError(
            "backend_bck.provider",
            f"must be a remote provider it can list ({', '.join(providers.LISTABLE)}); got {provider.value!r}",
        )
    validate_bucket_name(name, provider, "backend_bck.name")
    if _parse_namespace(obj.get("namespace")):
        raise SpecError("backend_bck.namespace", "remote buckets have no namespace here")
    return BucketRef(name, provider)


def _parse_provider(value: object) -> Provider:
    if value is None or value == "":
        return Provider.AIS
    if not isinstance(value, str):
        raise SpecError("bucket.provider", f"must be a string, got {_json_kind(value)}")
    return parse_provider(value, "bucket.provider")


def _check_provider_for_type(provider: Provider, job_type: JobType) -> None:
    if job_type is JobType.BACKEND and provider not in providers.LISTABLE:
        raise SpecError(
            "bucket.provider",
            f"a backend job needs a remote provider it can list ({', '.join(providers.LISTABLE)});"
            f" got {provider.value!r}",
        )
    # Cloud buckets as destinations are written through (storage/remote.py).
    if job_type is not JobType.BACKEND and provider not in (Provider.AIS, Provider.DIR, *providers.WRITE_THROUGH):
        raise SpecError(
            "bucket.provider",
            f"a {job_type.value} job downloads into a local 'ais' bucket, a local directory ('dir') or a"
            f" write-through cloud bucket ({', '.join(providers.WRITE_THROUGH)}); got {provider.value!r}",
        )


def _parse_namespace(value: object) -> str:
    """A string, or AIStore's ``{"name": ..., "uuid": ""}`` object."""
    if value is None:
        return ""
    if not isinstance(value, str):
        obj = _as_object(value, "bucket.namespace")
        _reject_unknown(obj, ("name", "uuid"), "bucket.namespace")
        if _optional_str(obj, "uuid", "bucket.namespace.uuid"):
            raise SpecError("bucket.namespace.uuid", "remote AIStore clusters are not supported")
        value = _optional_str(obj, "name", "bucket.namespace.name")
    if value:
        validate_bucket_name(value, Provider.AIS, "bucket.namespace")
    return value


# -------------------------------------------------- timeout/limits/headers


def _parse_limits(value: object) -> Limits:
    if value is None:
        return Limits()
    obj = _as_object(value, "limits")
    _reject_unknown(obj, ("connections", "bytes_per_hour"), "limits")
    return Limits(
        connections=_non_negative_int(obj.get("connections"), "limits.connections", MAX_CONNECTIONS),
        # A size string ("10GiB") is accepted too, as on the command line.
        bytes_per_hour=size_field(obj.get("bytes_per_hour"), "limits.bytes_per_hour"),
    )


def _non_negative_int(value: object, field: str, maximum: int) -> int:
    if value is None:
        return 0
    # bool is an int subclass: ``true`` connections is a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, f"must be an integer >= 0, got {_json_kind(value)}")
    if value < 0:
        raise SpecError(field, "must be >= 0")
    if value > maximum:
        raise SpecError(field, f"must be at most {maximum}, got {str(value)[:30]}")
    return value


def _parse_headers(value: object) -> tuple[dict[str, str], dict[str, str]]:
    """Plain and secret headers; secret values never appear in a message."""
    if value is None:
        return {}, {}
    obj = _as_object(value, "headers")
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    seen: set[str] = set()
    for name, raw in obj.items():
        field = f"headers.{name}"
        if not name or not set(name.lower()) <= _HEADER_TOKEN:
            raise SpecError(field, "is not a valid HTTP header name")
        if name.lower() in seen:
            raise SpecError(field, "given more than once (header names ignore case)")
        if name.lower() in _RESERVED_HEADERS:
            raise SpecError(field, f"{name} is set by dlengine itself (framing, resume, conditional requests)")
        seen.add(name.lower())
        target = secret if is_secret_header(name) else plain
        target[name] = _header_value(raw, field)
    return plain, secret


def _header_value(raw: object, field: str) -> str:
    # AIStore sends Go's http.Header: every value is a list of strings.
    values = raw if isinstance(raw, list) else [raw]
    if not all(isinstance(item, str) for item in values):
        raise SpecError(field, "must be a string or a list of strings")
    text = ", ".join(str(item) for item in values)
    if any(char in text for char in "\r\n\x00"):
        raise SpecError(field, "must not contain CR, LF or NUL")
    return text


# ---------------------------------------------------------- per type


class _TypeFields(TypedDict, total=False):
    """The fields of ``JobSpec`` that one job type sets."""

    link: str
    object_name: str
    objects: tuple[ObjectRef, ...]
    template: str
    subdir: str
    prefix: str
    suffix: str
    sync: bool
    source: BucketRef | None
    options: HubOptions


_Parsed = tuple[_TypeFields, str]  # JobSpec fields, default description


def _parse_single(body: Body, bucket: BucketRef) -> _Parsed:
    link = normalize_link(_required_str(body, "link"), "link")
    given = _optional_str(body, "object_name")
    if given:
        name = normalize_object_name(given, "object_name")
    else:
        name = derive_name(link, "link")
        validate_object_name(name, "link")
    return {"link": link, "object_name": name}, f"{link} -> {bucket.cname(name)}"


def _parse_multi(body: Body, bucket: BucketRef) -> _Parsed:
    raw = body.get("objects")
    if raw is None:
        raise SpecError("objects", "is required: a map {object_name: link} or a list of links")
    if isinstance(raw, list):
        objects = _objects_from_list(raw)
    elif isinstance(raw, dict):
        objects = _objects_from_map(raw)
    else:
        raise SpecError(
            "objects",
            f"must be a map {{object_name: link}} or a list of links, got {_json_kind(raw)}",
        )
    if not objects:
        raise SpecError("objects", "must not be empty")
    _check_duplicate_names([obj.name for obj in objects])
    return {"objects": tuple(objects)}, f"multi-download -> {bucket.cname()}"


def _objects_from_list(raw: list[object]) -> list[ObjectRef]:
    objects = []
    for index, item in enumerate(raw):
        field = f"objects[{index}]"
        if not isinstance(item, str):
            raise SpecError(field, f"must be a link string, got {_json_kind(item)}")
        link = normalize_link(item, field)
        name = derive_name(link, field)
        validate_object_name(name, field)
        objects.append(ObjectRef(name, link))
    return objects


def _objects_from_map(raw: dict[Any, Any]) -> list[ObjectRef]:
    # json would keep only the last of two equal keys: report them instead.
    duplicates = list(getattr(raw, "duplicates", ()))
    if duplicates:
        raise _duplicate_names_error(duplicates)
    objects = []
    for name, link in raw.items():
        field = f"objects[{json.dumps(str(name)[:100])}]"
        if not isinstance(name, str):
            raise SpecError("objects", f"object name {name!r} is not a string")
        if not isinstance(link, str):
            raise SpecError(field, f"must be a link string, got {_json_kind(link)}")
        objects.append(ObjectRef(normalize_object_name(name, field), normalize_link(link, field)))
    return objects


def _check_duplicate_names(names: list[str]) -> None:
    counts = Counter(names)
    duplicates = [name for name, n in counts.items() if n > 1]
    if duplicates:
        raise _duplicate_names_error(duplicates)


def _duplicate_names_error(duplicates: list[str]) -> SpecError:
    shown = ", ".join(duplicates[:_MAX_LISTED_DUPLICATES])
    more = len(duplicates) - _MAX_LISTED_DUPLICATES
    suffix = f" (and {more} more)" if more > 0 else ""
    return SpecError("objects", f"duplicate object names: {shown}{suffix}")


def _parse_range(body: Body, bucket: BucketRef) -> _Parsed:
    text = normalize_link(_required_str(body, "template"), "template")
    if urlsplit(text).path.endswith("/"):
        # names come from the last path segment, which must vary
        raise SpecError("template", f"{text!r} ends with '/': its last path segment must name the objects")
    template = parse_template(text, "template")
    subdir = _optional_str(body, "subdir")
    join_subdir(subdir, "x", "subdir")  # validates the subdir alone
    # The first and last expansions have the shortest and longest numbers,
    # and a range in the host shows its edges: check both, expand nothing.
    for link in (template.first(), template.last()):
        normalize_link(link, "template")
        validate_object_name(join_subdir(subdir, derive_name(link, "template")), "template")
    _check_distinct_names(template, subdir)
    return {"template": text, "subdir": subdir}, f"{text} -> {bucket.cname()}"


def _check_distinct_names(template: Template, subdir: str) -> None:
    """Only the last path segment names an object: its ranges must vary
    as many times as the whole template, or names repeat."""
    start, end = _last_segment_span(template.text)
    inside = [r for r in template.ranges if start <= r.span[0] and r.span[1] <= end]
    _check_escapes(template, start, end)
    distinct = math.prod(r.count for r in inside)
    if distinct >= template.count:
        _check_unambiguous(template, inside)
        return
    if distinct == 1:
        name = join_subdir(subdir, derive_name(template.first(), "template"))
        raise SpecError(
            "template",
            f"every object would get the same name {name!r}: put a range in the last path segment",
        )
    raise SpecError(
        "template",
        f"{template.count} objects would share {distinct} names: only the last "
        "path segment names an object, and ranges elsewhere repeat its names",
    )


def _check_escapes(template: Template, start: int, end: int) -> None:
    """Names are percent-decoded: a ``%`` whose two hex digits come from a
    range (``%{40..49}``, ``%4{1..9}``) would decode each rendering to a
    different character, one of them ``/`` or ``.``; refuse it, so every
    literal decodes on its own and only the ranges' digits vary."""
    text = template.text
    for at in range(start, end):
        if text[at] != "%":
            continue
        hit = next((r for r in template.ranges if r.span[0] < at + 3 and at < r.span[1]), None)
        if hit is not None:
            brace = text[hit.span[0] : hit.span[1]]
            raise SpecError(
                "template",
                f"the percent-escape at {text[at : at + 3]!r} takes its digits from range {brace}:"
                " object names are percent-decoded; write the escaped characters literally",
            )


def _check_unambiguous(template: Template, inside: list[BraceRange]) -> None:
    """Ranges next to each other can render the same name twice
    (``{1..12}{1..12}``: 1|11 and 11|1). A name reads back uniquely when
    every range of varying width is followed by a non-digit or only by
    ranges of fixed width; refuse the rest before anything is created."""
    for i, current in enumerate(inside):
        if _fixed_width(current):
            continue
        following = template.text[current.span[1] : inside[i + 1].span[0]] if i + 1 < len(inside) else None
        if following is not None:
            following = unquote(following)  # "%31" is the digit 1 in the name
        if following is None or (following and not following[0].isdigit()):
            continue
        if all(_fixed_width(r) for r in inside[i + 1 :]):
            continue
        text = template.text[current.span[0] : current.span[1]]
        raise SpecError(
            "template",
            f"duplicate object names possible: range {text} has no padding and no separator after it;"
            " zero-pad it or put a letter after it",
        )


def _fixed_width(brace: BraceRange) -> bool:
    return bool(brace.width) or len(brace.render(brace.start)) == len(brace.render(brace.last))


def _last_segment_span(link: str) -> tuple[int, int]:
    """Where the last path segment of a normalized link lies in its text."""
    parts = urlsplit(link)
    path_start = len(parts.scheme) + len("://") + len(parts.netloc)
    return path_start + parts.path.rfind("/") + 1, path_start + len(parts.path)


def _parse_backend(body: Body, bucket: BucketRef) -> _Parsed:
    """``bucket`` is the remote bucket listed (``backend_bck``, else the
    job's bucket itself)."""
    prefix = _optional_str(body, "prefix")
    suffix = _optional_str(body, "suffix")
    sync = _parse_sync(body)
    options = _parse_hf_options(body) if bucket.provider is Provider.HF else HubOptions()
    if sync and (options.get("include") or options.get("exclude")):
        # sync deletes the local copies the listing does not show: with
        # globs, that would be every file they leave out
        raise SpecError("sync", "cannot be combined with include/exclude globs; select with prefix/suffix")
    fields: _TypeFields = {"prefix": prefix, "suffix": suffix, "sync": sync, "options": options}
    return fields, ""  # AIStore's description, from the destination: see parse_job


def _parse_sync(body: Body) -> bool:
    """``sync``, or AIStore's spelling ``synchronize``; both must agree."""
    given = {key: _optional_bool(body, key) for key in ("sync", "synchronize")}
    both = body.get("sync") is not None and body.get("synchronize") is not None
    if both and given["sync"] != given["synchronize"]:
        raise SpecError("synchronize", "contradicts 'sync' (its alias)")
    return given["sync"] or given["synchronize"]


def _parse_hf_options(body: Body) -> HubOptions:
    repo_type = _optional_str(body, "repo_type") or "model"
    if repo_type not in _HF_REPO_TYPES:
        raise SpecError(
            "repo_type",
            f"must be one of {', '.join(_HF_REPO_TYPES)}, got {repo_type!r}",
        )
    revision = _optional_str(body, "revision") or "main"
    if any(char.isspace() or ord(char) < 0x20 for char in revision):
        raise SpecError("revision", f"invalid revision {revision!r}")
    return {
        "repo_type": repo_type,
        "revision": revision,
        "include": _glob_list(body.get("include"), "include"),
        "exclude": _glob_list(body.get("exclude"), "exclude"),
    }


def _glob_list(value: object, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [str(item) for item in value]
    raise SpecError(field, "must be a list of glob patterns (strings)")


_TYPE_PARSERS: dict[JobType, Callable[[Body, BucketRef], _Parsed]] = {
    JobType.SINGLE: _parse_single,
    JobType.MULTI: _parse_multi,
    JobType.RANGE: _parse_range,
    JobType.BACKEND: _parse_backend,
}


# ------------------------------------------------------------- helpers


def _required_str(body: Body, key: str) -> str:
    value = body.get(key)
    if value is None or value == "":
        raise SpecError(key, "is required")
    if not isinstance(value, str):
        raise SpecError(key, f"must be a string, got {_json_kind(value)}")
    return value


def _optional_str(body: Body, key: str, field: str = "") -> str:
    """``""`` when absent or null (Go's zero value)."""
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SpecError(field or key, f"must be a string, got {_json_kind(value)}")
    return value


def _optional_bool(body: Body, key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise SpecError(key, f"must be true or false, got {_json_kind(value)}")
    return value


def _reject_unknown(obj: Body, known: tuple[str, ...], path: str) -> None:
    for key in obj:
        if key not in known:
            raise SpecError(_join(path, key), f"unknown field (known: {', '.join(known)})")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _json_kind(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# ------------------------------------------------------ objects of a spec


def iter_objects(spec: JobSpec) -> Iterator[ObjectRef]:
    """The objects of a job, lazily; backend jobs yield none (their
    objects come from listing the remote bucket at run time)."""
    if spec.type is JobType.SINGLE:
        yield ObjectRef(spec.object_name, spec.link)
    elif spec.type is JobType.MULTI:
        yield from spec.objects
    elif spec.type is JobType.RANGE:
        yield from _iter_range(spec)


def _iter_range(spec: JobSpec) -> Iterator[ObjectRef]:
    for name, link in range_pairs(spec):
        yield ObjectRef(name, link)


def range_pairs(spec: JobSpec) -> Iterator[tuple[str, str]]:
    """(name, link) of each object of a range job, lazily: what the
    dispatcher inserts, without an ``ObjectRef`` and a generator more for
    each (``dispatch.range_pages``: 2.1 -> 1.5 us a row; the supervisor
    expands every object)."""
    template = parse_template(spec.template)
    prefix = join_subdir(spec.subdir, "")
    for link in template:
        yield prefix + _last_segment_name(link), link


def _last_segment_name(link: str) -> str:
    """``derive_name`` for an expansion of a checked template, 4x faster.

    Ranges expand to digits only, so the path of every expansion ends at
    its first ``?`` or ``#`` and its last segment follows the last ``/``
    before that, exactly as urlsplit would find them.
    """
    end = len(link)
    for mark in "?#":
        found = link.find(mark, 0, end)
        if found != -1:
            end = found
    segment = link[link.rfind("/", 0, end) + 1 : end]
    return unquote(segment) if "%" in segment else segment


def object_count(spec: JobSpec) -> int | None:
    """How many objects a job has, without expanding; None for backend."""
    if spec.type is JobType.SINGLE:
        return 1
    if spec.type is JobType.MULTI:
        return len(spec.objects)
    if spec.type is JobType.RANGE:
        return parse_template(spec.template).count
    return None


# ---------------------------------------------------------- spec_to_dict


def dump_spec(spec: JobSpec) -> str:
    """The one serializer of a job for the ledger: canonical JSON without
    secrets; ``load_spec`` (through ``parse_job``) reads it back."""
    return json.dumps(spec_to_dict(spec), sort_keys=True)


def load_spec(text: str) -> JobSpec:
    """The one reader of a job stored by ``dump_spec``."""
    return parse_job(json.loads(text))


def spec_to_dict(spec: JobSpec) -> dict[str, Any]:
    """A canonical, JSON-able request that ``parse_job`` turns back into
    ``spec``, without its secret headers (they are never written down)."""
    out: dict[str, Any] = {
        "type": spec.type.value,
        "bucket": _bucket_dict(spec.bucket),
        "description": spec.description,
        "timeout": format_duration(spec.timeout),
        "limits": {
            "connections": spec.limits.connections,
            "bytes_per_hour": spec.limits.bytes_per_hour,
        },
        "headers": dict(spec.headers),
    }
    out.update(_TYPE_DICTS[spec.type](spec))
    return out


def _bucket_dict(bucket: BucketRef) -> dict[str, str]:
    out = {"name": bucket.name, "provider": bucket.provider}
    if bucket.namespace:
        out["namespace"] = bucket.namespace
    return out


def _single_dict(spec: JobSpec) -> dict[str, Any]:
    return {"link": spec.link, "object_name": escape_object_name(spec.object_name)}


def _multi_dict(spec: JobSpec) -> dict[str, Any]:
    # The map form keeps names that a list of links would re-derive.
    return {"objects": {escape_object_name(obj.name): obj.link for obj in spec.objects}}


def _range_dict(spec: JobSpec) -> dict[str, Any]:
    return {"template": spec.template, "subdir": spec.subdir}


def _backend_dict(spec: JobSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prefix": spec.prefix,
        "suffix": spec.suffix,
        "sync": spec.sync,
    }
    if spec.source is not None:
        out["backend_bck"] = _bucket_dict(spec.source)
    options: Mapping[str, object] = spec.options  # a Hub repository's selection, else empty
    for key in _HF_FIELDS:
        if key in options:
            value = options[key]
            out[key] = list(value) if isinstance(value, (list, tuple)) else value
    return out


_TYPE_DICTS: dict[JobType, Callable[[JobSpec], dict[str, Any]]] = {
    JobType.SINGLE: _single_dict,
    JobType.MULTI: _multi_dict,
    JobType.RANGE: _range_dict,
    JobType.BACKEND: _backend_dict,
}
