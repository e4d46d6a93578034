"""The supervisor's wait between ticks (``Supervisor._pause``): a TICK,
or what is left of its linger when that is less, so that a lingering
supervisor (and its idle workers, polling the ledger) ends when the
linger does, not up to a TICK later."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlengine.config import load_settings
from dlengine.supervisor.supervisor import TICK, Supervisor


def _supervisor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, linger: float | None) -> Supervisor:
    monkeypatch.setenv("DLENGINE_HOME", str(tmp_path / "home"))
    supervisor = Supervisor(load_settings(), linger=linger)
    supervisor._wake.close()  # (never run: only its pause is asked)
    return supervisor


def test_a_tick_while_busy_or_lingering_for_ever(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _supervisor(tmp_path, monkeypatch, 0.3)._pause(100.0) == TICK  # (not idle)
    forever = _supervisor(tmp_path, monkeypatch, None)
    forever._idle_since = 50.0
    assert forever._pause(100.0) == TICK


def test_what_is_left_of_the_linger_when_less(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    supervisor = _supervisor(tmp_path, monkeypatch, 0.3)
    supervisor._idle_since = 100.0
    assert supervisor._pause(100.0) == pytest.approx(TICK)  # (0.3 left)
    assert supervisor._pause(100.15) == pytest.approx(0.15)
    assert supervisor._pause(100.5) == 0.0  # (over: the next tick ends it at once)
