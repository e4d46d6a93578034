"""Job list filters (``show --regex``, the API's ``regex``): RE2 syntax.

Python's ``re`` backtracks: ``(a+)+$`` against a description of forty
``a`` and a ``!`` runs for hours, holding the GIL, so one request stalled
every other (issue 13). RE2 matches in time linear in the text and has no
backtracking constructs (no back-references, no look-around); it is also
the syntax of Go's ``regexp``, which AIStore's own filter uses.
"""

from __future__ import annotations

from typing import Protocol

import re2

from dlengine.errors import SpecError

MAX_PATTERN = 1000
"""Longest filter accepted: RE2's work is linear in the text, but also grows
with the pattern."""


class Filter(Protocol):
    def search(self, text: str) -> object: ...


def compile_filter(text: str, field: str = "regex") -> Filter:
    """A compiled filter; a bad or too long pattern is a ``SpecError``
    naming ``field``."""
    if len(text) > MAX_PATTERN:
        raise SpecError(field, f"regular expression longer than {MAX_PATTERN} characters")
    options = re2.Options()
    options.log_errors = False  # RE2 would print its own line on stderr
    try:
        compiled: Filter = re2.compile(text, options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise SpecError(field, f"invalid regular expression (RE2 syntax, as Go's regexp): {reason}") from None
    return compiled
