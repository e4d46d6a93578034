"""DLENGINE_THREADS's default aims at CONNECTIONS_AIMED objects in flight a
mountpath, split among its workers, at least THREADS_LEAST each: small
objects on a fast link are latency-bound at 16 a worker (issue 12). A
value given is kept as it is, however small (one object at a time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlengine import config


def test_auto_threads() -> None:
    assert [config.auto_threads(w) for w in (1, 2, 4, 8, 16, 64)] == [128, 64, 32, 16, 16, 16]
    assert config.auto_threads(0) == 128  # (never a division by zero)


@pytest.mark.parametrize(("workers", "threads"), [("2", 64), ("4", 32), ("12", 16)])
def test_the_default_follows_the_workers(tmp_path: Path, workers: str, threads: int) -> None:
    settings = config.load_settings({"DLENGINE_HOME": str(tmp_path), "DLENGINE_WORKERS": workers})
    assert settings.threads_per_worker == threads


def test_two_mountpaths_share_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    env = {"DLENGINE_HOME": str(tmp_path), "DLENGINE_MOUNTPATHS": f"{tmp_path / 'a'}:{tmp_path / 'b'}"}
    settings = config.load_settings(env)
    assert (settings.workers_for_each_mountpath(), settings.threads_per_worker) == (4, 32)


@pytest.mark.parametrize("given", ["1", "3", "200"])
def test_a_value_given_is_kept(tmp_path: Path, given: str) -> None:
    for env in ({"DLENGINE_THREADS": given}, {}):
        if not env:
            (tmp_path / "config.json").write_text(f'{{"threads_per_worker": {given}}}')
        settings = config.load_settings({"DLENGINE_HOME": str(tmp_path), "DLENGINE_WORKERS": "2", **env})
        assert settings.threads_per_worker == int(given)


def test_zero_is_the_default(tmp_path: Path) -> None:
    env = {"DLENGINE_HOME": str(tmp_path), "DLENGINE_WORKERS": "2"}
    assert config.load_settings({**env, "DLENGINE_THREADS": "0"}).threads_per_worker == 64
