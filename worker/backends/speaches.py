"""Speaches (formerly faster-whisper-server; default port 8000, shared with vLLM).

Verified by ``GET /health`` in either shape (``OK`` text up to v0.9.0-rc.1, ``{"message": "OK"}``
since) and a ``/v1/models`` list whose cards carry ``task`` (reference/backends.md §3). vLLM's
``/health`` is an empty body; LM Studio's is 200 + ``error``. Serves transcription (multipart
pass-through). Installs are ``POST /v1/models/{id}``, which blocks until the download is done and
answers 200 when it downloaded, 201 when the model was already there; no progress is streamed.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp

from worker.backends.base import (
    Capabilities,
    InstallProgress,
    ModelInfo,
    ProgressCallback,
    Task,
    TranscriptionRequest,
)
from worker.backends.external import Verdict, model_cards, probe_json
from worker.backends.openai_compat import OpenAICompatBackend, post_transcription
from worker.backends.progress import report
from worker.backends.upstream import read_error, unavailable
from worker.errors import InstallError

# The install call blocks for the whole download without sending a byte.
INSTALL_CALL_TIMEOUT = aiohttp.ClientTimeout(total=6 * 3600, connect=10, sock_connect=10)


def is_speaches_health(status: int, body: bytes) -> bool:
    text = body.strip()
    return status == 200 and (text == b"OK" or text.replace(b" ", b"") == b'{"message":"OK"}')


class SpeachesBackend(OpenAICompatBackend):
    kind: ClassVar[str] = "speaches"
    display_name: ClassVar[str] = "Speaches"
    capabilities: ClassVar[Capabilities] = Capabilities(
        transcription=True, install=True, uninstall=True
    )
    default_ports: ClassVar[tuple[int, ...]] = (8000,)

    @classmethod
    async def verify(cls, session: aiohttp.ClientSession, base_url: str) -> Verdict:
        from worker.backends.http import PROBE_TIMEOUT
        from worker.backends.upstream import probe

        health = await probe(session, "GET", f"{base_url}/health", timeout=PROBE_TIMEOUT)
        if health is None:
            return Verdict.nothing(base_url)
        if not is_speaches_health(health[0], health[1]):
            return Verdict.other(f"{base_url} is not Speaches (its /health is not OK)")
        answer = await probe_json(session, f"{base_url}/v1/models")
        cards = model_cards(answer[1]) if answer and answer[0] == 200 else None
        if cards is None or any("task" not in card for card in cards):
            return Verdict.other(f"{base_url} is not Speaches (its /v1/models has no task field)")
        return Verdict(True, True)

    def model_from_card(self, card: dict[str, Any]) -> ModelInfo:
        task_name = card.get("task")
        return ModelInfo(
            id=card["id"],
            task=Task.TRANSCRIPTION if task_name == "automatic-speech-recognition" else None,
            details={"speaches_task": task_name, "language": card.get("language")},
        )

    async def transcription(self, request_: TranscriptionRequest) -> dict[str, Any] | str:
        return await post_transcription(self, f"{self.api_base}/audio/transcriptions", request_)

    async def install(self, model_ref: str, progress: ProgressCallback) -> None:
        started = InstallProgress("downloading", detail="Speaches reports no byte progress")
        await report(progress, started)
        url = self.url(f"/v1/models/{quote(model_ref, safe='/')}")
        try:
            async with self.session().post(url, timeout=INSTALL_CALL_TIMEOUT) as response:
                if response.status >= 400:
                    failed = await read_error(self.kind, response)
                    raise InstallError(f"Speaches could not install {model_ref}: {failed.message}")
                text = (await response.text(errors="replace")).strip()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise InstallError(unavailable(self.kind, self.base, exc).message) from None
        detail = text or ("already installed" if response.status == 201 else "downloaded")
        await report(progress, InstallProgress("done", detail=detail))
        await self.refresh()

    async def uninstall(self, model_ref: str) -> None:
        url = self.url(f"/v1/models/{quote(model_ref, safe='/')}")
        try:
            async with self.session().delete(url) as response:
                if response.status >= 400:
                    failed = await read_error(self.kind, response)
                    raise InstallError(f"Speaches could not remove {model_ref}: {failed.message}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise InstallError(unavailable(self.kind, self.base, exc).message) from None
        await self.refresh()
