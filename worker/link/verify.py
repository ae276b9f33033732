"""Checking a worker key live, before it is stored (the TUI's key screen uses this).

Two HTTP calls to ``{api_url}/api/v1/worker/verify`` (docs/protocol.md): the first returns a
nonce for the key's public half, the second carries the signed transcript. Same proof as the link
handshake, so the key never crosses the wire here either.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal

import aiohttp

from worker.keys import KeyProblem, WorkerKey, parse_key
from worker.link.errors import UpgradeRequired
from worker.link.handshake import choose_version
from worker.link.tls import client_ssl_context
from worker.protocol import SUPPORTED_VERSIONS, VERIFY_PATH, audience, auth_transcript
from worker.settings import Settings

log = logging.getLogger(__name__)

VerifyStatus = Literal["valid", "rejected", "invalid_format", "unreachable", "upgrade_required"]


@dataclass(frozen=True)
class VerifyResult:
    status: VerifyStatus
    message: str
    worker_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "valid"


def _error_message(data: object, fallback: str) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message") or fallback)
    return fallback


async def verify_key(
    settings: Settings, key: str | WorkerKey, *, timeout_s: float = 15.0
) -> VerifyResult:
    """Ask the control plane whether it accepts ``key``; never raises for expected failures."""
    try:
        worker_key = key if isinstance(key, WorkerKey) else parse_key(key)
    except KeyProblem as exc:
        return VerifyResult("invalid_format", str(exc))
    url = settings.api_url.rstrip("/") + VERIFY_PATH
    ssl = client_ssl_context(settings.ca_file) if url.startswith("https://") else True
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.post(url, json={"public_key": worker_key.public_key}, ssl=ssl) as r:
                data = await r.json(content_type=None)
                if r.status != 200:
                    return VerifyResult(
                        "rejected" if r.status in (401, 403) else "unreachable",
                        _error_message(data, f"the control plane answered HTTP {r.status}"),
                    )
            version = choose_version(data.get("versions", []), SUPPORTED_VERSIONS)
            transcript = auth_transcript(
                protocol=version,
                nonce=str(data["nonce"]),
                server_id=str(data["server_id"]),
                public_key=worker_key.public_key,
                audience=audience(url),
            )
            proof = {
                "public_key": worker_key.public_key,
                "nonce": data["nonce"],
                "protocol": version,
                "signature": worker_key.sign(transcript),
            }
            async with http.post(url, json=proof, ssl=ssl) as r:
                answer = await r.json(content_type=None)
                if r.status == 200 and isinstance(answer, dict) and answer.get("ok"):
                    return VerifyResult(
                        "valid", "the control plane accepts this key", answer.get("worker_id")
                    )
                return VerifyResult(
                    "rejected", _error_message(answer, "the control plane rejected this key")
                )
    except UpgradeRequired as exc:
        return VerifyResult("upgrade_required", str(exc))
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError, KeyError) as exc:
        log.info("key verification could not reach %s: %s", url, type(exc).__name__)
        return VerifyResult(
            "unreachable", f"cannot reach the control plane at {settings.api_url}: {exc}"
        )
