"""``dlengine/ledger/`` is the only code that speaks SQL: no statement and
no ``.execute`` anywhere else in the package."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent.parent / "dlengine"
SQL = re.compile(r"\.execute(many|script)?\(|\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b")
# the worker process still holds a connection (claims.claim/report/renew)
CONNECTION_HOLDERS = {"supervisor/worker.py"}


def _modules() -> list[tuple[str, str]]:
    return [
        (str(p.relative_to(PACKAGE)), p.read_text())
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.relative_to(PACKAGE).parts[0] != "ledger"
    ]


def test_no_sql_outside_the_ledger() -> None:
    found = [(name, m.group(0)) for name, text in _modules() for m in SQL.finditer(text)]
    assert found == []


def test_no_sqlite_connections_outside_the_ledger() -> None:
    users = {name for name, text in _modules() if re.search(r"^import sqlite3|sqlite3\.", text, re.M)}
    assert users <= CONNECTION_HOLDERS, users - CONNECTION_HOLDERS


def test_only_the_worker_process_calls_claims_with_a_connection() -> None:
    """The Dask executor (and the rest) reach ``claims`` through the facade."""
    pattern = re.compile(r"^from dlengine\.ledger import .*\b(claims|db)\b|^from dlengine\.ledger\.(claims|db) ", re.M)
    users = {name for name, text in _modules() if pattern.search(text)}
    assert users <= CONNECTION_HOLDERS, users - CONNECTION_HOLDERS
