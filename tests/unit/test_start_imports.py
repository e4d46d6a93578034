"""What a command imports before it does anything (issue 12: start-up
<= 0.1 s of fixed cost): checked in fresh interpreters, since a module
imported once stays imported for the rest of a test session."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

from harness.httpd import TestHTTPServer

ROOT = Path(__file__).resolve().parent.parent.parent

# a command run in-process in a fresh interpreter; prints dlengine's modules and the others loaded
_PROBE = """
import json, sys
from dlengine.cli import main
code = main(sys.argv[1:]) if len(sys.argv) > 1 else 0
if len(sys.argv) == 1:
    import dlengine.cli.main
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _site_path() -> str:
    """PYTHONPATH for an interpreter without site (``-S``): the checkout,
    then the site-packages directories (without their ``.pth`` hooks)."""
    return os.pathsep.join([str(ROOT), *site.getsitepackages(), site.getusersitepackages()])


def _modules(tmp_path: Path, *argv: str) -> set[str]:
    """The modules the command loaded beyond those of a bare interpreter
    in the same environment, both without site (``-S``, the site-packages
    directories on PYTHONPATH instead): a site hook (``.pth``) may import
    modules (shutil, pathlib, typing on this box) that would otherwise
    hide in the bare interpreter's set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLENGINE_")}
    env.update(DLENGINE_HOME=str(tmp_path / "home"), PYTHONPATH=_site_path())

    def probe(code: str, *args: str) -> set[str]:
        out = subprocess.run(
            [sys.executable, "-S", "-c", code, *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout.splitlines()[-1])
        assert got["code"] == 0, out.stderr
        return set(got["modules"])

    bare = probe('import json, sys; print(json.dumps({"code": 0, "modules": sorted(sys.modules)}))')
    return probe(_PROBE, *argv) - bare


def test_the_command_line_imports_no_command_before_it_is_chosen(tmp_path: Path) -> None:
    loaded = _modules(tmp_path)
    assert "dlengine.cli.main" in loaded  # (the control)
    assert not {"dlengine.client", "dlengine.spec", "dlengine.ledger", "dlengine.cli.output", "sqlite3"} & loaded


# what no command needs before its subcommand is chosen; --help prints without them
_HEAVY = {
    "dataclasses",  # (and inspect, ast, dis: the records' classes)
    "pathlib",
    "logging",  # run and serve log, the other commands do not
    "sqlite3",
    "pycurl",
    "ctypes",
    "socket",
    "shutil",  # (and bz2, lzma): argparse's formatters ask cli.parser.columns for the width
    "boto3",
    "botocore",
    "google",
    "azure",
    "huggingface_hub",
    "urllib3",
    "requests",
    "dlengine.config",
    "dlengine.supervisor.prespawn",  # run's spare workers
}


def test_help_imports_no_heavy_module(tmp_path: Path) -> None:
    """--help in an interpreter without site (-S): stdlib modules that a
    site hook imports (pathlib, logging) would otherwise hide in the bare
    interpreter's set."""
    code = "import json, sys\nfrom dlengine.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
    code += "print(json.dumps(sorted(sys.modules)))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLENGINE_")}
    env.update(DLENGINE_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-S", "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "usage: dlengine" in out.stdout  # (the control: the help was printed)
    modules = json.loads(out.stdout.splitlines()[-1])
    loaded = {*modules, *(name.partition(".")[0] for name in modules)}  # google.cloud counts as google
    assert sorted(_HEAVY & loaded) == []


def test_run_with_nothing_to_do_imports_neither_data_path_nor_spec_parser(tmp_path: Path) -> None:
    loaded = _modules(tmp_path, "run", "--quiet")
    assert "dlengine.supervisor.supervisor" in loaded  # (the control: the supervisor ran)
    unwanted = {
        "dlengine.supervisor.worker",  # no spares forked, no pool started
        "dlengine.engine.curl",
        "pycurl",
        "dlengine.supervisor.dispatch",  # started with the first busy job
        "dlengine.supervisor.pool",  # (and subprocess): the pools too
        "subprocess",
        "dlengine.spec.parse",
        "dlengine.client",
        "shutil",  # (and bz2, lzma, ~4 ms): not for argparse's width, not for layout's rmtree
        "bz2",
        "lzma",
        "dataclasses",  # (and inspect, ast, dis: ~43 M instructions): records need none (dlengine.records)
        "inspect",
        "hashlib",  # (and _hashlib's OpenSSL start): not for one mountpath's placement
        "_hashlib",
    }
    assert not unwanted & loaded


def test_submit_starts_a_supervisor_without_importing_it(tmp_path: Path) -> None:
    """``submit`` asks for a background supervisor (``supervisor.background``)
    without the supervisor's modules; the home's lock held here stands for
    a running supervisor, so none is started."""
    from dlengine.supervisor.lock import HomeLock

    (tmp_path / "home").mkdir()
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"type": "single", "bucket": {"name": "b"}, "link": "http://127.0.0.1:9/x.bin"}))
    lock = HomeLock(tmp_path / "home" / "supervisor.lock")
    assert lock.acquire()
    try:
        loaded = _modules(tmp_path, "submit", str(job))
    finally:
        lock.release()
    assert {"dlengine.client", "dlengine.supervisor.background"} <= loaded  # (the control: it asked)
    unwanted = {
        "dlengine.supervisor.supervisor",
        "dlengine.supervisor.pool",
        "dlengine.supervisor.prespawn",
        "dataclasses",  # (and inspect, ast, dis): records need none (dlengine.records)
        "inspect",
        "logging",  # submit logs nothing (the logs' redaction is dlengine.logredact's, not dlengine.redact's)
        "hashlib",  # (and _hashlib's OpenSSL start): not for one mountpath's placement
        "_hashlib",
    }
    assert not unwanted & loaded


