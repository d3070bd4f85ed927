"""Which addresses a tenant's webhook may reach: public ones, and the networks the operator
allows (`Settings.webhook_allowed_networks`). Pure functions: the submit check reads a
URL's host, the deliverer (`workers.webhook_post`) checks every address a name resolves to.

"Public" follows IANA's special-purpose registries: an IPv4 address outside every block
they mark not globally reachable (plus multicast and 6to4's relay), an IPv6 address in
global unicast (2000::/3) outside those blocks; IPv6 forms that carry an IPv4 address
(mapped, NAT64, 6to4) are judged by that IPv4 address too.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

NOT_PUBLIC_V4: tuple[IPv4Network, ...] = tuple(
    IPv4Network(n)
    for n in (
        # https://www.iana.org/assignments/iana-ipv4-special-registry (not globally reachable)
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private use (RFC 1918)
        "100.64.0.0/10",  # shared address space (carrier NAT, RFC 6598)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link local (cloud metadata: 169.254.169.254)
        "172.16.0.0/12",  # private use
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated, RFC 7526)
        "192.168.0.0/16",  # private use
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast 255.255.255.255
    )
)
GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")
NOT_PUBLIC_V6: tuple[IPv6Network, ...] = tuple(
    IPv6Network(n)
    for n in (
        # https://www.iana.org/assignments/iana-ipv6-special-registry: not globally reachable
        "2001::/23",  # IETF protocol assignments (Teredo 2001::/32 among them)
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): not globally reachable, and its
        # prefix length is the operator's, so the IPv4 address in it cannot be read off
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
    )
)
NAT64 = (IPv6Network("64:ff9b::/96"),)
"""The well-known NAT64 prefix (RFC 6052): its last 32 bits are the IPv4 host reached."""
SIX_TO_FOUR = IPv6Network("2002::/16")


def is_public(address: Address) -> bool:
    """Globally reachable unicast: what any tenant's endpoint may be."""
    if isinstance(address, IPv4Address):
        return not any(address in n for n in NOT_PUBLIC_V4)
    if any(address in n for n in NOT_PUBLIC_V6):
        return False
    inner = embedded_ipv4(address)
    if address.ipv4_mapped is not None or any(address in n for n in NAT64):
        return inner is not None and is_public(inner)  # the IPv4 host is the one reached
    if address not in GLOBAL_UNICAST_V6:
        return False
    return inner is None or is_public(inner)


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4), or None."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in n for n in NAT64):
        return IPv4Address(int(address) & 0xFFFFFFFF)
    if address in SIX_TO_FOUR:
        return address.sixtofour
    return None


def allowed(address: Address, networks: Sequence[Network]) -> bool:
    """Public, or inside a network the operator allows (an IPv4-mapped IPv6 address counts
    as its IPv4 address, as the kernel connects it)."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return is_public(address) or any(address in n for n in networks)


def literal(host: str) -> Address | None:
    """The address a URL's host names by itself, or None for a name to resolve.

    A host whose last label is a number is an IPv4 address in every notation a resolver or
    a browser reads (decimal `2130706433`, octal `0177.0.0.1`, hex `0x7f.1`, short `127.1`,
    `0`, a trailing dot): ValueError if no address is spelt that way. IPv6 comes bracketed
    in a URL; `urlsplit` gives it without the brackets (a zone `%...` kept).
    """
    if ":" in host:
        try:
            return ip_address(host)
        except ValueError:
            raise ValueError("its host is not a valid IPv6 address") from None
    name = host[:-1] if host.endswith(".") else host
    last = name.rsplit(".", 1)[-1].lower()
    numeric = last.isdigit() or (last.startswith("0x") and _is_hex(last[2:]))
    if not numeric:
        return None
    try:
        return IPv4Address(socket.inet_aton(name))
    except OSError:
        raise ValueError("its host looks like an IPv4 address but is not one") from None


def _is_hex(digits: str) -> bool:
    return all(c in "0123456789abcdef" for c in digits)


LOOPBACK_NAMES = ("localhost", ".localhost")
"""Names that always mean this host (RFC 6761 section 6.3): judged as 127.0.0.1."""


def endpoint_refusal(host: str, networks: Sequence[Network]) -> str | None:
    """Why a webhook to `host` is refused at submit, or None: an address (or a loopback
    name) outside public space that the operator does not allow. Other names are judged
    when delivered, address by address."""
    name = host.lower().rstrip(".")
    try:
        address = literal(host)
    except ValueError as e:
        return str(e)
    if address is None and (name == LOOPBACK_NAMES[0] or name.endswith(LOOPBACK_NAMES[1])):
        address = IPv4Address("127.0.0.1")
    if address is None or allowed(address, networks):
        return None
    return (
        "its host is not a public address; the operator allows others in "
        "BYOA_WEBHOOK_ALLOWED_NETWORKS"
    )


def parse_networks(value: str | Iterable[str]) -> list[Network]:
    """Comma-separated CIDRs (`10.0.0.0/8,127.0.0.0/8`) or a list of them; a bare address
    is a network of one. ValueError naming the one that is not a network."""
    items = value.split(",") if isinstance(value, str) else list(value)
    networks: list[Network] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text[:60]!r} is not a network (CIDR, e.g. 10.0.0.0/8)") from None
    return networks
