"""Load: 256 concurrent streams through the sandbox to one worker, and a bounded soak.

The worker runs at its largest ``max_concurrent`` (64): the sandbox holds the rest back until a
slot frees, as the control plane does, so the test also covers that queue never losing or mixing
up a stream.

Real sandbox ingress + WebSocket hub, real Worker/link/router, the vLLM emulator as a fast backend
(all in this process on 127.0.0.1). Every stream carries a unique marker in its prompt and the
emulator echoes it back, so a lost, duplicated or mixed-up stream shows as a wrong text.

The soak runs ``PENDRA_SOAK_SECONDS`` (default 60) of mixed traffic — streams, plain chats,
embeddings, clients that hang up mid-stream, unknown models — and checks that the resident memory
and the number of asyncio tasks stay flat between the first fifth of the run and its end.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import time
import uuid
from collections import Counter

import httpx
import pytest
from reliability_support import (
    API_KEY,
    chat_body,
    echo_of,
    live_tasks,
    open_fds,
    rss_bytes,
    start_sandbox,
    start_worker,
    stream_chat,
    unary_chat,
    wait_for,
)

from tests.emulators import Faults, VllmEmulator

MODEL = "load-model"
STREAMS = 256
SOAK_S = float(os.environ.get("PENDRA_SOAK_SECONDS", "60"))


@pytest.mark.timeout(120)
async def test_256_concurrent_streams_none_lost_none_mixed_up() -> None:
    emulator = VllmEmulator(models=[MODEL], faults=Faults(chunk_delay_s=0.002))
    await emulator.start()
    sandbox = await start_sandbox()
    running = await start_worker(
        sandbox, {"vllm": emulator.url}, {MODEL}, PENDRA_PARALLEL="64", MAX_CONCURRENT="64"
    )
    limits = httpx.Limits(max_connections=STREAMS + 8, max_keepalive_connections=STREAMS + 8)
    try:
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            texts = [f"marker-{i}-{uuid.uuid4().hex} a b c d e f g h" for i in range(STREAMS)]
            started = time.monotonic()
            results = await asyncio.gather(
                *(stream_chat(client, sandbox.url, chat_body(MODEL, t)) for t in texts)
            )
            elapsed = time.monotonic() - started
            wrong = [
                (t, r.status, r.error, r.text)
                for t, r in zip(texts, results, strict=True)
                if not (r.status == 200 and r.done and r.error is None and r.text == echo_of(t))
            ]
            assert not wrong, wrong[:3]
            assert all(r.models == {MODEL} for r in results)
            await wait_for(lambda: running.worker.router.counters().in_flight == 0, "idle router")
            counters = running.worker.router.counters()
            assert counters.served >= STREAMS and counters.failed == 0
            assert not sandbox.hub.workers or all(
                w.in_flight == 0 for w in sandbox.hub.workers.values()
            )
            print(f"\nRELIABILITY load: {STREAMS} concurrent streams in {elapsed:.2f} s, 0 lost")
    finally:
        assert await running.stop() == 0
        await sandbox.stop()
        await emulator.stop()


async def _mixed_client(
    client: httpx.AsyncClient, base: str, n: int, deadline: float, seen: Counter[str]
) -> None:
    rng = random.Random(n)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    i = 0
    while time.monotonic() < deadline:
        i += 1
        text = f"soak-{n}-{i} " + " ".join(
            "x" * rng.randint(1, 6) for _ in range(rng.randint(3, 20))
        )
        pick = rng.random()
        if pick < 0.45:
            r = await stream_chat(client, base, chat_body(MODEL, text))
            assert r.done and r.text == echo_of(text), (text, r)
            seen["stream"] += 1
        elif pick < 0.60:
            r = await stream_chat(client, base, chat_body(MODEL, text), max_chunks=2)
            assert r.error is None
            seen["hang_up"] += 1
        elif pick < 0.80:
            answer = await unary_chat(client, base, MODEL, text)
            assert answer.status_code == 200, answer.text
            assert answer.json()["choices"][0]["message"]["content"] == echo_of(text)
            seen["chat"] += 1
        elif pick < 0.95:
            answer = await client.post(
                f"{base}/v1/embeddings", json={"model": MODEL, "input": text}, headers=headers
            )
            assert answer.status_code == 200, answer.text
            seen["embeddings"] += 1
        else:
            answer = await unary_chat(client, base, "no-such-model", text)
            assert answer.status_code == 404, answer.text
            seen["unknown_model"] += 1


@pytest.mark.timeout(SOAK_S + 90)
async def test_soak_mixed_traffic_keeps_memory_and_tasks_flat() -> None:
    emulator = VllmEmulator(models=[MODEL], faults=Faults(chunk_delay_s=0.001))
    await emulator.start()
    sandbox = await start_sandbox()
    running = await start_worker(
        sandbox, {"vllm": emulator.url}, {MODEL}, PENDRA_PARALLEL="16", MAX_CONCURRENT="16"
    )
    seen: Counter[str] = Counter()
    samples: list[tuple[float, int, int, int]] = []
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            start = time.monotonic()
            deadline = start + SOAK_S
            clients = [
                asyncio.create_task(_mixed_client(client, sandbox.url, n, deadline, seen))
                for n in range(12)
            ]

            async def sample() -> None:
                while time.monotonic() < deadline:
                    await asyncio.sleep(max(1.0, SOAK_S / 30))
                    gc.collect()
                    samples.append(
                        (time.monotonic() - start, rss_bytes(), live_tasks(), open_fds())
                    )

            sampler = asyncio.create_task(sample())
            await asyncio.gather(*clients)
            await sampler
            await wait_for(lambda: running.worker.router.counters().in_flight == 0, "idle router")
            counters = running.worker.router.counters()
    finally:
        assert await running.stop() == 0
        await sandbox.stop()
        await emulator.stop()

    warm = [s for s in samples if s[0] >= SOAK_S / 5]
    assert len(warm) >= 3, samples
    rss_warm, rss_end = warm[0][1], max(s[1] for s in warm[-3:])
    tasks_warm = max(s[2] for s in warm[:3])
    tasks_end = warm[-1][2]
    growth_mb = (rss_end - rss_warm) / 2**20
    total = sum(seen.values())
    assert counters.failed <= seen["unknown_model"], counters
    assert growth_mb < 24, f"RSS grew {growth_mb:.1f} MB over the soak: {samples}"
    assert tasks_end <= tasks_warm + 4, samples
    print(
        f"\nRELIABILITY soak: {SOAK_S:.0f} s, {total} requests {dict(seen)}, "
        f"RSS {rss_warm / 2**20:.1f}->{rss_end / 2**20:.1f} MB, tasks {tasks_warm}->{tasks_end}, "
        f"fds {warm[0][3]}->{warm[-1][3]}"
    )
