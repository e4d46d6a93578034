"""How a signed S3 GET's answer refines what the listing said
(``sources.s3.refine_answer``), as ``_info`` reads the SDK's response."""

from __future__ import annotations

from dlengine.sources.base import ObjectInfo
from dlengine.sources.s3 import refine_answer

LISTED = ObjectInfo("k", 10, '"e"', checksums={"md5": "e", "crc32c": "AAAA"})


def test_a_plain_answer_keeps_what_was_listed() -> None:
    assert refine_answer(LISTED, {"etag": '"e"'}) is LISTED
    assert refine_answer(LISTED, {"x-amz-version-id": "null"}) is LISTED


def test_the_answer_names_the_version() -> None:
    got = refine_answer(LISTED, {"x-amz-version-id": "v2"})
    assert (got.version, got.checksums) == ("v2", LISTED.checksums)
    versioned = ObjectInfo("k", 10, '"e"', version="v1")
    assert refine_answer(versioned, {}).version is None  # what the answer says, as the SDK's _info


def test_no_md5_of_an_encrypted_object_and_no_composite_checksum() -> None:
    assert refine_answer(LISTED, {"x-amz-server-side-encryption": "aws:kms"}).checksums == {"crc32c": "AAAA"}
    assert refine_answer(LISTED, {"x-amz-server-side-encryption-customer-algorithm": "AES256"}).checksums == {
        "crc32c": "AAAA"
    }
    assert refine_answer(LISTED, {"x-amz-checksum-type": "COMPOSITE"}).checksums == {"md5": "e"}


def test_only_checksums_s3_answers_with_are_kept() -> None:
    odd = ObjectInfo("k", 10, '"e"', checksums={"md5": "e", "xxh": "1"})
    assert refine_answer(odd, {}).checksums == {"md5": "e"}
    assert odd.checksums == {"md5": "e", "xxh": "1"}  # (the listed info is not changed)
