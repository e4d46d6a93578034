r"""Every error dlengine raises, in one tree.

What a worker does with an error is decided by its branch::

    DlengineError
    ├── SpecError            (ValueError)  bad job request; nothing is created
    ├── NotFoundError        (LookupError) unknown job id or bucket
    ├── StateError                         operation not allowed in the job's state
    ├── SupervisorRunning                  another supervisor holds this home
    ├── TransientError                     retry the object later (backoff)
    │   ├── SourceConnectionError  (ConnectionError)
    │   ├── SourceTimeoutError     (TimeoutError)
    │   ├── ServerBusyError        429 / 5xx, may carry retry_after
    │   ├── SourceChangedError     validator changed under us *
    │   ├── SizeMismatchError      *
    │   └── ChecksumMismatchError  *
    ├── PermanentError                     fail the object, go on with the job
    │   ├── SourceNotFoundError
    │   ├── SourceDeniedError
    │   ├── SourceHTTPError        other 4xx
    │   └── UnsafeNameError
    └── FatalError                         stop the whole job with the reason
        ├── DiskFullError
        └── MissingExtraError      an optional SDK is not installed

\* ``restart``: the bytes kept so far are worthless; the next attempt starts
from zero instead of resuming.

Every class pickles (arguments kept in ``args``) so errors cross process
boundaries unchanged.
"""

from __future__ import annotations


class DlengineError(Exception):
    """Root of every dlengine error."""

    default_message = "dlengine error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.default_message


class SpecError(DlengineError, ValueError):
    """A job request (or CLI argument) is invalid; names the field."""

    def __init__(self, field: str, reason: str) -> None:
        Exception.__init__(self, field, reason)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(DlengineError, ValueError):
    """A setting (environment variable, config.json, flag) is invalid; the
    message names the variable or file. Bad input: exit 2."""

    default_message = "invalid setting"


class NotFoundError(DlengineError, LookupError):
    default_message = "not found"


class StateError(DlengineError):
    default_message = "operation not allowed in this state"


class SupervisorRunning(DlengineError):
    default_message = "a supervisor is already running for this home"


class TransientError(DlengineError):
    """Worth another attempt after a backoff."""

    default_message = "transient error"
    retry_after: float | None = None
    restart = False


class SourceConnectionError(TransientError, ConnectionError):
    default_message = "connection to the source failed"


class SourceTimeoutError(TransientError, TimeoutError):
    default_message = "the source did not answer in time"


class ServerBusyError(TransientError):
    """429, 408 or 5xx; ``retry_after`` seconds when the server said so."""

    def __init__(self, message: str | None = None, retry_after: float | None = None) -> None:
        Exception.__init__(self, message or "the source is busy", retry_after)
        self.retry_after = retry_after

    @property
    def message(self) -> str:
        return str(self.args[0])

    def __str__(self) -> str:
        return str(self.args[0])


class SourceChangedError(TransientError):
    default_message = "the source changed during the download"
    restart = True


class SizeMismatchError(TransientError):
    default_message = "size mismatch"
    restart = True


class ChecksumMismatchError(TransientError):
    default_message = "checksum mismatch"
    restart = True


class PermanentError(DlengineError):
    """This object cannot be downloaded; the job goes on."""

    default_message = "permanent error"


class SourceNotFoundError(PermanentError):
    default_message = "source object not found"


class SourceDeniedError(PermanentError):
    default_message = "access to the source denied"


class SourceHTTPError(PermanentError):
    default_message = "the source answered with an error"


class UnsafeNameError(PermanentError, ValueError):
    default_message = "object name escapes its bucket"


class FatalError(DlengineError):
    """The whole job cannot go on."""

    default_message = "fatal error"


class DiskFullError(FatalError, OSError):
    default_message = "no space left on the mountpath"


class MissingExtraError(FatalError, ImportError):
    default_message = "an optional dependency is not installed"
