"""Where a webhook may be sent: public addresses, and the private networks the deployment
names (`LUXFACT_WEBHOOK_NETWORKS`, e.g. the hospitals' VPN ranges).

A hospital's administrator configures the URL; without this check it could point at the
operator's own network (the database's port, the cloud's metadata address at
169.254.169.254), and the delivery log would say what answered there. The address is
checked when the endpoint is created and again, after a new look-up, before each delivery.
"""

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Set at start (the app's lifespan, the worker): public addresses only until then.
_allowed: tuple[Network, ...] = ()


def networks(spec: str) -> tuple[Network, ...]:
    """`"10.20.0.0/16, 127.0.0.0/8"` -> the networks; ValueError names a bad one."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False)
                 for part in spec.split(",") if part.strip())


def configure(spec: str) -> None:
    global _allowed
    _allowed = networks(spec)


def _allowed_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope id left out
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global or any(ip in network for network in _allowed)


async def refusal(url: str, *, unresolved: bool = False) -> str | None:
    """Why `url` may not receive webhooks, or None. Every address its host resolves to
    must be allowed (a name that resolves to one public and one private address is not).
    `unresolved`: a name that does not resolve (yet) passes; it is checked again before
    each delivery, where it does not."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)
    except (OSError, ValueError, UnicodeError):
        return None if unresolved else f"the host {host[:100]!r} does not resolve"
    for *_, address in found:
        if not _allowed_address(str(address[0])):
            return (f"the host {host[:100]!r} is at {address[0]}, an address that is not "
                    "public (loopback, private, link-local or reserved) and not in the "
                    "deployment's LUXFACT_WEBHOOK_NETWORKS")
    return None
