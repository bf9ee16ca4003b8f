"""Where a channel may connect: never loopback, link-local or private targets unless allowed.

A supervisor types a host name into the admin; without this check a worker would connect
wherever it is told (SSRF into the internal network). Names are resolved and every
address vetted when the channel is saved and again at connect time, and the connection
goes to the vetted address, so a DNS answer that changes in between cannot redirect it.
Deployments that fetch mail from an internal server list its networks in
settings.CHANNEL_ALLOW_PRIVATE_HOSTS and its ports in settings.CHANNEL_ALLOW_PRIVATE_PORTS:
a private address is allowed only on a listed port, in DEBUG too, so allowing a mail
server's network does not also open the database, Redis or an admin port next to it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_HOSTNAME = re.compile(
    r"^(?=.{1,253}\.?$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$"
)


class HostNotAllowed(ValueError):
    """The host is malformed, does not resolve, or points where channels may not go."""


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(entry, strict=False) for entry in settings.CHANNEL_ALLOW_PRIVATE_HOSTS]


def address_allowed(address: IPAddress, port: int) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_global and not address.is_multicast:
        return True
    return port in settings.CHANNEL_ALLOW_PRIVATE_PORTS and any(
        address in network for network in _allowed_networks()
    )


def resolve(host: str, port: int) -> list[IPAddress]:
    """The host's addresses, each one allowed, or HostNotAllowed."""
    host = host.strip()
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is None and not _HOSTNAME.match(host):
        raise HostNotAllowed(f"{host!r} is not a valid host name.")
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise HostNotAllowed(f"{host} does not resolve.") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    refused = [str(a) for a in addresses if not address_allowed(a, port)]
    if refused or not addresses:
        raise HostNotAllowed(
            f"{host} points to {', '.join(refused) or 'nothing'} on port {port}: loopback, private, "
            "link-local and reserved addresses are not allowed for channels in this deployment, "
            "except on the networks and ports it lists."
        )
    return addresses


def all_loopback(addresses: Iterable[IPAddress]) -> bool:
    return all(a.is_loopback for a in addresses)


def connect(addresses: list[IPAddress], port: int, timeout: float) -> socket.socket:
    """A TCP connection to the first vetted address that answers."""
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((str(address), port), timeout=timeout)
        except OSError as exc:
            error = exc
    raise error or OSError("no address to connect to")
