"""A non-streamed answer from the built-in backend counts into the worker's tok/s while it is
generated, not only when it is done (real llama.cpp on the tiny GGUF with an 8192-token
context and 1000 tokens to generate, so the answer takes seconds)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from conftest import MakeBackend, user

from tests.model_factory import NO_EARLY_END
from worker.backends.registry import BackendRegistry
from worker.router import RATE_WINDOW_S, Router

pytestmark = pytest.mark.timeout(180)


async def test_a_long_whole_answer_moves_the_rate_before_it_ends(
    make_backend: MakeBackend, models_dir: Path, long_chat_gguf: Path
) -> None:
    shutil.copy(long_chat_gguf, models_dir / "long.gguf")
    backend = await make_backend()
    # a clock that stands still keeps every token in the rate's window, however long this takes
    router = Router(BackendRegistry([backend]), clock=lambda: 0.0)
    body = {"model": "long", "messages": user("count"), "max_tokens": 1000}
    request = asyncio.create_task(router.chat({**body, "logit_bias": NO_EARLY_END}))
    while router.counters().tokens_per_s == 0 and not request.done():
        await asyncio.sleep(0.01)
    # the rate moved while the request was still generating
    assert not request.done(), "the rate stayed at 0 until the answer was complete"
    assert router.counters().tokens_total == 0  # the total waits for the final usage
    reply = await request
    generated = reply["usage"]["completion_tokens"]
    assert generated == 1000
    assert router.counters().tokens_total == generated
    # each token counted once: as generated, or from the usage at the end
    assert router.counters().tokens_per_s == generated / RATE_WINDOW_S
