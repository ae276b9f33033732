"""Ollama (default port 11434).

* Verified by ``GET /api/version`` (an object with a string ``version`` and no ``error`` — LM
  Studio answers this path with 200 + ``error``) and ``GET /api/tags`` whose entries have an integer
  ``size`` and a non-empty ``digest`` (llama-server answers ``/api/tags`` too, with ``""`` there).
* Models: ``/api/tags``, each enriched with ``POST /api/show`` (at most 5 at once; cached by digest
  so a refresh tick only asks about new or changed models).
* Chat goes through the native ``/api/chat`` (see :mod:`worker.backends.ollama_native`) so that
  ``options.num_ctx`` = the model's context length is honoured; a client's own ``options.num_ctx``
  wins. Embeddings and images go to the OpenAI-compatible endpoints unchanged.
* Install = ``POST /api/pull`` (NDJSON progress; an error can arrive as the last line of a 200);
  uninstall = ``DELETE /api/delete``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import aiohttp

from worker.backends.base import (
    Capabilities,
    InstallProgress,
    ModelInfo,
    ProgressCallback,
    StreamChunk,
    Task,
    Usage,
)
from worker.backends.external import Verdict, is_error_body, probe_json
from worker.backends.http import CONTROL_TIMEOUT, INSTALL_TIMEOUT, REQUEST_TIMEOUT
from worker.backends.lines import LineSplitter, LineTooLong
from worker.backends.ollama_native import StreamTranslator, from_native_response, to_native_request
from worker.backends.openai_compat import OpenAICompatBackend
from worker.backends.openai_fields import (
    FieldPolicy,
    not_hosted,
    only_one_choice,
    refuse,
    refuse_false,
    refuse_true,
    tool_choice_auto_or_none,
)
from worker.backends.progress import report
from worker.backends.upstream import read_error, request, unavailable
from worker.backends.upstream_errors import message_from_body
from worker.errors import (
    BackendFailed,
    BackendUnavailable,
    InstallError,
    NotSupported,
    PendraError,
)

SHOW_CONCURRENCY = 5


def is_ollama_tags(body: Any) -> bool:
    """An Ollama ``/api/tags`` answer (and not llama-server's look-alike)."""
    if not isinstance(body, dict) or is_error_body(body):
        return False
    if not isinstance(body.get("models"), list):
        return False
    for entry in body["models"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            return False
        if not isinstance(entry.get("size"), int) or isinstance(entry.get("size"), bool):
            return False
        if not isinstance(entry.get("digest"), str) or not entry["digest"]:
            return False
    return True


def context_length_of(show: dict[str, Any]) -> int | None:
    """``model_info["<architecture>.context_length"]`` of an ``/api/show`` answer."""
    info = show.get("model_info")
    if not isinstance(info, dict):
        return None
    arch = info.get("general.architecture")
    value = info.get(f"{arch}.context_length") if isinstance(arch, str) else None
    if not isinstance(value, int):
        value = next(
            (v for k, v in info.items() if k.endswith(".context_length") and isinstance(v, int)),
            None,
        )
    return value


def task_of(capabilities: list[str]) -> Task:
    if "embedding" in capabilities:
        return Task.EMBEDDING
    if "image" in capabilities and "completion" not in capabilities:
        return Task.IMAGE
    return Task.CHAT


def model_from(tag: dict[str, Any], show: dict[str, Any] | None) -> ModelInfo:
    """A ModelInfo from a ``/api/tags`` entry and (when it answered) its ``/api/show``."""
    details = dict(tag.get("details") or {})
    if show and isinstance(show.get("details"), dict):
        details.update({k: v for k, v in show["details"].items() if v not in (None, "")})
    capabilities = (show or {}).get("capabilities") or tag.get("capabilities") or []
    capabilities = [c for c in capabilities if isinstance(c, str)]
    ctx = context_length_of(show) if show else None
    if ctx is None and isinstance(details.get("context_length"), int):
        ctx = details["context_length"]
    size = tag.get("size")
    return ModelInfo(
        id=tag["name"],
        task=task_of(capabilities),
        context_length=ctx,
        size_bytes=size if isinstance(size, int) else None,
        details={
            "parameter_size": details.get("parameter_size") or None,
            "quantization": details.get("quantization_level") or None,
            "format": details.get("format") or None,
            "family": details.get("family") or None,
            "capabilities": capabilities,
            "digest": tag.get("digest"),
        },
    )


class PullTracker:
    """Folds ``/api/pull`` NDJSON lines into InstallProgress events (pure; tested on its own)."""

    def __init__(self) -> None:
        self.layers: dict[str, tuple[int, int]] = {}
        self.succeeded = False

    def feed(self, line: dict[str, Any]) -> InstallProgress | None:
        if "error" in line:
            raise InstallError(f"Ollama could not pull the model: {message_from_body(line)}")
        status = str(line.get("status", ""))
        digest = line.get("digest")
        if isinstance(digest, str) and isinstance(line.get("total"), int):
            done = line.get("completed") if isinstance(line.get("completed"), int) else 0
            self.layers[digest] = (done, line["total"])
            return InstallProgress(
                "downloading",
                sum(d for d, _ in self.layers.values()),
                sum(t for _, t in self.layers.values()),
                status,
            )
        done = sum(d for d, _ in self.layers.values())
        total = sum(t for _, t in self.layers.values()) or None
        if status == "success":
            self.succeeded = True
            return InstallProgress("done", done, total, status)
        if status.startswith("verifying"):
            return InstallProgress("verifying", done, total, status)
        if status.startswith(("writing", "removing")):
            return InstallProgress("finishing", done, total, status)
        if status:
            return InstallProgress("starting", done, total, status)
        return None


class OllamaBackend(OpenAICompatBackend):
    kind: ClassVar[str] = "ollama"
    display_name: ClassVar[str] = "Ollama"
    capabilities: ClassVar[Capabilities] = Capabilities(
        chat=True, embeddings=True, images=True, install=True, uninstall=True
    )
    default_ports: ClassVar[tuple[int, ...]] = (11434,)
    # What /api/chat can do: one choice, no logit bias, no log probabilities through the worker,
    # no forced tool calls; Ollama's own fields (options, keep_alive, think) pass through.
    chat_fields: ClassVar[FieldPolicy] = FieldPolicy(
        checks=not_hosted(
            {
                "n": only_one_choice,
                "logit_bias": refuse("does not apply logit_bias"),
                "logprobs": refuse_true("returns no log probabilities through the worker"),
                "top_logprobs": refuse("returns no log probabilities through the worker"),
                "tool_choice": tool_choice_auto_or_none,
                "parallel_tool_calls": refuse_false("cannot limit the model to one tool call"),
            }
        ),
        renamed={"repetition_penalty": "repeat_penalty"},
        extensions=frozenset(
            {"top_k", "min_p", "repeat_penalty", "options", "keep_alive", "think", "format"}
        ),
    )
    # Ollama's OpenAI-compatible /v1/completions.
    completion_fields: ClassVar[FieldPolicy] = FieldPolicy(
        checks={
            "n": only_one_choice,
            "best_of": only_one_choice,
            "logprobs": refuse("returns no log probabilities through the worker"),
            "logit_bias": refuse("does not apply logit_bias"),
            "echo": refuse_true("does not echo the prompt"),
        },
    )

    def __init__(self, endpoint: str, **kwargs: Any) -> None:
        super().__init__(endpoint, **kwargs)
        self._shown: dict[tuple[str, str], dict[str, Any]] = {}

    @classmethod
    async def verify(cls, session: aiohttp.ClientSession, base_url: str) -> Verdict:
        answer = await probe_json(session, f"{base_url}/api/version")
        if answer is None:
            return Verdict.nothing(base_url)
        status, body = answer
        if (
            status != 200
            or not isinstance(body, dict)
            or is_error_body(body)
            or not isinstance(body.get("version"), str)
        ):
            return Verdict.other(f"{base_url} is not Ollama (no /api/version)")
        tags = await probe_json(session, f"{base_url}/api/tags")
        if tags is None:
            return Verdict.nothing(base_url)
        if tags[0] != 200 or not is_ollama_tags(tags[1]):
            return Verdict.other(f"{base_url} is not Ollama (its /api/tags is not Ollama's)")
        return Verdict(True, True, version=body["version"])

    # -- models -----------------------------------------------------------------------------------
    def _canonical(self, model: str) -> str | None:
        ids = {m.id for m in self.models}
        if model in ids:
            return model
        if ":" not in model and f"{model}:latest" in ids:
            return f"{model}:latest"
        return None

    def serves(self, model: str) -> bool:
        from worker.backends.base import BackendStatus

        return self.status is BackendStatus.READY and self._canonical(model) is not None

    def context_of(self, model: str) -> int | None:
        canonical = self._canonical(model)
        return next((m.context_length for m in self.models if m.id == canonical), None)

    async def list_models(self) -> list[ModelInfo]:
        tags = await self.get_json("/api/tags")
        if not is_ollama_tags(tags):
            raise BackendFailed("ollama answered /api/tags with an unexpected shape")
        entries = tags["models"]
        gate = asyncio.Semaphore(SHOW_CONCURRENCY)

        async def show(entry: dict[str, Any]) -> dict[str, Any] | None:
            key = (entry["name"], entry["digest"])
            if key in self._shown:
                return self._shown[key]
            async with gate:
                try:
                    result = await request(
                        self.session(),
                        self.kind,
                        "POST",
                        self.url("/api/show"),
                        json_body={"model": entry["name"]},
                        timeout=CONTROL_TIMEOUT,
                    )
                except PendraError:
                    return None  # listed without enrichment; asked again next refresh
            if isinstance(result, dict):
                self._shown[key] = result
                return result
            return None

        shows = await asyncio.gather(*(show(e) for e in entries))
        live = {(e["name"], e["digest"]) for e in entries}
        self._shown = {k: v for k, v in self._shown.items() if k in live}
        return [model_from(entry, shown) for entry, shown in zip(entries, shows, strict=True)]

    # -- chat through /api/chat -------------------------------------------------------------------
    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        model = str(body.get("model", ""))
        body = self.chat_fields.apply(body, "chat", self.kind)
        native = to_native_request(body, self.context_of(model), stream=False)
        result = await request(
            self.session(),
            self.kind,
            "POST",
            self.url("/api/chat"),
            json_body=native,
            timeout=REQUEST_TIMEOUT,
        )
        if not isinstance(result, dict):
            raise BackendFailed("ollama answered /api/chat with an empty body")
        return from_native_response(result, model)

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        model = str(body.get("model", ""))
        body = self.chat_fields.apply(body, "chat", self.kind)
        native = to_native_request(body, self.context_of(model), stream=True)
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return self._relay_native(native, StreamTranslator(model, include_usage))

    async def _relay_native(
        self, native: dict[str, Any], translator: StreamTranslator
    ) -> AsyncIterator[StreamChunk]:
        response: aiohttp.ClientResponse | None = None
        finished = False
        lines = LineSplitter(self.max_line)
        try:
            response = await self.session().post(
                self.url("/api/chat"), json=native, timeout=REQUEST_TIMEOUT
            )
            if response.status >= 400:
                raise await read_error(self.kind, response)
            async for data in response.content.iter_any():
                for raw in lines.feed(data):
                    for chunk in self._translate_line(raw, translator):
                        yield chunk
                    if translator.finish_reason is not None:
                        finished = True
                        return
            for raw in lines.finish():
                for chunk in self._translate_line(raw, translator):
                    yield chunk
            finished = True
            if translator.finish_reason is None:
                raise BackendUnavailable(
                    f"The ollama backend at {self.base} ended the stream before the completion "
                    "finished.",
                    hint="check Ollama's log (out of memory?); the worker keeps serving",
                )
        except LineTooLong as exc:
            raise BackendFailed(f"ollama sent a broken stream: {exc}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise unavailable(self.kind, self.base, exc) from None
        finally:
            if response is not None:
                response.release() if finished else response.close()

    def _translate_line(self, raw: bytes, translator: StreamTranslator) -> list[StreamChunk]:
        if not raw.strip():
            return []
        try:
            line = json.loads(raw)
        except ValueError:
            raise BackendFailed(f"ollama sent a line that is not JSON: {raw[:80]!r}") from None
        if not isinstance(line, dict):
            raise BackendFailed("ollama sent a stream line that is not an object")
        if "error" in line:
            raise BackendFailed(f"ollama failed mid-stream: {message_from_body(line)}")
        texts = translator.feed(line)
        out = [StreamChunk(text) for text in texts]
        if translator.finish_reason is not None and out:
            usage = translator.usage or {}
            final = Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
            out[-1] = StreamChunk(out[-1].json, final, translator.finish_reason)
        return out

    # -- other requests: the OpenAI-compatible endpoints, unchanged -------------------------------
    async def images(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._post("/images/generations", body)
        except BackendFailed as exc:
            if exc.http_status in (404, 405) and "page not found" in exc.message:
                raise NotSupported(
                    "This Ollama version has no image generation endpoint.",
                    hint="Ollama serves /v1/images/generations only in v0.14.3 to v0.32.5",
                ) from None
            raise

    # -- install / uninstall ----------------------------------------------------------------------
    async def install(self, model_ref: str, progress: ProgressCallback) -> None:
        tracker = PullTracker()
        lines = LineSplitter()
        try:
            async with self.session().post(
                self.url("/api/pull"),
                json={"model": model_ref, "stream": True},
                timeout=INSTALL_TIMEOUT,
            ) as response:
                if response.status >= 400:
                    failed = await read_error(self.kind, response)
                    raise InstallError(f"Ollama refused to pull {model_ref}: {failed.message}")
                async for data in response.content.iter_any():
                    for raw in lines.feed(data):
                        await self._pull_line(raw, tracker, progress)
                for raw in lines.finish():
                    await self._pull_line(raw, tracker, progress)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise InstallError(unavailable(self.kind, self.base, exc).message) from None
        except LineTooLong as exc:
            raise InstallError(f"Ollama sent a broken pull stream: {exc}") from None
        if not tracker.succeeded:
            raise InstallError(f"Ollama's pull of {model_ref} ended without success.")
        await self.refresh()

    async def _pull_line(
        self, raw: bytes, tracker: PullTracker, progress: ProgressCallback
    ) -> None:
        if not raw.strip():
            return
        try:
            line = json.loads(raw)
        except ValueError:
            raise InstallError(f"Ollama sent a pull line that is not JSON: {raw[:80]!r}") from None
        if not isinstance(line, dict):
            raise InstallError("Ollama sent a pull line that is not an object")
        event = tracker.feed(line)
        if event is not None:
            await report(progress, event)

    async def uninstall(self, model_ref: str) -> None:
        model = self._canonical(model_ref) or model_ref
        try:
            async with self.session().delete(
                self.url("/api/delete"), json={"model": model}, timeout=CONTROL_TIMEOUT
            ) as response:
                if response.status >= 400:
                    failed = await read_error(self.kind, response)
                    raise InstallError(f"Ollama could not remove {model}: {failed.message}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise InstallError(unavailable(self.kind, self.base, exc).message) from None
        await self.refresh()
