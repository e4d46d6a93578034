"""The egress policy on addresses (dlengine.net.egress): link-local and the
metadata services refused in every spelling an address can take; loopback
and private ranges allowed (on-premises mirrors live there). Sockets that
connect: tests/integration/test_egress.py."""

from __future__ import annotations

import pytest

from dlengine import errors
from dlengine.net import egress

REFUSED = [
    "169.254.169.254",  # AWS, GCP, Azure, OCI metadata
    "169.254.0.1",
    "169.254.255.255",
    "100.100.100.200",  # Alibaba Cloud metadata
    "fe80::1",
    "fe80::a9fe:a9fe%eth0",  # with a zone
    "[fe80::1]",
    "febf:ffff::1",  # the top of fe80::/10
    "fd00:ec2::254",  # AWS metadata over IPv6
    "::ffff:169.254.169.254",  # IPv4-mapped
    "::ffff:a9fe:a9fe",
    "::169.254.169.254",  # IPv4-compatible (deprecated)
    "::ffff:0:169.254.169.254",  # IPv4-translated (RFC 2765)
    "64:ff9b::169.254.169.254",  # NAT64 well-known prefix
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::a9fe:a9fe",  # NAT64 local-use prefix, /96 inside it
    "64:ff9b:1:a9fe:00:a9fe::",  # NAT64 local-use /48 layout (RFC 6052 2.2)
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2002:a9fe:0001:1234::5",
    "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo client 169.254.169.254 (stored inverted)
    "2001:0:a9fe:a9fe::1",  # Teredo server 169.254.169.254
    "2002:6464:64c8::1",  # 6to4 of 100.100.100.200
    "not-an-address",
]


ALLOWED = [
    "127.0.0.1",
    "127.1.2.3",
    "10.0.0.1",
    "192.168.1.1",
    "172.16.0.1",
    "100.64.0.1",
    "8.8.8.8",
    "::1",
    "2001:db8::1",
    "2606:4700::1111",
    "::ffff:127.0.0.1",
    "64:ff9b::8.8.8.8",
    "2002:0808:0808::1",
    "fd00::1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_refused(address: str) -> None:
    with pytest.raises(errors.SourceDeniedError) as caught:
        egress.check_address(address)
    assert caught.value.code is errors.ErrorCode.POLICY
    assert address in str(caught.value)


@pytest.mark.parametrize("address", ALLOWED)
def test_allowed(address: str) -> None:
    egress.check_address(address)
    assert egress.denied_reason(address) is None


def test_reason_names_the_embedded_address() -> None:
    reason = egress.denied_reason("64:ff9b::a9fe:a9fe")
    assert reason is not None and "link-local" in reason and "64:ff9b::a9fe:a9fe" in reason
