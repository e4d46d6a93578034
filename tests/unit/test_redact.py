"""Secrets of signed links and credentials in messages (dlengine.redact):
hidden wherever errors and links are stored or shown."""

from __future__ import annotations

import logging

import pytest

from dlengine.logredact import RedactingFormatter, install_log_redaction
from dlengine.redact import redact

CASES = [
    (
        "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20240101"
        "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE"
        "&X-Amz-SignedHeaders=host&X-Amz-Signature=0123456789abcdef",
        ["AKIAEXAMPLE", "FwoGZXIvYXdzEXAMPLE", "0123456789abcdef"],
        ["X-Amz-Expires=3600", "X-Amz-Algorithm=AWS4-HMAC-SHA256"],
    ),
    (
        "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=sa%40p.iam"
        "&X-Goog-Signature=deadbeefcafe",
        ["sa%40p.iam", "deadbeefcafe"],
        ["X-Goog-Algorithm=GOOG4-RSA-SHA256"],
    ),
    (
        "https://acct.blob.core.windows.net/c/b.bin?sv=2022-11-02&se=2030-01-01&sp=r&sr=b&sig=abc%2Bdef%3D",
        ["abc%2Bdef%3D"],
        ["se=2030-01-01", "sp=r", "sv=2022-11-02"],
    ),
    ("https://d1.cloudfront.net/x?Expires=1&Signature=SIGSIG&Key-Pair-Id=K1", ["SIGSIG"], ["Expires=1"]),
    ("http://h/x?token=TOK1&name=v", ["TOK1"], ["name=v"]),
    ("http://h/x?access_token=TOK2#frag", ["TOK2"], ["#frag"]),
    ("https://www.googleapis.com/x?key=AIzaKEY&alt=media", ["AIzaKEY"], ["alt=media"]),
    ("http://alice:s3cret@mirror.local/x.tar failed", ["alice", "s3cret"], ["mirror.local/x.tar failed"]),
    ("https://ghp_TOKEN@github.com/o/r", ["ghp_TOKEN"], ["github.com/o/r"]),
    ("request had Authorization: Bearer eyJhbGciOi.payload.sig", ["eyJhbGciOi"], ["Authorization"]),
    ("Cookie: session=abcdef", ["abcdef"], ["Cookie"]),
    ("Bearer hf_abcdefghijkl", ["hf_abcdefghijkl"], ["Bearer"]),
]


@pytest.mark.parametrize(("text", "secrets", "kept"), CASES)
def test_secrets_are_hidden(text: str, secrets: list[str], kept: list[str]) -> None:
    out = redact(text)
    for secret in secrets:
        assert secret not in out, out
    for part in kept:
        assert part in out, out
    assert "***" in out
    assert redact(out) == out  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "",
        "http://127.0.0.1:8080/f/a.bin: HTTP 404 not found",
        "size mismatch: expected 10 bytes, got 9",
        "http://h/x?name=a&part=2",
        "see http://h/p@x for details",
        "a = b",
    ],
)
def test_plain_text_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_log_lines_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("dlengine.test-redact")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        install_log_redaction(logger)
        assert isinstance(handler.formatter, RedactingFormatter)
        logger.warning("fetching %s", "http://h/x?sig=SECRETSIG&a=1")
        try:
            raise ValueError("http://u:pw@h/x")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "WARNING fetching http://h/x?sig=***&a=1" in err
    assert "SECRETSIG" not in err and "u:pw" not in err


def test_a_default_description_carries_no_signature() -> None:
    from dlengine.spec import parse_job

    spec = parse_job(
        {"type": "range", "bucket": {"name": "b"}, "template": "http://127.0.0.1/s-{1..3}.tar?sig=SIGVALUE&se=2030"}
    )
    assert "SIGVALUE" not in spec.description and "sig=***&se=2030" in spec.description
