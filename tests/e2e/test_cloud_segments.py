"""Large S3, GCS and Azure objects on the segmented path of the libcurl loop,
against the emulators (behind ``PacedFront``, which records every
exchange and can slow the bodies so that a kill lands mid-segment): split
into ranged segments where the server allows it, each answer checked
against the first one's ETag, resumed after a kill from the segment map,
and an object that changed between two attempts fetched again whole,
never stored as a mix of two versions."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.cloud_servers import AZURITE_ACCOUNT, AzuriteServer, GCSServer, PacedFront, S3Server, s3_env
from tests.conftest import Home, counters_match_rows, wait_for

THRESHOLD = 4 << 20
SIZE = 8 << 20  # eight segments of 1 MiB (none smaller than a quarter of the threshold)
CHUNK = 64 << 10  # the segment map is saved once a chunk is unsaved (and half a second passed)
RATE = 400_000  # bytes/s per connection while a kill is to land mid-segment


@pytest.fixture
def front() -> Iterator[Callable[..., PacedFront]]:
    """Starts a ``PacedFront`` before a port (stopped after the test)."""
    fronts: list[PacedFront] = []

    def start(upstream_port: int, **kwargs: Any) -> PacedFront:
        fronts.append(PacedFront(upstream_port, **kwargs).start())
        return fronts[-1]

    yield start
    for f in fronts:
        f.stop()


def _segmented(home: Home) -> Home:
    home.env.update(DLENGINE_SEGMENT_THRESHOLD=str(THRESHOLD), DLENGINE_CHUNK=str(CHUNK), DLENGINE_CLOUD_GET="curl")
    return home


def _kept_map(home: Home) -> list[list[int]]:
    """The segment map of the one work file (empty while there is none)."""
    meta = [p for p in home.work_files() if p.suffix == ".meta"]
    return (json.loads(meta[0].read_text()).get("segments") or []) if meta else []


def _stored(home: Home, name: str) -> bytes:
    found = home.find("ais", "got", name)
    assert found is not None, home.work_files()
    return found.read_bytes()


def _part_size(home: Home) -> int:
    """The size of the one work file (0 while there is none)."""
    parts = [p for p in home.work_files() if p.suffix == ".part"]
    return parts[0].stat().st_size if parts else 0


# ------------------------------------------------------------------ Azure


def _azure_home(home: Home, azurite: AzuriteServer, front: PacedFront) -> Home:
    endpoint = f"{front.url}/{AZURITE_ACCOUNT}"
    connection = azurite.connection_string().replace(f"http://127.0.0.1:{azurite.port}/{AZURITE_ACCOUNT}", endpoint)
    assert endpoint in connection
    home.env["AZURE_STORAGE_CONNECTION_STRING"] = connection
    return _segmented(home)


def _put_blob(container: Any, name: str, data: bytes) -> str:
    """A block blob committed from blocks: no Content-MD5, so only the
    ETag guard keeps two versions apart (no checksum would catch a mix)."""
    blob = container.get_blob_client(name)
    ids = []
    for n, start in enumerate(range(0, len(data), 4 << 20)):
        ids.append(f"{n:06d}")
        blob.stage_block(ids[-1], data[start : start + (4 << 20)])
    from azure.storage.blob import BlobBlock

    blob.commit_block_list([BlobBlock(block_id=i) for i in ids])
    props = blob.get_blob_properties()
    assert not (props.content_settings and props.content_settings.content_md5)
    return str(props.etag)


def _kill_mid_segments(home: Home, paced: PacedFront, name: str, ranged_requests: int = 7) -> list[list[int]]:
    """Run the job until all eight segments are under way (``ranged_requests``
    of them asked for with a Range) and the map has recorded some of their
    bytes, then kill -9 the supervisor and its workers; the segment map left."""
    runner = home.spawn("run")
    ranged = lambda: [e for e in paced.since(0, name) if "range" in e.headers]  # noqa: E731
    # every segment answered (a loaded emulator can be slow to), some of their bytes in the map
    wait_for(lambda: len(ranged()) == ranged_requests and all(e.status for e in ranged()), timeout=60)
    wait_for(lambda: any(pos > start for start, pos, _ in _kept_map(home)), timeout=30)  # saved twice a second
    home.kill(runner)
    kept = _kept_map(home)
    assert len(kept) == 8 and any(pos < end for _, pos, end in kept), kept
    return kept


@pytest.mark.parametrize("changed", [False, True], ids=["same", "changed"])
def test_azure_blob_in_segments_resumed_from_the_map_or_fetched_again_if_changed(
    home: Home, azurite_server: AzuriteServer, front: Any, changed: bool
) -> None:
    container = azurite_server.client().create_container(f"seg-{uuid.uuid4().hex[:10]}")
    first = os.urandom(SIZE)
    etag = _put_blob(container, "big.bin", first)
    paced = front(azurite_server.port, rate=RATE)
    _azure_home(home, azurite_server, paced)
    link = f"az://{container.container_name}/big.bin"
    job_id = home.submit({"type": "single", "bucket": {"name": "got"}, "link": link})
    kept = _kill_mid_segments(home, paced, "/big.bin")
    gets = paced.since(0, "/big.bin")
    assert gets[0].status == 200 and "range" not in gets[0].headers  # segment 0: the whole-object answer, cut
    assert sorted(e.range_start or 0 for e in gets[1:]) == [i * (SIZE // 8) for i in range(1, 8)]
    assert all(e.status == 206 and e.headers.get("if-range") == etag for e in gets[1:]), [
        (e.status, e.headers.get("range"), e.headers.get("if-range"), etag) for e in gets
    ]

    paced.rate = None
    now = first
    if changed:  # the same size, no MD5: only the ETag tells the versions apart
        now = os.urandom(SIZE)
        assert _put_blob(container, "big.bin", now) != etag
    mark = len(paced.exchanges)
    res = home.run()
    assert res.returncode == 0, res.stderr[-3000:]
    assert _stored(home, "big.bin") == now
    assert home.work_files() == []
    counters_match_rows(home.ledger(), job_id)
    again = paced.since(mark, "/big.bin")
    unfinished = sorted(pos for _, pos, end in kept if pos < end)
    resumed = [e for e in again if e.headers.get("if-range") == etag]
    fresh = [e for e in again if e not in resumed]
    if not changed:  # every unfinished segment asked for where the map says, nothing else
        assert sorted(e.range_start or 0 for e in resumed) == unfinished and fresh == [], again
        assert all(e.status == 206 and e.answer.get("etag") == etag for e in resumed), again
        return
    # Azurite ignores If-Range: its 206s are of the new version, refused on
    # their ETag before a byte was written (the other segments stopped with
    # them); the next attempt is a fresh one, of the new version only
    assert resumed and {e.range_start for e in resumed} <= set(unfinished), again
    assert all(e.status == 206 and e.answer.get("etag") != etag for e in resumed), again
    assert fresh and "range" not in fresh[0].headers and fresh[0].status == 200, again
    assert all(e.answer.get("etag") == fresh[0].answer.get("etag") != etag for e in fresh), again


def test_azure_listed_blob_asks_for_its_first_segment_alone(
    home: Home, azurite_server: AzuriteServer, front: Any
) -> None:
    """A blob of listed size (a backend job): its first GET asks for
    segment 0 alone (a 206 with the blob's ETag and stored MD5: nothing
    cut, the connection kept), the other seven are guarded by that ETag,
    and the whole is verified by the stored MD5."""
    from azure.storage.blob import ContentSettings

    container = azurite_server.client().create_container(f"seg-{uuid.uuid4().hex[:10]}")
    data = os.urandom(SIZE)
    md5 = hashlib.md5(data).digest()
    container.upload_blob("big.bin", data, content_settings=ContentSettings(content_md5=bytearray(md5)))
    paced = front(azurite_server.port)
    _azure_home(home, azurite_server, paced)
    job_id = home.submit({"type": "backend", "bucket": {"name": container.container_name, "provider": "azure"}})
    res = home.run()
    assert res.returncode == 0, res.stderr[-3000:]
    assert (home.mountpaths[0] / "azure" / container.container_name / "big.bin").read_bytes() == data
    counters_match_rows(home.ledger(), job_id)
    gets = [e for e in paced.since(0, "/big.bin") if e.method == "GET"]
    step = SIZE // 8
    etag = gets[0].answer.get("etag")
    assert (gets[0].status, gets[0].headers.get("range"), gets[0].headers.get("if-range")) == (
        206, f"bytes=0-{step - 1}", None)  # fmt: skip
    assert sorted(e.range_start or 0 for e in gets[1:]) == [i * step for i in range(1, 8)]
    assert all(e.status == 206 and e.headers.get("if-range") == etag for e in gets[1:]), gets
    with home.ledger() as conn:
        (checksum,) = conn.execute("SELECT checksum FROM catalog WHERE name = 'big.bin'").fetchone()
    assert checksum == f"md5:{md5.hex()}"  # the stored MD5, from the ranged answer


# --------------------------------------------------------------------- S3


@pytest.mark.parametrize("changed", [False, True], ids=["same", "changed"])
def test_s3_object_asks_for_its_first_segment_alone_and_resumes_from_the_map(
    home: Home, s3_server: S3Server, front: Any, changed: bool
) -> None:
    """An S3 object of listed size: its first GET asks for segment 0 alone
    (a 206, nothing cut), the other seven are guarded by that answer's
    ETag; killed mid-segments, the next run resumes each where the map
    says, or, the object having changed, stores the new version whole,
    its MD5 (the ETag) verified."""
    client, bucket = s3_server.client(), f"seg-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    first = os.urandom(SIZE)
    etag = client.put_object(Bucket=bucket, Key="big.bin", Body=first)["ETag"]
    paced = front(s3_server.port, rate=RATE)
    home.env.update(s3_env(paced.url))
    _segmented(home)
    job_id = home.submit({"type": "backend", "bucket": {"name": bucket, "provider": "aws"}})
    path = f"/{bucket}/big.bin"
    kept = _kill_mid_segments(home, paced, path, ranged_requests=8)
    gets = [e for e in paced.since(0, path) if e.method == "GET"]
    step = SIZE // 8
    assert (gets[0].status, gets[0].headers.get("range"), gets[0].headers.get("if-range")) == (
        206, f"bytes=0-{step - 1}", None)  # fmt: skip
    assert sorted(e.range_start or 0 for e in gets[1:]) == [i * step for i in range(1, 8)]
    assert all(e.status == 206 and e.headers.get("if-range") == etag for e in gets[1:]), gets

    paced.rate = None
    now = first
    if changed:
        now = os.urandom(SIZE)
        assert client.put_object(Bucket=bucket, Key="big.bin", Body=now)["ETag"] != etag
    mark = len(paced.exchanges)
    res = home.run()
    assert res.returncode == 0, res.stderr[-3000:]
    assert (home.mountpaths[0] / "aws" / bucket / "big.bin").read_bytes() == now
    assert home.work_files() == []
    counters_match_rows(home.ledger(), job_id)
    conn = sqlite3.connect(home.path / "ledger.db")
    try:
        (checksum,) = conn.execute("SELECT checksum FROM catalog WHERE name = 'big.bin'").fetchone()
    finally:
        conn.close()
    assert checksum == "md5:" + hashlib.md5(now).hexdigest()
    again = [e for e in paced.since(mark, path) if e.method == "GET"]
    resumed = [e for e in again if e.headers.get("if-range") == etag]
    if not changed:  # every unfinished segment asked for where the map says, nothing else
        unfinished = sorted(pos for _, pos, end in kept if pos < end)
        assert sorted(e.range_start or 0 for e in resumed) == unfinished and len(again) == len(resumed), again
        assert all(e.status == 206 for e in resumed), again
        return
    # the resumed segments are refused (their answers are of another
    # version); the next attempt asks for the whole new object
    assert resumed and all(e.status != 206 or e.answer.get("etag") != etag for e in resumed), again
    assert any("range" not in e.headers and e.status == 200 for e in again), again


# -------------------------------------------------------------------- GCS


def _gcs_home(home: Home, front: PacedFront) -> Home:
    home.env["STORAGE_EMULATOR_HOST"] = front.url
    return _segmented(home)


def _media(front: PacedFront, mark: int = 0) -> list[Any]:
    return [e for e in front.since(mark, "/download/storage/v1/b/") if "/o/big.bin" in e.path]


@pytest.mark.parametrize("ranges", [False, True], ids=["as-is", "accept-ranges"])
def test_gcs_large_object_comes_whole_where_answers_carry_no_etag(
    home: Home, gcs_server: GCSServer, front: Any, ranges: bool
) -> None:
    """gcp-storage-emulator's media download has neither Accept-Ranges nor
    an ETag (nor a generation): nothing could guard a segment, so the
    object comes in one stream. With Accept-Ranges added (a real service
    sends it), the listing's ETag must not pass for the answer's: every
    segment's 206 would then fail as "changed", attempt after attempt."""
    bucket = gcs_server.client().create_bucket(f"seg-{uuid.uuid4().hex[:10]}")
    data = os.urandom(SIZE)
    bucket.blob("big.bin").upload_from_string(data)
    paced = front(gcs_server.port, add={"Accept-Ranges": "bytes"} if ranges else {})
    _gcs_home(home, paced)
    job_id = home.submit({"type": "backend", "bucket": {"name": bucket.name, "provider": "gcp"}})
    res = home.run()
    assert res.returncode == 0, res.stderr[-3000:]
    assert (home.mountpaths[0] / "gcp" / bucket.name / "big.bin").read_bytes() == data
    counters_match_rows(home.ledger(), job_id)
    gets = _media(paced)
    assert [(e.status, e.headers.get("range")) for e in gets] == [(200, None)], gets


