#!/usr/bin/env python3
"""Azure Blob with a token credential: what a worker pays to sign.

``--sign``: CPU per object of ``signed.signed_get(link)`` (what a worker's
ledger thread calls per blob) in one process, the key already held: the
SDK's path (``get_blob_client(...).url`` + ``generate_blob_sas(...,
user_delegation_key=...)``, what it did before) against ``sources.azdeleg``
signing; interleaved rounds, one thread.

``--fresh``: a fresh process (a worker before its first GET): import the
worker, then its first ``signed_get`` of an ``az://`` blob (the credential,
the user delegation key, one SAS), for each checkout of ``--roots`` in turn.
Azurite runs with ``--oauth basic`` over HTTPS (a self-signed certificate);
the SDK reaches it directly (``REQUESTS_CA_BUNDLE``), dlengine's pycurl
handles through ``harness.cloud_servers.TLSFront``; the token credential is
a stand-in for azure-identity's ``DefaultAzureCredential`` (not installed
here) on the process's path, so azure-identity's own import is not counted;
with ``--identity DIR`` (azure-identity installed there, e.g. ``pip install
--target DIR azure-identity``) the real ``DefaultAzureCredential`` is used,
its managed-identity credential pointed at a local endpoint
(``harness.cloud_servers.ManagedIdentityEndpoint``), and its own import and
construction are measured too.
CPU is the child's (``RUSAGE_CHILDREN``), wall from start to exit.

Usage (from the repository root)::

    python3 bench/azure_token.py --sign [--objects 5000] [--reps 5]
    python3 bench/azure_token.py --fresh [--reps 5] [--roots /old/checkout,.] [--identity DIR]
"""

from __future__ import annotations

import argparse
import base64
import datetime
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.cloud_servers import (  # noqa: E402
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    OID,
    TENANT,
    AzuriteServer,
    ManagedIdentityEndpoint,
    TLSFront,
    azurite_binary,
    fake_identity,
    self_signed_cert,
)

CONTAINER = "bench-token"
NAMES = [f"dir/object {i:05d}.bin" for i in range(5000)]


