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


def imported_modules(source: str) -> set[str]:
    """The absolute module names a module imports, also inside functions
    (``import a.b``, ``from a.b import c``; relative imports stay inside
    their package)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def imported_roots(source: str) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(source)}


def _exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or path.is_dir()  # a module, a package or a namespace package


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


def test_imports_of_the_repository_s_own_modules_resolve() -> None:
    """A module moved (``tests/httpd.py`` to ``harness/``) leaves no import
    of its old place behind, not even one inside a function that only runs
    when its test does."""
    stale = [
        f"{path.relative_to(ROOT)}: {name}"
        for package in FORBIDDEN
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in sorted(imported_modules(path.read_text()))
        if name.split(".")[0] in FORBIDDEN and not _exists(name)
    ]
    assert stale == []


def test_the_check_sees_every_form_of_import() -> None:
    source = "import bench.chaos\nfrom tests.conftest import Home\nfrom . import sibling\n"
    source += "def f():\n    import harness\n"
    assert imported_roots(source) == {"bench", "tests", "harness"}
    assert _exists("harness.httpd") and _exists("tests") and not _exists("tests.httpd")


def test_every_package_directory_is_a_package() -> None:
    for directory in (ROOT / "dlengine").rglob("*"):
        if directory.is_dir() and directory.name != "__pycache__" and any(directory.glob("*.py")):
            assert (directory / "__init__.py").exists(), f"{directory} has no __init__.py"