def test_download_that_verifies_no_checksum_imports_no_hashlib(tmp_path: Path, httpd: TestHTTPServer) -> None:
    """hashlib (and _hashlib's OpenSSL start, ~11 M instructions) comes
    with the first checksum a transfer verifies, not with the data path."""
    httpd.put("/a.bin", b"x" * 10240, etag="v1", content_md5=False)  # (a quoted MD5 ETag would be verified)
    loaded = _modules(tmp_path, "download", f"{httpd.url}/a.bin", "ais://b", "--wait")
    assert {"dlengine.supervisor.worker", "dlengine.engine.curl"} <= loaded  # (the control: downloaded here)
    assert not {"hashlib", "_hashlib"} & loaded


def test_a_workers_signed_s3_get_imports_no_xml_parser(tmp_path: Path) -> None:
    """A worker signs S3 GETs (and asks the bucket's region once) without
    the listing's XML parser or upload's base64 (~3 ms of a fresh worker's
    way to its first GET, with bytecode cached)."""
    code = (
        "import json, sys\nimport dlengine.supervisor.worker\nbefore = set(sys.modules)\n"
        "from dlengine.sources.signed import signed_get\n"
        "got = signed_get('s3://bkt/dir/k.bin')\n"
        "print(json.dumps({'url': bool(got and got.url), 'new': sorted(set(sys.modules) - before)}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DLENGINE_", "AWS_"))}
    env.update(
        DLENGINE_HOME=str(tmp_path / "home"),
        PYTHONPATH=str(ROOT),
        AWS_ENDPOINT_URL="http://127.0.0.1:9",  # (nothing listens: the region HEAD fails, the configured one stands)
        AWS_ACCESS_KEY_ID="AK",
        AWS_SECRET_ACCESS_KEY="SK",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
    )
    command = [sys.executable, "-c", code]
    out = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["url"] and "dlengine.sources.s3" in got["new"]  # (the control: signed by the S3 source)
    assert not {"xml.etree.ElementTree", "pyexpat", "base64", "boto3", "botocore"} & set(got["new"])


def test_run_whose_workers_are_its_spares_imports_no_subprocess(tmp_path: Path, httpd: TestHTTPServer) -> None:
    """``subprocess`` comes with the first fresh worker (one died, or work
    came that the spares cannot take), not with the pools."""
    httpd.put("/a.bin", b"x" * 10240, etag="v1", content_md5=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLENGINE_")}
    env.update(DLENGINE_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    job = json.dumps({"type": "single", "bucket": {"name": "b"}, "link": f"{httpd.url}/a.bin"})
    sub = subprocess.run(
        [sys.executable, "-m", "dlengine", "submit", "--no-start", "-"],
        env=env, cwd=tmp_path, input=job, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert sub.returncode == 0, sub.stderr
    loaded = _modules(tmp_path, "run", "--quiet")
    assert {"dlengine.supervisor.pool", "dlengine.supervisor.worker"} <= loaded  # (the control: a pool ran)
    assert (tmp_path / "home" / "data").is_dir() and any((tmp_path / "home" / "data").rglob("a.bin"))
    assert "subprocess" not in loaded