@pytest.mark.parametrize("changed", [False, True], ids=["same", "changed"])
def test_gcs_interrupted_object_starts_over_never_mixed(
    home: Home, gcs_server: GCSServer, front: Any, changed: bool
) -> None:
    """A whole stream killed midway asks for the rest with Range and
    If-Range (the listing's ETag); the emulator ignores If-Range and its
    206 carries no validator, so the kept bytes cannot be shown to be of
    the same version: the next attempt starts over, and stores the object
    as it is now, whole."""
    bucket = gcs_server.client().create_bucket(f"seg-{uuid.uuid4().hex[:10]}")
    first = os.urandom(SIZE)
    bucket.blob("big.bin").upload_from_string(first)
    paced = front(gcs_server.port, rate=RATE, add={"Accept-Ranges": "bytes"})
    _gcs_home(home, paced)
    job_id = home.submit({"type": "backend", "bucket": {"name": bucket.name, "provider": "gcp"}})
    runner = home.spawn("run")
    wait_for(lambda: _part_size(home) >= 256 << 10, timeout=60)
    home.kill(runner)
    kept = _part_size(home)
    assert 0 < kept < SIZE
    paced.rate = None
    now = first
    if changed:
        now = os.urandom(SIZE)
        bucket.blob("big.bin").upload_from_string(now)
    mark = len(paced.exchanges)
    res = home.run()
    assert res.returncode == 0, res.stderr[-3000:]
    assert (home.mountpaths[0] / "gcp" / bucket.name / "big.bin").read_bytes() == now
    assert home.work_files() == []
    counters_match_rows(home.ledger(), job_id)
    gets = [(e.status, e.range_start, e.headers.get("if-range") is not None) for e in _media(paced, mark)]
    assert gets[0][:2] == (206, kept) and gets[0][2], gets  # the rest asked for, guarded
    assert gets[1:] == [(200, None, False)], gets  # refused (no validator): started over
