"""The HTTP client every external backend uses: one aiohttp session per backend.

Why a factory: timeouts, connection limits and name resolution are the same for all kinds,
and the resolver is injectable. Discovery probes ``host.docker.internal``; tests (and unusual
setups) map that name to an address with ``host_map`` instead of editing ``/etc/hosts``. The URL
keeps the name the user sees, only the connection goes to the mapped address.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

# Probes must fail fast: discovery checks 9 kinds x 2 hosts concurrently on every tick.
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=2.5, connect=1.5, sock_connect=1.5)
# Listing and other control calls: short, but a busy backend may take a few seconds.
CONTROL_TIMEOUT = aiohttp.ClientTimeout(total=20, connect=5, sock_connect=5)
# Inference: no total limit (generations are long); a backend silent for 10 minutes is dead.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10, sock_read=600)
# Installs stream progress for a long time; only silence counts.
INSTALL_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10, sock_read=900)


class MappedResolver(AbstractResolver):
    """Resolves names listed in ``host_map`` to the given address; everything else as usual."""

    def __init__(self, host_map: Mapping[str, str]) -> None:
        self._map = {k.lower(): v for k, v in host_map.items()}
        self._fallback = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        target = self._map.get(host.lower())
        if target is None:
            return await self._fallback.resolve(host, port, family)
        fam = socket.AF_INET6 if ":" in target else socket.AF_INET
        return [
            {
                "hostname": host,
                "host": target,
                "port": port,
                "family": fam,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        await self._fallback.close()


def create_session(
    *,
    host_map: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    limit: int = 64,
    timeout: aiohttp.ClientTimeout = REQUEST_TIMEOUT,
) -> aiohttp.ClientSession:
    """A session for one backend. Must be called inside the running event loop."""
    connector_args: dict[str, Any] = {"limit": limit, "ttl_dns_cache": 30}
    if host_map:
        connector_args["resolver"] = MappedResolver(host_map)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(**connector_args),
        headers=dict(headers or {}),
        timeout=timeout,
        trust_env=False,
    )
