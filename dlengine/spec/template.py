"""Bash brace-range templates: ``shard-{001..100..2}.tar``.

A template is literal text with one or more ranges ``{a..b}`` or
``{a..b..step}`` (decimal, non-negative). Several ranges expand like an
odometer, the last one fastest, as bash does. Counting is arithmetic and
expansion is lazy, so a 10-million-object template costs no memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from dlengine.errors import SpecError
from dlengine.records import frozen

MAX_TEMPLATE_OBJECTS = 10_000_000

# Anything shaped like a range, even with bad parts, so that "{a..z}" or
# "{1..-3}" is reported instead of being silently kept as literal text.
_RANGE_LIKE = re.compile(r"\{([^{}.]*)\.\.([^{}.]*)(?:\.\.([^{}.]*))?\}")
_DECIMAL = re.compile(r"[0-9]+")  # not \d: int() would take Arabic-Indic digits
_BRACE = re.compile(r"[{}]")


@frozen
class BraceRange:
    """One ``{start..end..step}`` range; ``span`` is its place in the text."""

    start: int
    end: int
    step: int
    width: int  # zero-pad to this many digits; 0 = no padding
    span: tuple[int, int]

    @property
    def count(self) -> int:
        """How many values the range produces (the end may be unreachable)."""
        return (self.end - self.start) // self.step + 1

    @property
    def last(self) -> int:
        """The largest value produced: ``{1..10..4}`` stops at 9."""
        return self.start + (self.count - 1) * self.step

    def values(self) -> range:
        """The numbers, lazily."""
        return range(self.start, self.end + 1, self.step)

    def render(self, value: int) -> str:
        """``value`` as it appears in an expanded string."""
        return f"{value:0{self.width}d}" if self.width else str(value)


@frozen
class Template:
    """A parsed template: ``literals[0] range[0] literals[1] ... literals[-1]``."""

    text: str
    literals: tuple[str, ...]
    ranges: tuple[BraceRange, ...]

    @classmethod
    def parse(cls, text: str, field: str = "template") -> Template:
        """Parse and check ``text``; every error names ``field``."""
        return parse_template(text, field)

    @property
    def segments(self) -> tuple[str | BraceRange, ...]:
        """Literal strings and ranges in the order they appear."""
        out: list[str | BraceRange] = []
        for literal, brace in zip(self.literals, self.ranges, strict=False):
            out += [literal, brace]
        out.append(self.literals[-1])
        return tuple(out)

    @property
    def count(self) -> int:
        """Number of expanded strings, computed without expanding."""
        total = 1
        for brace in self.ranges:
            total *= brace.count
        return total

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[str]:
        """Expanded strings, lazily, the last range turning fastest."""
        return self._expand(0, self.literals[0])

    def _expand(self, index: int, prefix: str) -> Iterator[str]:
        # Recursion depth is the number of ranges (a handful); each level
        # walks a lazy range(), so memory stays O(ranges), not O(objects).
        # itertools.product would first copy every range into a tuple.
        brace = self.ranges[index]
        literal = self.literals[index + 1]
        if index == len(self.ranges) - 1:
            for value in brace.values():
                yield prefix + brace.render(value) + literal
            return
        for value in brace.values():
            yield from self._expand(index + 1, prefix + brace.render(value) + literal)

    def at(self, position: int) -> str:
        """The ``position``-th expanded string (0-based), in O(ranges).

        Lets a caller resume an interrupted enumeration without replaying it.
        """
        if not 0 <= position < self.count:
            raise IndexError(f"template position {position} out of range")
        values: list[int] = []
        for brace in reversed(self.ranges):
            position, offset = divmod(position, brace.count)
            values.append(brace.start + offset * brace.step)
        return self.render(tuple(reversed(values)))

    def render(self, values: tuple[int, ...]) -> str:
        """The string for one value per range."""
        parts = [self.literals[0]]
        for brace, value, literal in zip(self.ranges, values, self.literals[1:], strict=True):
            parts += [brace.render(value), literal]
        return "".join(parts)

    def first(self) -> str:
        """The first expanded string."""
        return self.render(tuple(brace.start for brace in self.ranges))

    def last(self) -> str:
        """The last expanded string: every range at its largest value."""
        return self.render(tuple(brace.last for brace in self.ranges))


def parse_template(text: str, field: str = "template") -> Template:
    """Parse a brace-range template, refusing anything bash would not expand
    the way a user expects (a brace outside a range too), and more than
    ``MAX_TEMPLATE_OBJECTS`` objects."""
    literals: list[str] = []
    ranges: list[BraceRange] = []
    cursor = 0
    for match in _RANGE_LIKE.finditer(text):
        literals.append(text[cursor : match.start()])
        ranges.append(_parse_range(match, field))
        cursor = match.end()
    literals.append(text[cursor:])
    if not ranges:
        raise SpecError(field, f"no brace range such as {{1..10}} or {{001..100}} in {text!r}")
    _check_stray_braces(text, ranges, field)
    template = Template(text, tuple(literals), tuple(ranges))
    _check_count(template, field)
    return template


def _check_stray_braces(text: str, ranges: list[BraceRange], field: str) -> None:
    """A brace outside every range (``x-{{1..10}``, ``x-{1..10}}``, a
    list ``{a,b}``) is a typo, not text to keep: bash would keep it, and
    every link would be wrong. Refused naming the template and the brace's
    position (counted from 1); a literal brace is ``%7B``/``%7D``."""
    cursor = 0
    for start, end in [*(r.span for r in ranges), (len(text), len(text))]:
        found = _BRACE.search(text, cursor, start)
        if found is not None:
            brace, at = found.group(), found.start() + 1
            raise SpecError(
                field,
                f"{_shown(text)}: stray {brace!r} at position {at}: braces only open and close ranges"
                f" such as {{1..10}} (a literal one is {'%7B' if brace == '{' else '%7D'})",
            )
        cursor = end


def _shown(text: str) -> str:
    """``repr`` of a template, cut so an error message stays one line."""
    return repr(text if len(text) <= 200 else text[:200] + "...")


def _parse_range(match: re.Match[str], field: str) -> BraceRange:
    whole = match.group(0)
    start_s, end_s, step_s = match.group(1), match.group(2), match.group(3)
    for part in (start_s, end_s) + ((step_s,) if step_s is not None else ()):
        _check_number(part, whole, field)
    start, end = int(start_s), int(end_s)
    step = int(step_s) if step_s is not None else 1
    if step == 0:
        raise SpecError(field, f"range {whole} has step 0")
    if start > end:
        raise SpecError(field, f"range {whole} has start > end")
    return BraceRange(start, end, step, _pad_width(start_s, end_s), match.span())


def _check_number(part: str, whole: str, field: str) -> None:
    if part.startswith("-"):
        raise SpecError(field, f"range {whole}: negative numbers are not supported")
    if not _DECIMAL.fullmatch(part):
        raise SpecError(field, f"range {whole}: only decimal numbers are supported, got {part!r}")
    # Python refuses to convert >4300 digits; no real range is that long.
    if len(part) > 100:
        raise SpecError(field, f"range {whole}: number too long")


def _pad_width(start: str, end: str) -> int:
    """Zero padding is asked for by a leading zero ("001"), as in bash."""
    padded = any(len(s) > 1 and s.startswith("0") for s in (start, end))
    return min(len(start), len(end)) if padded else 0


def _check_count(template: Template, field: str) -> None:
    count = template.count
    if count > MAX_TEMPLATE_OBJECTS:
        raise SpecError(
            field,
            f"expands to {count:,} objects, more than the limit of "
            f"{MAX_TEMPLATE_OBJECTS:,}: split it into several jobs",
        )
