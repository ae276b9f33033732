"""Any OpenAI-compatible endpoint (``OPENAI_ENDPOINT``), with an optional key from OPENAI_API_KEY.

Never auto-discovered (there is no default port to probe): it exists only when configured. The URL
is the API base as OpenAI clients take it (``https://host/v1``); a bare ``http://host:port`` gets
``/v1`` appended. Verified by ``GET {base}/models`` answering an OpenAI model list. The key is sent
as a bearer token and never logged.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

import aiohttp

from worker.backends.base import Capabilities
from worker.backends.external import Verdict, model_cards, probe_json
from worker.backends.openai_compat import OpenAICompatBackend


def api_base_of(url: str) -> str:
    url = url.rstrip("/")
    return url if urlsplit(url).path not in ("", "/") else f"{url}/v1"


class OpenAIBackend(OpenAICompatBackend):
    kind: ClassVar[str] = "openai"
    display_name: ClassVar[str] = "OpenAI-compatible"
    capabilities: ClassVar[Capabilities] = Capabilities(
        chat=True, embeddings=True, images=True, transcription=True
    )
    default_ports: ClassVar[tuple[int, ...]] = ()

    @property
    def api_base(self) -> str:
        return api_base_of(self.base)

    @classmethod
    async def verify(cls, session: aiohttp.ClientSession, base_url: str) -> Verdict:
        answer = await probe_json(session, f"{api_base_of(base_url)}/models")
        if answer is None:
            return Verdict.nothing(base_url)
        status, body = answer
        if status in (401, 403):
            return Verdict.other(
                f"{base_url} refused the API key (HTTP {status}); set OPENAI_API_KEY to a valid key"
            )
        if status != 200 or model_cards(body) is None:
            return Verdict.other(f"{base_url} does not answer an OpenAI model list at /models")
        return Verdict(True, True)
