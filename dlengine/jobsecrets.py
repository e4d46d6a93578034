"""Secret request headers of a job, kept out of the ledger.

A job's Authorization/Cookie/token headers must survive a restart, yet never
be written to the ledger, a log or a status. They live in one file per job,
readable only by the owner, removed with the job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def _path(secrets_dir: Path, job_id: str) -> Path:
    return secrets_dir / f"{job_id}.json"


def save(secrets_dir: Path, job_id: str, headers: dict[str, str]) -> None:
    if not headers:
        return
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = _path(secrets_dir, job_id)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(headers, out)


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
