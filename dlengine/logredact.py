"""Logs that never show a secret: every line a handler writes (message,
arguments, traceback) goes through ``dlengine.redact.redact``. Apart from
``redact`` so that the commands that log nothing (``submit``, ``status``...)
do not import logging (~30 M instructions) with it."""

from __future__ import annotations

import logging

from dlengine.redact import redact

__all__ = ["RedactingFormatter", "install_log_redaction"]


class RedactingFormatter(logging.Formatter):
    """A log formatter whose every line (message, arguments, traceback) has
    gone through ``redact``."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Make every handler of ``logger`` (the root logger by default, once
    ``logging.basicConfig`` has set it up) redact what it writes."""
    for handler in (logger or logging.getLogger()).handlers:
        current = handler.formatter or logging.Formatter()
        if not isinstance(current, RedactingFormatter):
            formatter = RedactingFormatter(current._fmt, current.datefmt)  # keep its format
            handler.setFormatter(formatter)
