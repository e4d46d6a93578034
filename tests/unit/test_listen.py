"""``serve --listen`` addresses refused before anything starts."""

from __future__ import annotations

import pytest

from dlengine.api.listen import parse_listen
from dlengine.errors import SpecError


@pytest.mark.parametrize("text", ["", "host", "host:http", "1.2.3.4:70000", "::1:80", "host:\u00b2", "\u00b2"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(SpecError, match="--listen"):
        parse_listen(text)
