"""Which webhook URLs strongroom may call: an SSRF defence.

A webhook URL comes from configuration or from an event subscription, so it is input: left
unchecked it lets whoever registers one make strongroom POST to the cloud metadata service or
an internal admin port. The policy is an allowlist: http(s) only, no userinfo, a valid port,
and every address the host resolves to must be public unicast, unless loopback or private
ranges were allowed in configuration. Link-local, metadata, multicast and unspecified
addresses are refused whatever the configuration says.

An IPv6 address is also judged by every IPv4 address it embeds, which is where its packets
really go: IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), IPv4-translated
(``::ffff:0:a.b.c.d``), NAT64 (``64:ff9b::/96`` and the local ``64:ff9b:1::/48``), 6to4
(``2002::/16``) and Teredo (``2001::/32``, server and client).

The URL is parsed with httpx, the client that will send to it, so the policy and the client
cannot read one URL two ways. A name is resolved once per attempt (:meth:`UrlPolicy.resolve`),
every address it resolves to is checked, and the sender connects to one of those checked
addresses while keeping the name for the Host header and TLS (SNI and certificate), so a DNS
answer that changes between the check and the connection (rebinding) cannot reach another host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

from strongroom.services.notify.base import NotificationTargetError

__all__ = [
    "METADATA_ADDRESSES",
    "CheckedTarget",
    "NotificationTargetError",
    "Resolver",
    "UrlPolicy",
    "display_url",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Resolves (host, port) to address texts; the system's resolver unless a policy is given one.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

#: Cloud instance metadata and platform endpoints (AWS, GCP, Azure, Alibaba, AWS IPv6).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16")
)
_LOOPBACK = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128"))
_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "100.64.0.0/10")
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
# IPv6 forms whose last 32 bits are an IPv4 address (RFC 4291, 2765, 6052, 8215).
_LOW_32_EMBEDDING = tuple(
    ipaddress.ip_network(n)
    for n in ("::/96", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48")
)
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
_HOSTNAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})$")
# A last label that is a number (or hex) makes the host numeric to getaddrinfo ("127.1",
# "0x7f000001"): such a host must be a canonical IPv4 literal or it is refused.
_NUMERIC_LAST_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)
MAX_URL = 2048


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses that an IPv6 form carries, which is where packets really go."""
    found: list[ipaddress.IPv4Address] = []
    value = int(ip)
    if value <= 1:  # :: and ::1 are themselves (unspecified, loopback), not IPv4-compatible
        return found
    if any(ip in net for net in _LOW_32_EMBEDDING):
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if ip in _LOCAL_NAT64:  # a /48 prefix carries the address in bits 48-63 and 72-87
        found.append(ipaddress.IPv4Address((value >> 64 & 0xFFFF) << 16 | value >> 40 & 0xFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's resolver (getaddrinfo), as the connection would otherwise use it."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(sockaddr[0]) for _family, _type, _proto, _name, sockaddr in infos]


@dataclass(frozen=True, slots=True)
class CheckedTarget:
    """A URL and the addresses its host resolved to, every one of them checked: connect to
    one of these, never to a fresh resolution of the name."""

    url: httpx.URL
    addresses: tuple[IPAddress, ...]

    @property
    def host(self) -> str:
        return self.url.raw_host.decode("ascii")


def display_url(url: str) -> str:
    """The URL as outcomes and logs show it: no userinfo, no query string, no fragment."""
    import httpx  # noqa: PLC0415 (loaded on first use: start-up cost)

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid url>"
    port = f":{parsed.port}" if parsed.port is not None else ""
    host = parsed.raw_host.decode("ascii", "replace")
    if ":" in host:
        host = f"[{host}]"
    return f"{parsed.scheme}://{host}{port}{parsed.path}"


@dataclass(frozen=True, kw_only=True)
class UrlPolicy:
    """Decides whether strongroom may send to a URL; see the module docstring for the rules."""

    allow_private: bool = False
    allow_loopback: bool = False
    resolve_timeout: float = 5.0
    resolver: Resolver = system_resolver

    def check_static(self, url: str) -> httpx.URL:
        """Every check that needs no DNS: scheme, host, userinfo, port, and literal addresses.
        Raises :class:`NotificationTargetError`."""
        import httpx  # noqa: PLC0415 (loaded on first use: start-up cost)

        if not isinstance(url, str) or not url or len(url) > MAX_URL:
            raise NotificationTargetError(f"a webhook URL is text of at most {MAX_URL} characters")
        if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
            raise NotificationTargetError("a webhook URL may not contain spaces, controls or '\\'")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise NotificationTargetError("the webhook URL cannot be parsed") from exc
        if parsed.scheme not in {"http", "https"}:
            raise NotificationTargetError("a webhook URL must be http:// or https://")
        if parsed.userinfo or "@" in url.split("//", 1)[-1].split("/", 1)[0]:
            raise NotificationTargetError("a webhook URL may not carry a user name or password")
        host = parsed.raw_host.decode("ascii", "replace")
        if not host:
            raise NotificationTargetError("a webhook URL needs a host")
        if parsed.port is not None and not 1 <= parsed.port <= 65535:
            raise NotificationTargetError("the webhook URL's port is not valid")
        literal = self._literal(host)
        if literal is not None:
            self.check_address(literal, host=host)
        return parsed

    async def check(self, url: str) -> str:
        """Check ``url`` and every address its host resolves to now; return the URL as httpx
        will send to it. Raises :class:`NotificationTargetError` (``transient`` when the name
        did not resolve)."""
        return str((await self.resolve(url)).url)

    async def resolve(self, url: str) -> CheckedTarget:
        """Check ``url``, resolve its host once and check every address it resolves to (one
        refused address refuses the URL): what to connect to. Raises
        :class:`NotificationTargetError` (``transient`` when the name did not resolve)."""
        parsed = self.check_static(url)
        host = parsed.raw_host.decode("ascii")
        literal = self._literal(host)
        if literal is not None:
            return CheckedTarget(url=parsed, addresses=(literal,))
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        addresses = await self._resolve(host, port)
        for address in addresses:
            self.check_address(address, host=host)
        return CheckedTarget(url=parsed, addresses=tuple(dict.fromkeys(addresses)))

    def check_address(self, ip: IPAddress, *, host: str = "") -> None:
        """Raise unless strongroom may connect to ``ip`` under this policy."""
        where = str(ip) if not host or host == str(ip) else f"{host} ({ip})"
        reason = self._refusal(ip)
        if reason is None and isinstance(ip, ipaddress.IPv6Address):
            for embedded in _embedded_ipv4(ip):
                reason = self._refusal(embedded)
                if reason is not None:
                    where = f"{where}, which carries {embedded},"
                    break
        if reason is not None:
            raise NotificationTargetError(f"webhook target refused: {where} is {reason}")

    def _refusal(self, ip: IPAddress) -> str | None:
        if ip in METADATA_ADDRESSES:
            return "a cloud metadata address"
        if ip.is_unspecified or ip in _THIS_NETWORK:
            return "an unspecified address"
        if ip.is_multicast:
            return "a multicast address"
        if ip.is_link_local:
            return "a link-local address"
        if any(ip in net for net in _LOOPBACK):
            return None if self.allow_loopback else "a loopback address (not allowed)"
        if any(ip in net for net in _PRIVATE):
            return None if self.allow_private else "a private address (not allowed)"
        if not ip.is_global:
            return "not a public address"
        return None

    @staticmethod
    def _literal(host: str) -> IPAddress | None:
        if ":" in host:
            if "%" in host:
                raise NotificationTargetError("a webhook URL may not name an IPv6 zone")
            try:
                return ipaddress.IPv6Address(host)
            except ValueError as exc:
                raise NotificationTargetError("the webhook URL's IPv6 host is not valid") from exc
        last = host.rstrip(".").rsplit(".", 1)[-1]
        if _NUMERIC_LAST_LABEL.match(last):
            try:
                return ipaddress.IPv4Address(host)
            except ValueError as exc:
                raise NotificationTargetError(
                    "a numeric webhook host must be a plain dotted IPv4 address"
                ) from exc
        if not _HOSTNAME.match(host):
            raise NotificationTargetError("the webhook URL's host name is not valid")
        return None

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            async with asyncio.timeout(self.resolve_timeout):
                answers = await self.resolver(host, port)
        except (OSError, TimeoutError) as exc:
            raise NotificationTargetError(
                f"webhook host {host} does not resolve", transient=True
            ) from exc
        addresses: list[IPAddress] = []
        for text in answers:
            try:
                addresses.append(ipaddress.ip_address(str(text).split("%", 1)[0]))
            except ValueError as exc:
                raise NotificationTargetError(
                    f"webhook host {host} resolved to something that is not an address"
                ) from exc
        if not addresses:
            raise NotificationTargetError(f"webhook host {host} has no address", transient=True)
        return addresses
