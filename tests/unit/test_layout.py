"""Who may import whom among the repository's top-level packages: the
shared servers live in ``harness/``, so ``tests/`` and ``bench/`` never
import each other, ``harness/`` imports neither, and ``dlengine`` none of
the three (it is what the wheel ships)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent

# top-level package -> the top-level packages it must not import
FORBIDDEN = {
    "tests": {"bench"},
    "bench": {"tests"},
    "harness": {"tests", "bench"},
    "dlengine": {"tests", "bench", "harness"},
}


def imported_roots(source: str) -> set[str]:
    """The top-level names a module imports (``import a.b``, ``from a.b
    import c``; relative imports stay inside their package)."""
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_roots(path.read_text()) & FORBIDDEN[package]
        found += [f"{path.relative_to(ROOT)} imports {name}" for name in sorted(bad)]
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_across_the_line(package: str) -> None:
    assert (ROOT / package).is_dir()
    assert violations(package) == []


def test_the_check_sees_every_form_of_import() -> None:
    source = "import bench.chaos\nfrom tests.conftest import Home\nfrom . import sibling\n"
    source += "def f():\n    import harness\n"
    assert imported_roots(source) == {"bench", "tests", "harness"}
