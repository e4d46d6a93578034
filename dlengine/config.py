"""Every setting and environment variable dlengine reads, in one place.

Precedence: environment variable, then ``$DLENGINE_HOME/config.json``, then
the default. Secrets never come from here: they come from the environment or
the SDKs' credential chains when they are used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_HOME = "DLENGINE_HOME"
ENV_MOUNTPATHS = "DLENGINE_MOUNTPATHS"

# name in config.json -> (environment variable, default)
_KNOBS: dict[str, tuple[str, Any]] = {
    "workers_per_mountpath": ("DLENGINE_WORKERS", 0),  # 0 = cores / mountpaths
    "threads_per_worker": ("DLENGINE_THREADS", 16),
    "default_timeout": ("DLENGINE_TIMEOUT", 60.0),  # seconds per request
    "lease_seconds": ("DLENGINE_LEASE", 30.0),
    "linger_seconds": ("DLENGINE_LINGER", 5.0),  # background supervisor idle exit
    "max_attempts": ("DLENGINE_ATTEMPTS", 5),
    "fsync": ("DLENGINE_FSYNC", True),  # durability; off only for benchmarks
    "chunk_size": ("DLENGINE_CHUNK", 1 << 20),
    "executor": ("DLENGINE_EXECUTOR", "local"),  # or dask://HOST:PORT (supervisor/dask_executor.py)
}


@dataclass(frozen=True)
class Settings:
    home: Path
    mountpaths: tuple[Path, ...]
    workers_per_mountpath: int
    threads_per_worker: int
    default_timeout: float
    lease_seconds: float
    linger_seconds: float
    max_attempts: int
    fsync: bool
    chunk_size: int
    executor: str = "local"

    @property
    def remote_executor(self) -> bool:
        """Whether downloads run on other hosts (then only cloud buckets,
        which every host reaches, can be destinations)."""
        return self.executor not in ("", "local")

    @property
    def ledger_path(self) -> Path:
        return self.home / "ledger.db"

    @property
    def lock_path(self) -> Path:
        return self.home / "supervisor.lock"

    @property
    def log_path(self) -> Path:
        return self.home / "supervisor.log"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    def workers_for_each_mountpath(self) -> int:
        if self.workers_per_mountpath > 0:
            return self.workers_per_mountpath
        return max(1, (os.cpu_count() or 1) // len(self.mountpaths))


def _convert(raw: Any, default: Any, name: str) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() not in ("0", "false", "no", "off", "")
        return type(default)(raw)
    except (TypeError, ValueError):
        raise ValueError(f"setting {name}: cannot read {raw!r} as {type(default).__name__}") from None


def home_dir() -> Path:
    return Path(os.environ.get(ENV_HOME) or Path.home() / ".dlengine").expanduser().absolute()


def _read_config_file(home: Path) -> dict[str, Any]:
    path = home / "config.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must hold a JSON object")
    return data


def _mountpaths(home: Path, file_cfg: dict[str, Any]) -> tuple[Path, ...]:
    raw = os.environ.get(ENV_MOUNTPATHS)
    if raw:
        items: list[str] = [p for p in raw.split(os.pathsep) if p]
    else:
        items = [str(p) for p in file_cfg.get("mountpaths", [])]
    paths = [Path(p).expanduser().absolute() for p in items] or [home / "data"]
    return tuple(dict.fromkeys(paths))  # keep order, drop repeats


def load_settings() -> Settings:
    """Read the settings for the current environment (cheap; call freely)."""
    home = home_dir()
    file_cfg = _read_config_file(home)
    values: dict[str, Any] = {}
    for name, (env, default) in _KNOBS.items():
        raw = os.environ.get(env, file_cfg.get(name, default))
        values[name] = _convert(raw, default, name)
    return Settings(home=home, mountpaths=_mountpaths(home, file_cfg), **values)
