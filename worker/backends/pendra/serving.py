"""The built-in backend's request paths: OpenAI bodies in, runner jobs out, responses back.

:class:`~worker.backends.pendra.backend.PendraBackend` imports this module with its first request,
so a worker that has served nothing does not hold request parsing, grammars, tool-call parsers,
response shapes or the runner supervisor in memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from worker.backends.base import StreamChunk, Task, Usage
from worker.backends.pendra.choices import Choice, Out, TextOut
from worker.backends.pendra.grammar import one_forced_call, request_grammar
from worker.backends.pendra.params import (
    ChatParams,
    parse_chat,
    parse_completion,
    parse_embeddings,
)
from worker.backends.pendra.responses import (
    ChunkWriter,
    TextChunkWriter,
    chat_choice,
    chat_completion,
    completion_id,
    embedding_response,
    text_choice,
    text_completion,
    text_logprobs,
    tool_call_dicts,
    total_usage,
)
from worker.backends.pendra.supervisor import (
    DoneEvent,
    ErrorEvent,
    InfoEvent,
    JobEvent,
    ResultEvent,
    Runner,
    RunnerJob,
    TextEvent,
)
from worker.errors import BadRequest
from worker.token_progress import report_generated

if TYPE_CHECKING:
    from worker.backends.pendra.backend import PendraBackend


def _specs(
    runner: Runner,
    params: ChatParams,
    prompts: list[str | list[int]] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The runner jobs of a request (one per choice) and the tool-call syntax to parse."""
    info = runner.info
    n_vocab = int(info.get("n_vocab") or 0)
    for token, _bias in params.logit_bias:
        if n_vocab and not 0 <= token < n_vocab:
            raise BadRequest(
                f"'logit_bias' names token {int(token)}, not a token id of {params.model!r} "
                f"(0 to {n_vocab - 1})",
                param="logit_bias",
            )
    choices = params.n * (len(prompts) if prompts is not None else 1)
    slots = runner.slots or 1
    if choices > slots:
        what = "'n' × prompts" if prompts is not None and len(prompts) > 1 else "'n'"
        raise BadRequest(
            f"{what} asks for {choices} choices; {params.model!r} generates at most {slots} "
            "at once here, one per slot",
            hint="lower 'n' (or send the prompts in separate requests), or raise builtin.parallel",
            param="n",
        )
    tool_format = str(info.get("tool_format") or "hermes")
    grammar = request_grammar(params, tool_format)
    specs = []
    for prompt in prompts if prompts is not None else [None]:
        for i in range(params.n):
            seed = params.seed + i if params.seed is not None else None
            job_params = dataclasses.replace(params, seed=seed, prompt=prompt)
            specs.append(
                {"kind": "chat", "params": dataclasses.asdict(job_params), "grammar": grammar}
            )
    return specs, (tool_format if params.calls_tools else None)


def _choices(
    params: ChatParams, count: int, tool_format: str | None, streaming: bool
) -> list[Choice]:
    return [
        Choice(
            i,
            tool_format=tool_format,
            parallel=params.parallel_tool_calls,
            logprobs=params.logprobs,
            streaming=streaming,
            one_forced_call=one_forced_call(params),
        )
        for i in range(count)
    ]


async def chat(backend: PendraBackend, body: dict[str, Any]) -> dict[str, Any]:
    params = parse_chat(body)
    model = await backend._model_for(params.model, Task.CHAT)
    async with backend._pool.lease(model) as runner:
        specs, tool_format = _specs(runner, params)
        jobs = [runner.submit(spec) for spec in specs]
        try:
            choices = _choices(params, len(jobs), tool_format, streaming=False)
            await _collect(jobs, choices)
        finally:
            for job in jobs:
                job.cancel()  # a no-op when finished; stops generation when we were cancelled
    out = []
    for choice in choices:
        result = choice.result()
        out.append(
            chat_choice(
                choice.index,
                result.content,
                result.finish_reason,
                tool_calls=tool_call_dicts(result.calls, result.call_ids),
                logprobs=result.logprobs,
            )
        )
    usage = total_usage([c.usage for c in choices if c.usage is not None])
    return chat_completion(completion_id(), params.model, int(time.time()), out, usage)


