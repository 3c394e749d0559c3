"""Outbound address guard: user-supplied URLs (firm webhooks) must not reach the platform's own network.

A host name is resolved and every address it resolves to is checked: loopback, private, link-local,
multicast, reserved, unspecified, shared (100.64/10) and every other non-global address is refused,
including IPv4 hidden in IPv6 (::ffff:127.0.0.1, 6to4, NAT64 well-known prefix) and the numeric
spellings getaddrinfo accepts (0x7f000001, 2130706433, 127.1). The same check runs when a URL is saved
and again when it is connected to; the connection then goes to the checked address (the name is kept
for the Host header and TLS SNI / certificate check), so a DNS answer that changes in between
(DNS rebinding) cannot move the request inside.

An allow-list (HUIQI_WEBHOOK_ALLOW_HOSTS: host names and/or CIDR networks) admits chosen internal
receivers, e.g. an intranet message gateway, or the test suite's local server on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeAddress(ValueError):
    """The URL's host is (or resolves to) an address user-supplied URLs may not reach."""

    def __init__(self, host: str, address: str | None = None) -> None:
        self.host = host
        self.address = address
        where = f"{host}（{address}）" if address and address != host else host
        super().__init__(f"地址 {where} 属于本机、内网或保留地址，不允许使用")


class Unresolvable(ValueError):
    """The URL's host name does not resolve (now)."""

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(f"无法解析主机名 {host}")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IPAddress) -> bool:
    """Tell whether an address is a global unicast address (the only kind user URLs may reach)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and not is_public(inner):
            return False
    return not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (a pinned address) and the name the server expects."""

    url: str  # the URL with the host replaced by the checked address
    host: str  # the original host name, for Host and TLS SNI
    host_header: str
    address: IPAddress


class AddressGuard:
    """Check URLs against the public-only rule plus an allow-list of hosts and networks."""

    def __init__(self, allow: str | Iterable[str] = "") -> None:
        entries = allow.replace("，", ",").split(",") if isinstance(allow, str) else list(allow)
        self.allowed_hosts: set[str] = set()
        self.allowed_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for raw in entries:
            entry = raw.strip().strip("[]").lower()
            if not entry:
                continue
            try:
                self.allowed_networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.allowed_hosts.add(entry.rstrip("."))

    def address_allowed(self, ip: IPAddress) -> bool:
        """Tell whether a resolved address may be connected to."""
        return is_public(ip) or any(ip in net for net in self.allowed_networks if net.version == ip.version)

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Resolve a host and return its addresses; raise UnsafeAddress if any may not be reached."""
        name = host.strip("[]").lower().rstrip(".")
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError) as exc:
            raise Unresolvable(host) from exc
        addresses: list[IPAddress] = []
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise Unresolvable(host)
        if name in self.allowed_hosts:
            return addresses
        for ip in addresses:
            if not self.address_allowed(ip):
                raise UnsafeAddress(host, str(ip))
        return addresses

    def check_url(self, url: str) -> Target:
        """Resolve and check an http(s) URL; return the pinned target to connect to."""
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError("须以 http:// 或 https:// 开头并包含主机名")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = self.resolve(host, port)[0]
        shown = f"[{address}]" if address.version == 6 else str(address)
        netloc = shown if parts.port is None else f"{shown}:{parts.port}"
        if parts.username is not None:
            auth = parts.username + (f":{parts.password}" if parts.password is not None else "")
            netloc = f"{auth}@{netloc}"
        host_header = parts.netloc.rsplit("@", 1)[-1]
        pinned = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        return Target(url=pinned, host=host, host_header=host_header, address=address)
