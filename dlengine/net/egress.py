"""The egress policy: which addresses a download may connect to.

Checked on the address actually connected (a socket about to ``connect``,
libcurl's open-socket hook), never on a parser's idea of the host: a link
such as ``http://169.254.169.254\\@127.0.0.1/`` names 127.0.0.1 to
``urllib.parse`` and 169.254.169.254 to urllib3, and a name can resolve
anywhere (or differently the second time it is asked).

Refused: link-local addresses (``169.254.0.0/16``, ``fe80::/10``), where
cloud metadata services hand out credentials, and the known metadata
addresses outside those ranges, in every spelling an IPv6 address can
carry an IPv4 one: IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible
(``::a.b.c.d``), IPv4-translated (``::ffff:0:a.b.c.d``), NAT64
(``64:ff9b::/96``, the local-use ``64:ff9b:1::/48``), 6to4 (``2002::/16``)
and Teredo (``2001::/32``). Loopback and private ranges stay allowed:
on-premises mirrors live there.
"""

from __future__ import annotations

import ipaddress

from dlengine import errors

__all__ = ["check_address", "denied_reason", "embedded_ipv4"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services that are not link-local: Alibaba Cloud's, AWS's IPv6 one.
_METADATA = frozenset(
    {
        ipaddress.ip_address("100.100.100.200"),
        ipaddress.ip_address("fd00:ec2::254"),
    }
)
_LINK_LOCAL_V4 = ipaddress.ip_network("169.254.0.0/16")
_LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")
_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 IPv4-translated
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use prefix
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")


def check_address(ip: str) -> None:
    """Raise ``SourceDeniedError`` (code ``policy``) if ``ip`` may not be
    connected to. ``ip`` is a numeric address as a socket sees it
    (``"169.254.169.254"``, ``"fe80::1%eth0"``, ``"[::1]"``); anything that
    is not an address is refused too, as nothing should connect to it."""
    reason = denied_reason(ip)
    if reason is not None:
        raise errors.SourceDeniedError(f"refusing to connect to {ip}: {reason}", code=errors.ErrorCode.POLICY)


def denied_reason(ip: str) -> str | None:
    """Why ``ip`` is refused, or None when it is allowed."""
    try:
        address = ipaddress.ip_address(ip.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return "not a numeric IP address"
    for candidate in (address, *embedded_ipv4(address)):
        reason = _own_reason(candidate)
        if reason is not None:
            return reason if candidate is address else f"{reason} (carried in {address})"
    return None


def _own_reason(address: IPAddress) -> str | None:
    if address in _METADATA:
        return "a cloud metadata service address"
    if address in _LINK_LOCAL_V4 or address in _LINK_LOCAL_V6:
        return "a link-local address (where cloud metadata services live)"
    return None


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address that ``address`` may lead to when connected: the
    ones its IPv6 transition forms embed (none for an IPv4 address)."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    value = int(address)
    found: list[int] = []
    if address.ipv4_mapped is not None:
        found.append(int(address.ipv4_mapped))
    if address in _COMPATIBLE or address in _TRANSLATED or address in _NAT64:
        found.append(value & 0xFFFFFFFF)
    if address in _NAT64_LOCAL:
        found.append(value & 0xFFFFFFFF)  # a /96 inside the local-use /48
        found.append(_nat64_48(value))
    if address in _SIX_TO_FOUR:
        found.append((value >> 80) & 0xFFFFFFFF)
    if address in _TEREDO:
        found.append((value >> 64) & 0xFFFFFFFF)  # the Teredo server
        found.append(~value & 0xFFFFFFFF)  # the client, stored inverted
    return [ipaddress.IPv4Address(v) for v in dict.fromkeys(found)]


def _nat64_48(value: int) -> int:
    """The IPv4 address a /48 NAT64 prefix embeds (RFC 6052 2.2): bits
    48-63 hold its first half and, after the reserved octet 64-71, bits
    72-87 its second."""
    high = (value >> 64) & 0xFFFF
    low = (value >> 40) & 0xFFFF
    return (high << 16) | low
