"""``serve --listen`` addresses refused before anything starts."""

from __future__ import annotations

import pytest

from dlengine.api.listen import ListenAddress, parse_listen
from dlengine.errors import SpecError


@pytest.mark.parametrize("text", ["", "host", "host:http", "1.2.3.4:70000", "::1:80", "host:\u00b2", "\u00b2"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(SpecError, match="--listen"):
        parse_listen(text)


@pytest.mark.parametrize(
    ("text", "address", "loopback"),
    [
        ("127.0.0.1:8080", ListenAddress("127.0.0.1", 8080), True),
        ("8080", ListenAddress("127.0.0.1", 8080), True),
        ("localhost:0", ListenAddress("localhost", 0), True),
        ("[::1]:9000", ListenAddress("::1", 9000), True),
        (":8080", ListenAddress("0.0.0.0", 8080), False),
        ("0.0.0.0:8080", ListenAddress("0.0.0.0", 8080), False),
        ("10.1.2.3:8080", ListenAddress("10.1.2.3", 8080), False),
        ("[::]:8080", ListenAddress("::", 8080), False),
    ],
)
def test_listen_addresses(text: str, address: ListenAddress, loopback: bool) -> None:
    assert parse_listen(text) == address
    assert address.is_loopback() is loopback
