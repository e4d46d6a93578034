"""The wheel carries every package and its data files (a plain
``pip install .`` once gave a CLI that could not start)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_wheel_holds_migrations_openapi_and_license(tmp_path: Path) -> None:
    # the installed setuptools and wheel (the test extra): an isolated build
    # first installs them into a fresh environment, ~20 s more; what a user's
    # plain `pip install .` does is .ci/run's bin/smoke-install
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    subprocess.run([*build, str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("dlengine-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    migrations = sorted(p.name for p in (ROOT / "dlengine/ledger/migrations").glob("*.sql"))
    assert migrations and all(f"dlengine/ledger/migrations/{m}" in names for m in migrations)
    assert "dlengine/ledger/__init__.py" in names
    assert "dlengine/api/openapi.json" in names
    assert any(n.endswith("licenses/LICENSE") or n.endswith("/LICENSE") for n in names)
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "dlengine").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    # the servers shared by tests and bench (harness/), the tests and the bench stay out
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"dlengine"}
