"""Secret request headers of a job, kept out of the ledger.

A job's Authorization/Cookie/token headers must survive a restart, yet never
be written to the ledger, a log or a status. They live in one file per job,
readable only by the owner, removed with the job.
"""

from __future__ import annotations

import json
import os
from contextlib import suppress
from pathlib import Path

from dlengine.storage.durable import fsync_dir


def _path(secrets_dir: Path, job_id: str) -> Path:
    return secrets_dir / f"{job_id}.json"


def save(secrets_dir: Path, job_id: str, headers: dict[str, str]) -> None:
    """Write the job's secrets whole or not at all (a temp file unique to
    this writer, fsynced, then renamed). Called *before* the job is
    committed: a worker that claims the job's first object must find them,
    and a crash in between leaves only an orphan file, never a job without
    its secrets."""
    if not headers:
        return
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = _path(secrets_dir, job_id)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(headers, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(secrets_dir)


def load(secrets_dir: Path, job_id: str) -> dict[str, str]:
    try:
        data = json.loads(_path(secrets_dir, job_id).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def remove(secrets_dir: Path, job_id: str) -> None:
    try:
        _path(secrets_dir, job_id).unlink()
    except FileNotFoundError:
        pass