def _sign(objects: int, reps: int) -> None:
    from azure.storage.blob import BlobServiceClient, UserDelegationKey

    from dlengine.sources import azdeleg, azure, signed

    value = base64.b64encode(os.urandom(32)).decode()
    start, expiry = "2026-12-01T10:00:00Z", "2027-12-08T10:00:00Z"
    sdk_key = UserDelegationKey()
    sdk_key.signed_oid, sdk_key.signed_tid, sdk_key.signed_start, sdk_key.signed_expiry = OID, TENANT, start, expiry
    sdk_key.signed_service, sdk_key.signed_version, sdk_key.value = "b", "2025-11-05", value
    ours = azdeleg.DelegationKey(OID, TENANT, start, expiry, "b", "2025-11-05", value)
    url = "https://acc.blob.core.windows.net"
    sdk = BlobServiceClient(url, credential=type("Token", (), {"get_token": lambda *a, **k: None})())
    os.environ.pop(azure.ENV_CONNECTION_STRING, None)
    os.environ[azure.ENV_ACCOUNT_URL] = url
    azure._credentials[:] = [sdk.credential]
    far = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=300)
    names = (NAMES * (objects // len(NAMES) + 1))[:objects]

    links = [f"az://{CONTAINER}/{name}" for name in names]
    token_signer = azure._token_signer

    def before() -> None:  # the SDK's signing, as signed_get did it (the key held)
        azure._token_signer, azure._client[:], azure._delegation[:] = lambda: None, [sdk], [(far, sdk_key)]
        for link in links:
            assert signed.signed_get(link) is not None

    def after() -> None:
        azure._token_signer, azure._delegation[:] = token_signer, [(far, ours)]
        for link in links:
            assert signed.signed_get(link) is not None

    results: dict[str, list[float]] = {
        "signed_get, SDK (get_blob_client + generate_blob_sas)": [],
        "signed_get, azdeleg": [],
    }
    for _ in range(reps):
        for label, run in zip(results, (before, after), strict=True):
            cpu = time.process_time()
            run()
            results[label].append((time.process_time() - cpu) / objects * 1e6)
    for label, runs in results.items():
        shown = ", ".join(f"{r:.1f}" for r in runs)
        print(f"{label}: median {statistics.median(runs):.1f} us CPU/object ({shown})")


def _first_sign(root: Path, env: dict[str, str], link: str) -> tuple[float, float, str]:
    code = (
        "import time, sys; t = time.perf_counter(); from dlengine.supervisor import worker; t1 = time.perf_counter();"
        f" from dlengine.sources.signed import signed_get; got = signed_get({link!r}); t2 = time.perf_counter();"
        " assert got is not None and 'sig=' in got.url;"
        " print(f'{t1 - t:.3f} {t2 - t1:.3f}', ' '.join(sorted(m for m in sys.modules if m.startswith('azure.')"
        " and m.count('.') <= 2)))"
    )
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{root}: {res.stderr[-2000:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, usage.ru_utime + usage.ru_stime - cpu, res.stdout.strip()


def _fresh(roots: list[Path], reps: int, real_identity: Path | None) -> None:
    from azure.storage.blob import BlobServiceClient

    binary = azurite_binary()
    if binary is None:
        raise SystemExit("Azurite is not installed (.ci/run installs it)")
    with tempfile.TemporaryDirectory(prefix="azure-token-") as tmp:
        work = Path(tmp)
        cert, key = self_signed_cert(work)
        identity = real_identity or fake_identity(work)
        managed = ManagedIdentityEndpoint().start()
        server = AzuriteServer(binary).start(work, ("--oauth", "basic", "--cert", str(cert), "--key", str(key)))
        front = TLSFront(server.port, cert).start()
        try:
            https = f"https://127.0.0.1:{server.port}/{AZURITE_ACCOUNT}"
            credential = {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
            keyed = BlobServiceClient(https, credential=credential, connection_verify=str(cert))
            keyed.create_container(CONTAINER)
            keyed.get_blob_client(CONTAINER, "k.bin").upload_blob(b"x" * 100)
            base = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
            base.pop("PYTHONDONTWRITEBYTECODE", None)
            base["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
            base.update(managed.env)  # (only the real DefaultAzureCredential asks it)
            link = f"az://{CONTAINER}/k.bin"
            floor: list[float] = []
            credential: list[float] = []
            runs: dict[Path, list[tuple[float, float, str]]] = {root: [] for root in roots}
            for _ in range(reps):
                usage = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = usage.ru_utime + usage.ru_stime
                subprocess.run([sys.executable, "-c", "pass"], env=base, check=True)
                usage = resource.getrusage(resource.RUSAGE_CHILDREN)
                floor.append(usage.ru_utime + usage.ru_stime - cpu)
                if real_identity is not None:
                    code = "from azure.identity import DefaultAzureCredential; DefaultAzureCredential()"
                    identity_env = {**base, "PYTHONPATH": str(real_identity)}
                    subprocess.run([sys.executable, "-c", code], env=identity_env, check=True)
                    used = resource.getrusage(resource.RUSAGE_CHILDREN)
                    credential.append(used.ru_utime + used.ru_stime - usage.ru_utime - usage.ru_stime)
                for root in roots:
                    # the SDK's path needs HTTPS (it refuses a token over HTTP); dlengine's goes through the front
                    plain = (root / "dlengine" / "sources" / "azdeleg.py").exists()
                    url = f"http://127.0.0.1:{front.port}/{AZURITE_ACCOUNT}" if plain else https
                    path = f"{identity}{os.pathsep}{root}"
                    env = {**base, "AZURE_STORAGE_ACCOUNT_URL": url, "PYTHONPATH": path,
                           "REQUESTS_CA_BUNDLE": str(cert)}  # fmt: skip
                    runs[root].append(_first_sign(root, env, link))
            print(f"python -c pass: median {statistics.median(floor) * 1e3:.0f} ms CPU")
            if credential:
                shown = ", ".join(f"{c * 1e3:.0f}" for c in credential)
                median = statistics.median(credential) * 1e3
                print(f"import azure.identity + DefaultAzureCredential(): median {median:.0f} ms CPU ({shown});"
                      f" managed-identity token requests {managed.calls}")  # fmt: skip
            for root, got in runs.items():
                walls, cpus = [g[0] for g in got], [g[1] for g in got]
                rounds = ", ".join(f"{w * 1e3:.0f}/{c * 1e3:.0f}" for w, c in zip(walls, cpus, strict=True))
                print(
                    f"{root}: fresh process to its first signed GET, median {statistics.median(walls) * 1e3:.0f} ms"
                    f" wall / {statistics.median(cpus) * 1e3:.0f} ms CPU; rounds (wall/CPU ms) {rounds}"
                )
                print(f"  import worker s, first signed_get s, azure.* modules: {got[-1][2]}")
        finally:
            managed.stop()
            front.stop()
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sign", action="store_true")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--roots", default=".")
    parser.add_argument("--identity", type=Path, help="a directory with azure-identity installed (pip --target)")
    args = parser.parse_args()
    print(f"load {os.getloadavg()[0]:.2f} at {time.strftime('%H:%M:%S', time.gmtime())} UTC")
    if args.sign:
        _sign(args.objects, args.reps)
    if args.fresh:
        _fresh([Path(r).resolve() for r in args.roots.split(",")], args.reps, args.identity)
    print(f"load {os.getloadavg()[0]:.2f} at {time.strftime('%H:%M:%S', time.gmtime())} UTC")


if __name__ == "__main__":
    main()