def chat_stream(backend: PendraBackend, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
    """The streamed chat completion's chunks (the request is checked here, at the call)."""
    params = parse_chat({**body, "stream": True})
    return _stream(backend, params, None, _ChatChunks(params))


async def completions(backend: PendraBackend, body: dict[str, Any]) -> dict[str, Any]:
    request = parse_completion(body)
    params = request.params
    model = await backend._model_for(params.model, Task.CHAT)
    async with backend._pool.lease(model) as runner:
        specs, _ = _specs(runner, params, request.prompts)
        jobs = [runner.submit(spec) for spec in specs]
        try:
            choices = _choices(params, len(jobs), None, streaming=False)
            await _collect(jobs, choices)
        finally:
            for job in jobs:
                job.cancel()
    out = []
    for choice in choices:
        result = choice.result()
        prefix = _echo(params, request.prompts, choice.index)
        out.append(
            text_choice(
                choice.index,
                prefix + (result.content or ""),
                result.finish_reason,
                text_logprobs(result.logprobs),
            )
        )
    usage = total_usage([c.usage for c in choices if c.usage is not None], len(request.prompts))
    return text_completion(completion_id("cmpl"), params.model, int(time.time()), out, usage)


def completions_stream(backend: PendraBackend, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
    """The streamed legacy completion's chunks (the request is checked here, at the call)."""
    request = parse_completion({**body, "stream": True})
    shape = _TextChunks(request.params, request.prompts)
    return _stream(backend, request.params, request.prompts, shape)


async def _stream(
    backend: PendraBackend,
    params: ChatParams,
    prompts: list[str | list[int]] | None,
    shape: _ChatChunks | _TextChunks,
) -> AsyncIterator[StreamChunk]:
    """One streamed request, chat or legacy completion (``shape`` writes its chunks): the
    choices' runner jobs interleaved as their events arrive, each choice finished on its own,
    the usage once the last one is."""
    model = await backend._model_for(params.model, Task.CHAT)
    async with backend._pool.lease(model) as runner:
        specs, tool_format = _specs(runner, params, prompts)
        jobs = [runner.submit(spec) for spec in specs]
        events = _events(jobs)
        try:
            # Wait for the first event before the first chunk: a request the runner rejects
            # (a prompt over the context, a template error) fails as a plain error response.
            event = await events.__anext__()
            if isinstance(event[1], ErrorEvent):
                raise event[1].error
            choices = _choices(params, len(jobs), tool_format, streaming=True)
            for chunk in shape.opening(choices):
                yield chunk
            left = len(jobs)
            while True:
                index, item = event
                choice = choices[index]
                if isinstance(item, TextEvent):
                    for chunk in shape.deltas(choice, choice.feed(item.text)):
                        yield chunk
                elif isinstance(item, InfoEvent):
                    choice.info(item.value)
                elif isinstance(item, DoneEvent):
                    for chunk in shape.deltas(
                        choice, choice.finish(item.finish_reason, item.usage)
                    ):
                        yield chunk
                    left -= 1
                    usages = [c.usage for c in choices if c.usage is not None]
                    for chunk in shape.closing(choice, shape.total(usages) if left == 0 else None):
                        yield chunk
                    if left == 0:
                        return
                elif isinstance(item, ErrorEvent):
                    raise item.error
                event = await events.__anext__()
        finally:
            for job in jobs:
                job.cancel()
            await events.aclose()


class _ChatChunks:
    """The chunks of a streamed chat completion: each choice's role first, then its content
    and tool-call deltas, then its finish chunk; the usage with the last finish (or in a chunk
    of its own with ``stream_options.include_usage``)."""

    def __init__(self, params: ChatParams) -> None:
        self.writer = ChunkWriter(params.model)
        self.include_usage = params.include_usage

    def opening(self, choices: list[Choice]) -> list[StreamChunk]:
        return [self.writer.role(choice.index) for choice in choices]

    def deltas(self, choice: Choice, outs: list[Out]) -> list[StreamChunk]:
        return [chunk for out in outs for chunk in _chat_chunks(self.writer, choice.index, out)]

    def closing(self, choice: Choice, total: Usage | None) -> list[StreamChunk]:
        reason = choice.finish_reason or "stop"
        logprobs = choice.pending_logprobs()
        if not self.include_usage:
            return [self.writer.finish(reason, total, choice.index, logprobs)]
        finish = self.writer.finish(reason, None, choice.index, logprobs)
        return [finish] if total is None else [finish, self.writer.usage(total)]

    @staticmethod
    def total(usages: list[Usage]) -> Usage:
        return total_usage(usages)


class _TextChunks:
    """The chunks of a streamed legacy completion: the echoed prompt first (``echo``), then text
    with log probabilities at text offsets, then an empty chunk with the finish reason."""

    def __init__(self, params: ChatParams, prompts: list[str | list[int]]) -> None:
        self.writer = TextChunkWriter(params.model)
        self.params = params
        self.prompts = prompts

    def opening(self, choices: list[Choice]) -> list[StreamChunk]:
        chunks = []
        for choice in choices:
            prefix = _echo(self.params, self.prompts, choice.index)
            if prefix:
                choice.emitted_chars += len(prefix)
                chunks.append(self.writer.text(choice.index, prefix))
        return chunks

    def deltas(self, choice: Choice, outs: list[Out]) -> list[StreamChunk]:
        chunks = []
        for out in outs:
            assert isinstance(out, TextOut)  # legacy completions have no tools
            logprobs = text_logprobs(out.logprobs, choice.emitted_chars)
            choice.emitted_chars += len(out.text)
            chunks.append(self.writer.text(choice.index, out.text, logprobs))
        return chunks

    def closing(self, choice: Choice, total: Usage | None) -> list[StreamChunk]:
        reason = choice.finish_reason or "stop"
        logprobs = text_logprobs(choice.pending_logprobs(), choice.emitted_chars)
        if not self.params.include_usage:
            return [self.writer.text(choice.index, "", logprobs, reason, total)]
        finish = self.writer.text(choice.index, "", logprobs, reason)
        return [finish] if total is None else [finish, self.writer.usage(total)]

    def total(self, usages: list[Usage]) -> Usage:
        return total_usage(usages, len(self.prompts))


async def embeddings(backend: PendraBackend, body: dict[str, Any]) -> dict[str, Any]:
    params = parse_embeddings(body)
    model = await backend._model_for(params.model, Task.EMBEDDING)
    async with backend._pool.lease(model) as runner:
        info = runner.info
        n_embd, n_vocab = int(info.get("n_embd", 0)), int(info.get("n_vocab", 0))
        if params.dimensions is not None and params.dimensions != n_embd:
            raise BadRequest(
                f"'dimensions' must be {n_embd} for {params.model!r} (the model's "
                f"embedding size), got {params.dimensions}",
                param="dimensions",
            )
        _check_token_ids(params.inputs, n_vocab, params.model)
        job = runner.submit({"kind": "embed", "inputs": params.inputs})
        try:
            async for event in job.events():
                if isinstance(event, ResultEvent):
                    return embedding_response(
                        params.model,
                        event.value.vectors,
                        event.value.prompt_tokens,
                        params.encoding_format,
                    )
                if isinstance(event, ErrorEvent):
                    raise event.error
            raise RuntimeError("the runner ended a job without a result")  # pragma: no cover
        finally:
            job.cancel()


def _chat_chunks(writer: ChunkWriter, index: int, out: Out) -> list[StreamChunk]:
    if isinstance(out, TextOut):
        return [writer.content(out.text, index, out.logprobs)]
    return writer.tool_call(index, out.call_index, out.call_id, out.call, out.logprobs)


def _echo(params: ChatParams, prompts: list[str | list[int]], index: int) -> str:
    """The prompt a choice repeats before its answer (``echo``)."""
    if not params.echo:
        return ""
    prompt = prompts[index // params.n]
    return prompt if isinstance(prompt, str) else ""


_FINAL = (DoneEvent, ErrorEvent, ResultEvent)


async def _events(jobs: list[RunnerJob]) -> AsyncIterator[tuple[int, JobEvent]]:
    """The events of several jobs as they come, each with its job's index, until all end."""
    if len(jobs) == 1:
        queue = jobs[0].queue
        while True:
            event = await queue.get()
            yield 0, event
            if isinstance(event, _FINAL):
                return
    waiting = {asyncio.ensure_future(job.queue.get()): i for i, job in enumerate(jobs)}
    try:
        while waiting:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: waiting[t]):
                index = waiting.pop(task)
                event = task.result()
                yield index, event
                if not isinstance(event, _FINAL):
                    waiting[asyncio.ensure_future(jobs[index].queue.get())] = index
    finally:
        for task in waiting:
            task.cancel()


async def _collect(jobs: list[RunnerJob], choices: list[Choice]) -> None:
    """Run the jobs to their end into ``choices``; the first error is raised."""
    events = _events(jobs)
    try:
        async for index, event in events:
            choice = choices[index]
            if isinstance(event, TextEvent):
                choice.feed(event.text)
                report_generated()
            elif isinstance(event, InfoEvent):
                choice.info(event.value)
            elif isinstance(event, DoneEvent):
                choice.finish(event.finish_reason, event.usage)
            elif isinstance(event, ErrorEvent):
                raise event.error
    finally:
        await events.aclose()


def _check_token_ids(inputs: list[str | list[int]], n_vocab: int, model: str) -> None:
    """Token-id inputs are checked before they reach a batch: one bad id must not fail others."""
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            continue
        for j, token in enumerate(item):
            if not 0 <= token < n_vocab:
                raise BadRequest(
                    f"'input[{i}][{j}]' is {token}, not a token id of {model!r} "
                    f"(valid ids are 0 to {n_vocab - 1})"
                )
