"""A worker whose libcurl loop fails (an exception on its loop thread):
the worker logs the error, naming it, and exits non-zero, so the supervisor
sees a dead worker and the objects the loop held go back to be downloaded
again (by the next worker), not recorded as aborted. The failure comes from
a ``sitecustomize`` on the home's PYTHONPATH that breaks the first loop
round with a transfer in flight (once: a marker file)."""

from __future__ import annotations

from pathlib import Path

from harness.httpd import Fault, TestHTTPServer
from tests.conftest import Home

# Wraps CurlLoop._perform at the import of dlengine.engine.curl (in the
# supervisor before it forks its spares, or in a fresh worker): the first
# round with an active transfer, in whichever process gets there first
# (O_EXCL on $LOOPHOOK_MARK), raises.
_HOOK = """
import importlib.util, os, sys

class _Hook:
    def find_spec(self, name, path=None, target=None):
        if name != "dlengine.engine.curl":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            real = module.CurlLoop._perform
            def _perform(self):
                if self._active:
                    try:
                        os.close(os.open(os.environ["LOOPHOOK_MARK"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                    except FileExistsError:
                        pass
                    else:
                        raise RuntimeError("the loop broke (test hook)")
                return real(self)
            module.CurlLoop._perform = _perform
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _Hook())
"""


def _break_loop_once(home: Home, tmp_path: Path) -> Path:
    mark = tmp_path / "broke"
    home.site_hook(tmp_path / "hook", _HOOK, LOOPHOOK_MARK=str(mark))
    return mark


def test_a_failed_loop_kills_its_worker_and_its_objects_are_retried(
    home: Home, httpd: TestHTTPServer, tmp_path: Path
) -> None:
    mark = _break_loop_once(home, tmp_path)
    objects = {}
    for i in range(4):
        path = f"/broken/o{i}.bin"
        httpd.put_generated(path, 200_000 + i, seed=i)
        httpd.set_fault(path, Fault(rate=400_000))  # still in flight when the loop breaks
        objects[f"o{i}.bin"] = httpd.url + path
    job_id = home.submit({"type": "multi", "bucket": {"name": "broken"}, "objects": objects})

    res = home.run(timeout=90)

    assert mark.exists(), res.stderr  # the loop did break
    assert "RuntimeError: the loop broke (test hook)" in res.stderr, res.stderr
    assert "its libcurl loop failed (RuntimeError: the loop broke (test hook)); exiting 3" in res.stderr, res.stderr
    assert "died (exit code 3)" in res.stderr, res.stderr  # a dead worker to the supervisor
    status = home.status(job_id)
    assert res.returncode == 0, (status, res.stderr)
    assert status["finished_cnt"] == 4 and status["error_cnt"] == 0, status
    for i in range(4):
        stored = home.find("ais", "broken", f"o{i}.bin")
        assert stored is not None and stored.read_bytes() == httpd.expected_bytes(f"/broken/o{i}.bin")
