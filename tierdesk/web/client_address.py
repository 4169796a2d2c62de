"""Who the client is, when the server stands behind a load balancer.

Behind a proxy every request comes from the proxy's address, so per-address
limits would put all clients in one bucket. X-Forwarded-For names the
client, but anyone can send that header: it is believed only from the
addresses listed in TIERDESK_TRUSTED_PROXIES, and read from the right (what
the nearest proxy appended) leftwards past every trusted hop.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

from tierdesk.errors import InvalidInput

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(setting: str) -> tuple[Network, ...]:
    """Parse a comma-separated list of addresses and CIDR networks."""
    nets = []
    for part in setting.split(","):
        if part.strip():
            try:
                nets.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise InvalidInput(f"TIERDESK_TRUSTED_PROXIES: {part.strip()!r} is not an address or network") \
                    from None
    return tuple(nets)


class ClientAddress:
    def __init__(self, trusted: Iterable[Network]) -> None:
        self._trusted = tuple(trusted)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def of(self, request: web.Request) -> str:
        remote = request.remote or ""
        if not self._trusted or not self._is_trusted(remote):
            return remote
        hops = [h.strip() for value in request.headers.getall("X-Forwarded-For", ())
                for h in value.split(",") if h.strip()]
        client = remote
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break  # not an address: nothing left of it can be believed
            client = hop
            if not self._is_trusted(hop):
                break
        return client
