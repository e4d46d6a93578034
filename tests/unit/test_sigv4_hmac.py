"""``sigv4._sign``: the HMAC-SHA256 from kept pad states is the standard one."""

from __future__ import annotations

import hashlib
import hmac
import os

from dlengine.sources import sigv4


def test_sign_is_hmac_sha256_for_derived_and_odd_keys() -> None:
    keys = [sigv4.signing_key("sec/ret+", "20261203", "us-east-1", "s3"), b"", b"k", os.urandom(64), os.urandom(100)]
    for key in keys:
        for text in ["", "AWS4-HMAC-SHA256\n20261203T000000Z\nscope\n" + "a" * 64, "ü" * 3000]:
            assert sigv4._sign(key, text) == hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
            assert sigv4._sign(key, text) == sigv4._sign(key, text)  # (the kept states are copied, never consumed)
