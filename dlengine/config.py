"""Every setting and environment variable dlengine reads, in one place.

Precedence: environment variable, then ``$DLENGINE_HOME/config.json``, then
the default. Secrets never come from here: they come from the environment or
the SDKs' credential chains when they are used.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlengine.errors import ConfigError
from dlengine.records import frozen

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
    "max_object_size": ("DLENGINE_MAX_OBJECT_SIZE", 1 << 40),  # bytes; larger objects fail, endless bodies are cut
    "min_rate": ("DLENGINE_MIN_RATE", 1024),  # bytes/s over the timeout window; slower is a stall (0 = off)
    # how objects are made durable before they are recorded done: "batch" =
    # one syncfs(2) of the mountpath per batch of outcomes; "file" = fsync of
    # each file and directory (a mountpath shared with other heavy writers)
    "sync": ("DLENGINE_SYNC", "batch"),
    # objects this large are fetched as parallel ranged segments (libcurl path)
    "segment_threshold": ("DLENGINE_SEGMENT_THRESHOLD", 64 << 20),
    # objects leave the page cache once durable (a bulk download does not
    # push everything else out of it: worker.make_durable); true keeps
    # their pages cached
    "keep_cache": ("DLENGINE_KEEP_CACHE", False),
    # how S3/GCS/Azure objects are fetched: "curl" = a signed GET through the
    # libcurl loop (sources/signed.py), "sdk" = the SDK's download call
    "cloud_get": ("DLENGINE_CLOUD_GET", "curl"),
    "executor": ("DLENGINE_EXECUTOR", "local"),  # or dask://HOST:PORT (supervisor/dask_executor.py)
    # a job of at most this many objects followed by its command (--wait,
    # --progress) is downloaded inside the command, without a supervisor
    # (supervisor/inline.py); 0 = always through a supervisor
    "inline_objects": ("DLENGINE_INLINE", 16),
}


@frozen
class Settings:
    """One home's settings, as ``load_settings`` reads them."""

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
    max_object_size: int = 1 << 40
    min_rate: int = 1024
    executor: str = "local"
    sync: str = "batch"
    segment_threshold: int = 64 << 20
    keep_cache: bool = False
    cloud_get: str = "curl"
    inline_objects: int = 16

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


# name -> (lowest, highest) accepted value; numbers outside are refused on load
BOUNDS: dict[str, tuple[float, float]] = {
    "workers_per_mountpath": (0, 1024),
    "threads_per_worker": (1, 4096),
    "default_timeout": (0.001, 7 * 86400),
    "lease_seconds": (1, 86400),
    "linger_seconds": (0, 7 * 86400),
    "max_attempts": (1, 1000),
    "chunk_size": (4096, 1 << 30),
    "max_object_size": (1, 1 << 60),
    "min_rate": (0, 1 << 40),
    "segment_threshold": (1 << 20, 1 << 50),
    "inline_objects": (0, 1 << 20),
}


# name -> the values accepted for a text setting
CHOICES: dict[str, tuple[str, ...]] = {"sync": ("batch", "file"), "cloud_get": ("curl", "sdk")}


def _convert(raw: Any, default: Any, where: str) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() not in ("0", "false", "no", "off", "")
        if isinstance(default, int) and isinstance(raw, float | str) and not str(raw).strip().lstrip("-").isdigit():
            raise ValueError(raw)  # int("2.5") is an error, int(2.5) would truncate silently
        return type(default)(raw)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{where}: cannot read {raw!r} as {type(default).__name__}") from None


def check_number(value: float, low: float, high: float, where: str) -> float:
    """``value`` if finite and within [low, high], else a ConfigError naming
    ``where`` (empty where the caller names it, as argparse does)."""
    if not math.isfinite(value) or not low <= value <= high:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}{value!r} is out of range ({low:g} to {high:g})")
    return value


def home_dir(environ: Mapping[str, str] | None = None) -> Path:
    given = (os.environ if environ is None else environ).get(ENV_HOME)
    return Path(given or Path.home() / ".dlengine").expanduser().absolute()


def make_home(home: Path) -> None:
    """Create the home if it is missing, private (it holds the ledger and
    job secrets); one that cannot be is bad input naming DLENGINE_HOME."""
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:  # mkdir's answer for a file there: "File exists" would not say what is wrong
        raise ConfigError(f"{ENV_HOME}: {home} is a file, not a directory") from None
    except OSError as exc:
        raise ConfigError(f"{ENV_HOME}: cannot create {home}: {exc.strerror or exc}") from None


def _read_config_file(home: Path) -> dict[str, Any]:
    path = home / "config.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read it as JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a JSON object")
    unknown = sorted(set(data) - set(_KNOBS) - {"mountpaths"})
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(map(repr, unknown))}")
    return data


def _mountpaths(home: Path, file_cfg: dict[str, Any], environ: Mapping[str, str]) -> tuple[Path, ...]:
    raw = environ.get(ENV_MOUNTPATHS)
    if raw:
        items: list[str] = [p for p in raw.split(os.pathsep) if p]
    else:
        listed = file_cfg.get("mountpaths", [])
        if not isinstance(listed, list) or not all(isinstance(p, str) and p for p in listed):
            raise ConfigError(f'{home / "config.json"}: "mountpaths" must be a list of directory paths')
        items = [str(home / Path(p).expanduser()) for p in listed]  # relative to the home, not to a cwd
    # stored absolute: a supervisor started elsewhere finds the same directories
    paths = [Path(p).expanduser().absolute() for p in items] or [home / "data"]
    return tuple(dict.fromkeys(paths))  # keep order, drop repeats


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings for the current environment, or for ``environ``
    (another home's, as a test reads it without a process of its own);
    cheap: call freely."""
    environ = os.environ if environ is None else environ
    home = home_dir(environ)
    file_cfg = _read_config_file(home)
    values: dict[str, Any] = {}
    for name, (env, default) in _KNOBS.items():
        where = env if env in environ else f"{home / 'config.json'}: {name}" if name in file_cfg else name
        value = _convert(environ.get(env, file_cfg.get(name, default)), default, where)
        if name in BOUNDS and not isinstance(value, bool):
            check_number(value, *BOUNDS[name], where)
        if name in CHOICES and value not in CHOICES[name]:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(CHOICES[name])}")
        values[name] = value
    return Settings(home=home, mountpaths=_mountpaths(home, file_cfg, environ), **values)
