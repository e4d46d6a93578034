"""Object names, default descriptions, backend jobs into another bucket
and when a stored copy is the listed object, as AIStore's downloader has
them (ext/dload/utils_test.go, api.go)."""

from __future__ import annotations

from typing import Any

import pytest

from dlengine import listing
from dlengine.errors import SpecError
from dlengine.ledger.models import CatalogEntry, NewObject
from dlengine.providers import Provider
from dlengine.spec import load_spec, parse_job
from dlengine.spec.model import BucketRef
from dlengine.spec.names import normalize_object_name
from dlengine.spec.parse import dump_spec

# AIStore's TestNormalizeObjName, case for case
NORMALIZE = [
    ("?objname", "?objname"),
    ("filename", "filename"),
    ("dir/file", "dir/file"),
    ("dir%2Ffile", "dir/file"),
    ("path1/path2/path3%2Fpath4%2Ffile", "path1/path2/path3/path4/file"),
    ("file?arg1=a&arg2=b", "file"),
    ("imagenet%2Fimagenet_train-000000.tgz?alt=media", "imagenet/imagenet_train-000000.tgz"),
]
REFUSED = ["..%2Foutside", "dir/../outside", "bad%zz", "%C3%28"]


def job(**fields: Any) -> dict[str, Any]:
    return {"bucket": {"name": "abc"}, **fields}


@pytest.mark.parametrize(("name", "expected"), NORMALIZE)
def test_normalize_object_name_as_aistore(name: str, expected: str) -> None:
    assert normalize_object_name(name, "object_name") == expected


@pytest.mark.parametrize("name", REFUSED)
def test_normalize_object_name_refuses_as_aistore(name: str) -> None:
    with pytest.raises(SpecError) as info:
        normalize_object_name(name, "object_name")
    assert info.value.field == "object_name"


@pytest.mark.parametrize(("name", "expected"), NORMALIZE)
def test_single_and_multi_names_are_normalized_and_survive_the_ledger(name: str, expected: str) -> None:
    single = parse_job(job(type="single", link="http://h/x", object_name=name))
    multi = parse_job(job(type="multi", objects={name: "http://h/x"}))
    assert single.object_name == expected and multi.objects[0].name == expected
    # the stored job reads back to the same names (no second decoding)
    assert load_spec(dump_spec(single)).object_name == expected
    assert load_spec(dump_spec(multi)).objects[0].name == expected


def test_escaped_percent_is_decoded_once() -> None:
    spec = parse_job(job(type="single", link="http://h/x", object_name="100%25%3Fdone"))
    assert spec.object_name == "100%?done"
    assert load_spec(dump_spec(spec)).object_name == "100%?done"


