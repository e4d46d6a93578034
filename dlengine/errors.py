r"""Every error dlengine raises, in one tree.

What a worker does with an error is decided by its branch::

    DlengineError
    ├── SpecError            (ValueError)  bad job request; nothing is created
    ├── NotFoundError        (LookupError) unknown job id or bucket
    ├── StateError                         operation not allowed in the job's state
    │   └── BucketExistsError              ``bucket create`` of a bucket there already
    ├── SupervisorRunning                  another supervisor holds this home
    ├── LedgerError                        corrupt, too new, or its disk is full
    ├── SupervisorError                    a supervisor thread kept failing
    ├── Aborted                            the object's job was aborted
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
    │   ├── SourceRefusedError     nothing listens there (not retried, as wget and curl)
    │   ├── SourceHTTPError        other 4xx
    │   ├── TLSError
    │   ├── RedirectError
    │   ├── ObjectTooLargeError    above DLENGINE_MAX_OBJECT_SIZE
    │   └── UnsafeNameError
    └── FatalError                         stop the whole job with the reason
        ├── DiskFullError
        └── MissingExtraError      an optional SDK is not installed

\* ``restart``: the bytes kept so far are worthless; the next attempt starts
from zero instead of resuming.

Every class carries an :class:`ErrorCode` (``code``): what the ledger
records of a failed object, so status can group failures and the CLI can
advise. A raiser may pass a more precise ``code=`` than its class's (a
connection *refused* is a ``SourceConnectionError`` with ``REFUSED``).

Every class pickles (arguments kept in ``args``, an overridden code in the
instance dict) so errors cross process boundaries unchanged.
"""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    """Why an object failed, as stored in ``objects.error_code``."""

    NOT_FOUND = "not-found"  # the source has no such object (404, NoSuchKey)
    AUTH = "auth"  # credentials missing or refused (401, 403)
    CHECKSUM = "checksum"  # bytes did not match the checksum the source gave
    SIZE = "size"  # bytes did not match the announced size
    TIMEOUT = "timeout"  # the source stalled past the job's timeout
    REFUSED = "refused"  # the connection was refused or reset
    CONNECTION = "connection"  # any other connection failure (DNS, unreachable)
    TLS = "tls"  # certificate or handshake failure
    DISK_FULL = "disk-full"  # no space left on the mountpath
    IO = "io"  # any other local file system error
    MOUNTPATH = "mountpath"  # the object's mountpath is missing or belongs to another home
    WORKER = "worker"  # the workers of its mountpath kept dying at start (a broken install or setting)
    REDIRECT = "redirect"  # too many redirects, or a redirect we refuse to follow
    POLICY = "policy"  # refused by dlengine's own rules (unsafe name, link)
    HTTP = "http"  # any other HTTP error status
    BUSY = "busy"  # 429 / 5xx: the server asked us to come back later
    SOURCE_CHANGED = "source-changed"  # the validator changed during the download
    MISSING_EXTRA = "missing-extra"  # an optional SDK is not installed
    UNSUPPORTED = "unsupported"  # a scheme or provider dlengine cannot serve (yet)
    INVALID = "invalid"  # a bad job request or argument
    INTERNAL = "internal"  # a bug in dlengine (logged with its traceback)
    ABORTED = "aborted"  # the job was aborted (by the user or a fatal error)


