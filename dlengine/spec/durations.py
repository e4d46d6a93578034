"""Durations (``"1h30m"``) and sizes (``"1.5GiB"``) as users write them.

Durations follow Go's ``time.ParseDuration`` because AIStore job requests
carry Go durations; a bare number is also taken as seconds, as rclone does.
"""

from __future__ import annotations

import math
import re

from dlengine.errors import SpecError

# Decimal factors so "500ms" is exactly 0.5 and "1.1s" exactly float("1.1")
# (decimal imported when a unit is parsed: not by every command)
_DURATION_UNITS: dict[str, str] = {
    "ns": "1e-9",
    "us": "1e-6",
    "µs": "1e-6",  # U+00B5 MICRO SIGN, what Go prints
    "μs": "1e-6",  # U+03BC GREEK SMALL LETTER MU, what people type
    "ms": "1e-3",
    "s": "1",
    "m": "60",
    "h": "3600",
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION_PART = re.compile(rf"({_NUMBER})(ns|us|µs|μs|ms|s|m|h)")
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ns|us|µs|μs|ms|s|m|h))+")
_BARE_NUMBER = re.compile(_NUMBER)

_SIZE_PREFIXES = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
MAX_SIZE = 2**63 - 1
"""The largest size the ledger can hold (SQLite's INTEGER); 8 EiB."""
MIN_DURATION = 0.001
MAX_DURATION = 24 * 3600.0
"""A job's durations (``timeout``) lie between 1 ms and 24 h, or are 0 (the
default): ``1ns`` would fail every request, ``1e300`` overflows the
transfer's timers."""
_SIZE = re.compile(rf"({_NUMBER})\s*([kmgtp]?)(i?)(b?)", re.IGNORECASE)


def parse_duration(text: str, field: str = "timeout") -> float:
    """Seconds in a Go duration such as ``"30s"``, ``"1h30m"`` or ``"500ms"``.

    ``""`` is 0.0 (the configured default); a bare number is seconds.
    Negative durations are refused: a timeout cannot be negative.
    """
    value = text.strip()
    if value == "":
        return 0.0
    if value.startswith("-"):
        raise SpecError(field, f"duration {text!r} must not be negative")
    if _BARE_NUMBER.fullmatch(value):
        return float(value)
    if not _DURATION.fullmatch(value):
        raise SpecError(
            field,
            f"invalid duration {text!r}: expected e.g. '30s', '5m', '1h30m', '500ms' (units ns, us, ms, s, m, h)",
        )
    from decimal import Decimal

    total = sum(
        (Decimal(number) * Decimal(_DURATION_UNITS[unit]) for number, unit in _DURATION_PART.findall(value)),
        Decimal(0),
    )
    return float(total)


def duration_field(value: object, field: str) -> float:
    """Seconds from a JSON value: a duration string, or a number of seconds,
    0 or between ``MIN_DURATION`` and ``MAX_DURATION``.

    ``None`` (JSON null) means "not set", as Go's decoder would read it.
    """
    if value is None:
        return 0.0
    if isinstance(value, str):
        return _in_range(parse_duration(value, field), value, field)
    # bool is an int subclass: ``true`` is no duration.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(field, f"must be a duration string such as '30s', got {value!r}")
    try:
        seconds = float(value)
    except OverflowError:  # an integer beyond every float
        seconds = math.inf
    if math.isnan(seconds):
        raise SpecError(field, f"duration {value!r} is not a number")
    if seconds < 0:
        raise SpecError(field, f"duration {value!r} must not be negative")
    return _in_range(seconds, value, field)


def _in_range(seconds: float, given: object, field: str) -> float:
    if seconds != 0 and not MIN_DURATION <= seconds <= MAX_DURATION:
        shown = given if isinstance(given, str) else f"{given!r}s"
        raise SpecError(field, f"duration {shown[:50]!r} is out of range: 0 (the default), or from 1ms to 24h")
    return seconds


def format_duration(seconds: float) -> str | float:
    """A Go duration string that parses back to exactly ``seconds``.

    Falls back to the number itself when no short string round-trips
    exactly (binary floats), so a spec written out reads back unchanged.
    """
    text = _duration_text(seconds)
    if float(seconds).is_integer():  # whole h/m/s: exact by construction (no Decimal parse)
        return text
    try:
        if parse_duration(text) == seconds:
            return text
    except SpecError:
        pass
    return seconds


def _duration_text(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    if not seconds.is_integer():
        return f"{seconds!r}s"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    parts.append(f"{secs}s" if secs else "")
    return "".join(parts)


def parse_size(text: str, field: str) -> int:
    """Bytes in a size such as ``"1GiB"``, ``"500MB"``, ``"1.5GB"`` or ``"1024"``.

    ``KB``/``MB``/``GB``/``TB`` are powers of 1000, ``KiB``/``MiB``/...
    powers of 1024; the unit is case-insensitive and its ``B`` optional
    (``"10k"``, ``"10Ki"``). A fraction of a byte is dropped, but a size
    that would round to 0 is refused (0 means "no limit"), and so is one
    above ``MAX_SIZE``.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None or (match.group(3) and not match.group(2)):
        raise SpecError(
            field,
            f"invalid size {text!r}: expected e.g. '1024', '500MB', '1GiB'",
        )
    from decimal import Decimal, InvalidOperation

    number, prefix, binary, _ = match.groups()
    base = 1024 if binary else 1000
    try:
        amount = Decimal(number) * base ** _SIZE_PREFIXES[prefix.lower()]
    except InvalidOperation as exc:  # pragma: no cover - the regex prevents it
        raise SpecError(field, f"invalid size {text!r}") from exc
    if 0 < amount < 1:
        raise SpecError(field, f"size {text!r} is less than one byte (0 would mean no limit)")
    return _at_most_max(int(amount), text, field)


def _at_most_max(size: int, given: object, field: str) -> int:
    if size > MAX_SIZE:
        shown = repr(given)[:50]
        raise SpecError(field, f"size {shown} is too large: at most {MAX_SIZE} bytes (8 EiB)")
    return size


def size_field(value: object, field: str) -> int:
    """Bytes from a JSON value: a non-negative int, or a size string."""
    if value is None:
        return 0
    if isinstance(value, str):
        return parse_size(value, field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, f"must be an integer >= 0, got {value!r}")
    if value < 0:
        raise SpecError(field, "must be >= 0")
    return _at_most_max(value, value, field)
