"""The outbound allow-list: which hosts webhooks (IM channels, event subscribers) may reach."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class AllowList:
    """Hosts webhooks may reach: exact names, `*.suffix` wildcards, IP addresses and CIDR networks.

    A name or address is allowed when an entry matches it. Private, loopback, link-local and
    other non-public addresses are refused even for an allowed name unless an address or
    network entry covers them explicitly.
    """

    names: frozenset[str]
    suffixes: tuple[str, ...]
    networks: tuple[IpNetwork, ...]

    @classmethod
    def parse(cls, entries: tuple[str, ...]) -> AllowList:
        """Build from the file's entries; ValueError names the first bad one."""
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IpNetwork] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                raise ValueError("empty entry")
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*.") and _is_hostname(entry[2:]):
                suffixes.append(entry[1:])
            elif _is_hostname(entry):
                names.add(entry)
            else:
                raise ValueError(f"{raw!r} is not a host name, *.domain wildcard, IP address or CIDR network")
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def allows_host(self, host: str) -> bool:
        """The URL's host (a name or an IP literal) is on the list."""
        host = host.lower().rstrip(".")
        address = _ip(host)
        if address is not None:
            return self.allows_address(address)
        return host in self.names or any(host.endswith(s) for s in self.suffixes)

    def allows_address(self, address: IpAddress) -> bool:
        """The address is covered by an explicit address or network entry."""
        return any(address in network for network in self.networks)


def _is_hostname(text: str) -> bool:
    labels = text.split(".")
    return all(re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", label) for label in labels)


def _ip(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def is_public(address: IpAddress) -> bool:
    """Globally routable unicast: not private, loopback, link-local, multicast, reserved or unspecified."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback, whatever the IPv6 flags say
    return address.is_global and not address.is_multicast