class DlengineError(Exception):
    """Root of every dlengine error."""

    default_message = "dlengine error"
    code = ErrorCode.INTERNAL

    def __init__(self, message: str | None = None, *, code: ErrorCode | None = None) -> None:
        super().__init__(message or self.default_message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.default_message


class SpecError(DlengineError, ValueError):
    """A job request (or CLI argument) is invalid; names the field."""

    code = ErrorCode.INVALID

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
    code = ErrorCode.NOT_FOUND
    default_message = "not found"


class StateError(DlengineError):
    default_message = "operation not allowed in this state"


class BucketExistsError(StateError):
    """A bucket to create exists already (AIStore's ``ErrBucketAlreadyExists``,
    its message too): bad input, exit 2."""

    default_message = "bucket already exists"


class SupervisorRunning(DlengineError):
    default_message = "a supervisor is already running for this home"


class LedgerError(DlengineError):
    """The ledger cannot be used: corrupt, from a newer dlengine, or its disk
    is full. The message names the file; the CLI exits 3 with it."""

    default_message = "the ledger cannot be used"


class SupervisorError(DlengineError):
    """The supervisor stopped: one of its threads kept failing. The message
    says which and why; ``run`` exits 3 with it."""

    default_message = "the supervisor stopped"


class TransientError(DlengineError):
    """Worth another attempt after a backoff."""

    default_message = "transient error"
    code = ErrorCode.CONNECTION
    retry_after: float | None = None
    restart = False


class SourceConnectionError(TransientError, ConnectionError):
    code = ErrorCode.CONNECTION
    default_message = "connection to the source failed"


class SourceTimeoutError(TransientError, TimeoutError):
    code = ErrorCode.TIMEOUT
    default_message = "the source did not answer in time"


class ServerBusyError(TransientError):
    """429, 408 or 5xx; ``retry_after`` seconds when the server said so."""

    code = ErrorCode.BUSY

    def __init__(self, message: str | None = None, retry_after: float | None = None) -> None:
        Exception.__init__(self, message or "the source is busy", retry_after)
        self.retry_after = retry_after

    @property
    def message(self) -> str:
        return str(self.args[0])

    def __str__(self) -> str:
        return str(self.args[0])


class SourceChangedError(TransientError):
    code = ErrorCode.SOURCE_CHANGED
    default_message = "the source changed during the download"
    restart = True


class SizeMismatchError(TransientError):
    code = ErrorCode.SIZE
    default_message = "size mismatch"
    restart = True


class ChecksumMismatchError(TransientError):
    code = ErrorCode.CHECKSUM
    default_message = "checksum mismatch"
    restart = True


class PermanentError(DlengineError):
    """This object cannot be downloaded; the job goes on."""

    default_message = "permanent error"
    code = ErrorCode.UNSUPPORTED


class SourceNotFoundError(PermanentError):
    code = ErrorCode.NOT_FOUND
    default_message = "source object not found"


class SourceDeniedError(PermanentError):
    code = ErrorCode.AUTH
    default_message = "access to the source denied"


class SourceRefusedError(PermanentError):
    """The source's host refused the connection: nothing listens there.
    Failed at once, not retried (wget and curl retry it only when asked;
    AIStore fails it at once): ``dlengine retry`` tries again."""

    code = ErrorCode.REFUSED
    default_message = "connection refused"


class SourceHTTPError(PermanentError):
    code = ErrorCode.HTTP
    default_message = "the source answered with an error"


class TLSError(PermanentError):
    code = ErrorCode.TLS
    default_message = "TLS handshake or certificate verification failed"


class RedirectError(PermanentError):
    code = ErrorCode.REDIRECT
    default_message = "too many redirects"


class MalformedLinkError(PermanentError):
    """A URL libcurl refuses or cannot be given (a redirect's target,
    most likely: links are checked when a job is submitted): no attempt
    would go otherwise."""

    code = ErrorCode.INVALID
    default_message = "malformed link"


class ObjectTooLargeError(PermanentError):
    """The object is (or is declared) larger than the maximum object size."""

    code = ErrorCode.SIZE
    default_message = "the object is larger than the maximum object size"


class UnsafeNameError(PermanentError, ValueError):
    code = ErrorCode.POLICY
    default_message = "object name escapes its bucket"


class Aborted(DlengineError):
    """The object's job was aborted while it was being downloaded."""

    code = ErrorCode.ABORTED
    default_message = "aborted"


class FatalError(DlengineError):
    """The whole job cannot go on."""

    default_message = "fatal error"


class DiskFullError(FatalError, OSError):
    code = ErrorCode.DISK_FULL
    default_message = "no space left on the mountpath"


class MissingExtraError(FatalError, ImportError):
    code = ErrorCode.MISSING_EXTRA
    default_message = "an optional dependency is not installed"
