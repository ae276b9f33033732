"""Embeddings on the built-in backend with a real tiny embedding GGUF (MEAN pooling)."""

from __future__ import annotations

import asyncio
import base64
import math
import struct

import pytest
from conftest import MakeBackend
from openai.types import CreateEmbeddingResponse

from worker.errors import BadRequest


def _same(a: list[float], b: list[float]) -> bool:
    """Equal up to float noise: batch composition changes the kernels' summation order."""
    return sum(x * y for x, y in zip(a, b, strict=True)) > 0.99999


async def test_batch_shape_and_normalisation(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    result = await backend.embeddings({"model": "emb", "input": ["hello", "the cat", "a"]})
    parsed = CreateEmbeddingResponse.model_validate(result)
    assert [d.index for d in parsed.data] == [0, 1, 2]
    for item in parsed.data:
        assert len(item.embedding) == 64
        assert math.isclose(math.sqrt(sum(v * v for v in item.embedding)), 1.0, rel_tol=1e-4)
    assert parsed.data[0].embedding != parsed.data[1].embedding
    assert parsed.usage.prompt_tokens == parsed.usage.total_tokens > 3


async def test_batched_equals_single(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    batch = await backend.embeddings({"model": "emb", "input": ["hello", "the cat"]})
    single = await backend.embeddings({"model": "emb", "input": "the cat"})
    a, b = batch["data"][1]["embedding"], single["data"][0]["embedding"]
    assert _same(a, b)


async def test_concurrent_requests_share_batches(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    texts = [f"text number {i}" for i in range(12)]
    singles = [await backend.embeddings({"model": "emb", "input": t}) for t in texts]
    together = await asyncio.gather(
        *(backend.embeddings({"model": "emb", "input": t}) for t in texts)
    )
    for s, t in zip(singles, together, strict=True):
        assert _same(s["data"][0]["embedding"], t["data"][0]["embedding"])


async def test_base64_and_token_input(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    floats = await backend.embeddings({"model": "emb", "input": "hello"})
    encoded = await backend.embeddings(
        {"model": "emb", "input": "hello", "encoding_format": "base64"}
    )
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert all(
        math.isclose(x, y, abs_tol=1e-6)
        for x, y in zip(decoded, floats["data"][0]["embedding"], strict=True)
    )
    tokens = await backend.embeddings({"model": "emb", "input": [1, 40, 41, 42]})
    assert len(tokens["data"][0]["embedding"]) == 64


async def test_errors(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    with pytest.raises(BadRequest, match="'dimensions' must be 64"):
        await backend.embeddings({"model": "emb", "input": "x", "dimensions": 32})
    with pytest.raises(BadRequest, match=r"'input\[1\]' is .* tokens"):
        await backend.embeddings({"model": "emb", "input": ["ok", "word " * 600]})
    assert (await backend.embeddings({"model": "emb", "input": "still fine"}))["data"]