@pytest.mark.parametrize("name", ["..%2Foutside", "a/%2E%2E/b", "bad%zz"])
def test_multi_key_escaping_the_bucket_is_refused(name: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_job(job(type="multi", objects={name: "http://h/x"}))
    assert info.value.field.startswith("objects[")


def test_keys_equal_once_normalized_are_duplicates() -> None:
    with pytest.raises(SpecError, match="duplicate object names: a"):
        parse_job(job(type="multi", objects={"a": "http://h/1", "a?x=1": "http://h/2"}))


def test_link_ending_in_slash_is_named_by_its_last_segment() -> None:
    assert parse_job(job(type="single", link="http://h/data/train/")).object_name == "train"
    listed = parse_job(job(type="multi", objects=["http://h/x/LICENSE?query=values", "http://h/y/dir/"]))
    assert [o.name for o in listed.objects] == ["LICENSE", "dir"]


@pytest.mark.parametrize(
    ("fields", "description"),
    [
        ({"type": "single", "link": "http://h/a/x.tar"}, "http://h/a/x.tar -> ais://abc/x.tar"),
        ({"type": "single", "link": "http://h/x", "object_name": "d/y"}, "http://h/x -> ais://abc/d/y"),
        ({"type": "multi", "objects": ["http://h/a", "http://h/b"]}, "multi-download -> ais://abc"),
        ({"type": "range", "template": "http://h/s-{1..3}"}, "http://h/s-{1..3} -> ais://abc"),
        (
            {"type": "backend", "bucket": {"name": "src", "provider": "aws"}, "prefix": "p/"},
            "remote bucket prefetch -> s3://src",
        ),
        (
            {"type": "backend", "backend_bck": {"name": "src", "provider": "gcp"}},
            "remote bucket prefetch -> ais://abc",
        ),
    ],
)
def test_default_descriptions_as_aistore_writes_them(fields: dict[str, Any], description: str) -> None:
    assert parse_job(job(**fields)).description == description


def test_backend_job_into_another_bucket() -> None:
    spec = parse_job(job(type="backend", backend_bck={"name": "src", "provider": "s3"}, prefix="p/", sync=True))
    assert spec.bucket == BucketRef("abc") and spec.source == BucketRef("src", Provider.AWS)
    assert spec.origin == spec.source
    again = load_spec(dump_spec(spec))
    assert (again.source, again.bucket, again.prefix, again.sync) == (spec.source, spec.bucket, "p/", True)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        (
            {"bucket": {"name": "abc", "provider": "gcp"}, "backend_bck": {"name": "s", "provider": "aws"}},
            "bucket.provider",
        ),
        ({"backend_bck": {"name": "s"}}, "backend_bck.provider"),
        ({"backend_bck": {"name": "s", "provider": "ais"}}, "backend_bck.provider"),
        ({"backend_bck": {"provider": "aws"}}, "backend_bck.name"),
        ({"backend_bck": {"name": "s", "provider": "aws", "x": 1}}, "backend_bck.x"),
        ({"backend_bck": "s3://s"}, "backend_bck"),
    ],
)
def test_bad_backend_bck_is_refused_naming_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_job(job(type="backend", **fields))
    assert info.value.field == field


def test_backend_bck_only_on_backend_jobs() -> None:
    with pytest.raises(SpecError) as info:
        parse_job(job(type="single", link="http://h/x", backend_bck={"name": "s", "provider": "aws"}))
    assert info.value.field == "backend_bck"


# AIStore's TestCompareObject: the original's GCS object, and a local copy
# whose metadata is made right one field at a time
MINIKUBE = "gs://minikube/iso/minikube-v0.23.2.iso.sha256"
GENERATION, MD5 = "1503349750687573", "md5:7b01d3eacc5869db6eb9137f15335d27"


def _stored(**fields: Any) -> CatalogEntry:
    base: dict[str, Any] = {
        "provider": "ais", "namespace": "", "bucket": "b", "name": "o", "size": 10, "mountpath": "/mp",
        "source": "s3://minikube/iso/minikube-v0.23.2.iso.sha256", "etag": None, "version": "none",
        "checksum": "md5:worse", "last_modified": None, "stored_time": 0.0, "job_id": None,
    }  # fmt: skip
    return CatalogEntry(**{**base, **fields})


@pytest.mark.parametrize(
    ("fields", "equal"),
    [
        ({}, False),  # wrong size, source, version and checksum
        ({"size": 65}, False),  # the size alone does not make it the same
        ({"size": 65, "checksum": "crc32c:30a991bd"}, False),  # nor a right CRC with another source
        ({"size": 65, "source": MINIKUBE}, False),  # nor the same source at another version
        ({"size": 65, "source": MINIKUBE, "version": GENERATION, "checksum": MD5}, True),
    ],
    ids=["invalid", "size", "crc", "same-source", "same-version"],
)
def test_compare_object_as_aistore(fields: dict[str, Any], equal: bool) -> None:
    listed = NewObject(name="o", link=MINIKUBE, size=65, version=GENERATION, checksum=MD5)
    assert listing.unchanged(_stored(**fields), listed) is equal
