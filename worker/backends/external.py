"""What every external (HTTP) backend kind shares: its session, its verification, its refresh.

A kind identifies itself by API shape, never by port (vLLM and Speaches share 8000, llama-server
answers Ollama's ``/api/tags``, LM Studio answers unknown routes with 200). Each kind implements
:meth:`HttpBackend.verify` as a classmethod so discovery can probe a candidate URL before creating
the backend, and :meth:`HttpBackend.list_models` to fill ``models`` once verified.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp

from worker.backends.base import Backend, BackendStatus, ModelInfo
from worker.backends.http import CONTROL_TIMEOUT, PROBE_TIMEOUT, create_session
from worker.backends.upstream import json_or_none, probe, request
from worker.errors import PendraError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one URL as one kind.

    ``answered`` tells "nothing listens there" (unreachable) from "something else listens there"
    (a look-alike or a broken server), which matters for an explicitly configured endpoint.
    """

    ok: bool
    answered: bool
    reason: str = ""
    version: str | None = None
    # Facts learnt while verifying that the listing can reuse (e.g. llama-server's /props).
    facts: Mapping[str, Any] | None = None

    @classmethod
    def nothing(cls, url: str) -> Verdict:
        return cls(False, False, f"nothing answers at {url}")

    @classmethod
    def other(cls, reason: str) -> Verdict:
        return cls(False, True, reason)


class HttpBackend(Backend):
    """An external backend reached over HTTP at ``endpoint`` (the server root URL)."""

    display_name: ClassVar[str] = ""

    def __init__(
        self,
        endpoint: str,
        *,
        host_map: Mapping[str, str] | None = None,
        api_key: str | None = None,
    ) -> None:
        super().__init__(endpoint.rstrip("/"))
        self._host_map = dict(host_map or {})
        self._api_key = api_key
        self._session: aiohttp.ClientSession | None = None
        self.version: str | None = None
        self.facts: Mapping[str, Any] = {}

    # -- plumbing ---------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        assert self.endpoint is not None
        return self.endpoint

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else None
            self._session = create_session(host_map=self._host_map, headers=headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def get_json(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", CONTROL_TIMEOUT)
        return await request(self.session(), self.kind, "GET", self.url(path), **kwargs)

    async def post_json(self, path: str, body: Any, **kwargs: Any) -> Any:
        return await request(
            self.session(), self.kind, "POST", self.url(path), json_body=body, **kwargs
        )

    # -- identity ---------------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    async def verify(cls, session: aiohttp.ClientSession, base_url: str) -> Verdict:
        """Decide from the API's shape whether ``base_url`` is a server of this kind."""

    @abc.abstractmethod
    async def list_models(self) -> list[ModelInfo]:
        """The models this backend serves now."""

    async def refresh(self) -> None:
        verdict = await self.verify(self.session(), self.base)
        if not verdict.ok:
            self.models = []
            status = BackendStatus.ERROR if verdict.answered else BackendStatus.UNREACHABLE
            self.mark(status, verdict.reason)
            return
        self.version = verdict.version
        self.facts = verdict.facts or {}
        try:
            self.models = await self.list_models()
        except PendraError as exc:
            log.warning("%s at %s: listing models failed: %s", self.kind, self.base, exc.message)
            self.models = []
            self.mark(BackendStatus.ERROR, exc.message)
            return
        self.mark(BackendStatus.READY, None)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["version"] = self.version
        return out


async def probe_json(
    session: aiohttp.ClientSession, url: str, method: str = "GET", json_body: Any = None
) -> tuple[int, Any] | None:
    """(status, parsed JSON or None) of a probe, or None when nothing answers."""
    answer = await probe(session, method, url, timeout=PROBE_TIMEOUT, json_body=json_body)
    if answer is None:
        return None
    status, body, _ctype = answer
    return status, json_or_none(body)


def is_error_body(body: Any) -> bool:
    """LM Studio-style 200 + ``{"error": …}`` or an OpenAI error envelope."""
    return isinstance(body, dict) and ("error" in body or body.get("object") == "error")


def model_cards(body: Any) -> list[dict[str, Any]] | None:
    """The ``data`` list of an OpenAI ``/v1/models`` answer (``null`` tolerated as empty)."""
    if not isinstance(body, dict) or is_error_body(body):
        return None
    data = body.get("data", ())
    if data is None:
        return []
    if not isinstance(data, list):
        return None
    return [card for card in data if isinstance(card, dict) and isinstance(card.get("id"), str)]
