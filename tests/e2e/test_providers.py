"""One provider list: aliases, and what each provider may be used for is
decided at submission (exit 2 naming the field), never at dispatch."""

from __future__ import annotations

import json

from tests.conftest import Home


def test_ht_backend_job_is_refused_at_submission(home: Home) -> None:
    body = json.dumps({"type": "backend", "bucket": {"name": "b", "provider": "ht"}})
    res = home.cli("submit", "-", "--no-start", input=body)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "bucket.provider" in res.stderr and "'ht'" in res.stderr
    assert json.loads(home.cli("show", "--all", "--json").stdout) == []
