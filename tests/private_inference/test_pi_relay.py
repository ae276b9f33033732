"""Private inference through the real sandbox and the real worker runtime, with the official SDK.

In process: the sandbox's HTTP ingress and WebSocket hub, the worker's link, router and private-
inference code are the real ones on 127.0.0.1; behind the router sits the link tests' echo backend
(its answers are derived from the prompt), or the Speaches emulator for transcription. The same
paths with the real Gemma model, as processes, are in test_pi_processes.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pendra
import pytest
from pendra import _private_inference as sdk_pi
from pi_support import API_KEY, Sandbox, sdk, start_sandbox, start_worker

from tests.emulators.speaches import SpeachesEmulator
from tests.link.link_fakes import (
    FAKE_EMBED,
    FAKE_MODEL,
    FakeBackend,
    RunningWorker,
    expected_words,
    wait_for,
)
from worker.errors import BackendFailed
from worker.private_inference.wire import ERROR_CODE_HEADER, NO_WORKER_ERROR_CODE
from worker.private_inference.workload_key import WorkloadKey, read_key

pytestmark = pytest.mark.timeout(60)
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = await start_sandbox(workers=2)
    yield box
    await box.stop()


@pytest.fixture
async def running(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[RunningWorker]:
    worker = await start_worker(sandbox, FakeBackend(), tmp_path / "home-a")
    yield worker
    if not worker.task.done():
        await worker.stop()


def _chat(content: str, **extra: object) -> dict[str, object]:
    return {"model": FAKE_MODEL, "messages": [{"role": "user", "content": content}], **extra}


async def test_sdk_private_chat_stream_and_embeddings(
    sandbox: Sandbox, running: RunningWorker, tmp_path: Path
) -> None:
    client = sdk(sandbox, tmp_path)
    reply = await client.chat.completions.create(**_chat("alpha"))
    assert reply.choices[0].message.content == " ".join(expected_words("alpha", 5))
    worker_id = running.worker.key.worker_id
    assert reply.pendra is not None and reply.pendra.worker is not None
    assert reply.pendra.worker.id == worker_id and reply.pendra.request_id

    stream = await client.chat.completions.create(**_chat("beta"), stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == " ".join(expected_words("beta", 5))
    assert stream.worker is not None and stream.worker.id == worker_id

    emb = await client.embeddings.create(model=FAKE_EMBED, input=["ab", "abcd"])
    assert [d.embedding[0] for d in emb.data] == [2.0, 4.0]
    status = running.worker.status()["worker"]["private_inference"]
    assert (status["served"], status["failed"], status["in_flight"]) == (3, 0, 0)
    assert status["fingerprint"] == running.worker.private.current.kid
    await client.close()


async def test_the_key_endpoint_lists_what_workers_registered(
    sandbox: Sandbox, running: RunningWorker
) -> None:
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        assert (await http.get("/v1/private-inference/key")).status_code == 401
        answer = (await http.get("/v1/private-inference/key", headers=AUTH)).json()
    key = running.worker.private.current
    assert answer["keys"] == [{"kid": key.kid, "public_key": key.public_b64, "workers": 1}]
    # What the SDK trusts is recomputed from the key, and matches the worker's fingerprint.
    assert sdk_pi.fingerprint(base64.b64decode(answer["keys"][0]["public_key"])) == key.kid


async def test_no_registered_key_is_a_clear_404(sandbox: Sandbox, tmp_path: Path) -> None:
    client = sdk(sandbox, tmp_path)
    with pytest.raises(Exception, match="No connected worker has registered") as caught:
        await client.chat.completions.create(**_chat("x"))
    assert type(caught.value).__name__ == "PrivateInferenceError"
    await client.close()


async def test_a_request_sealed_to_no_connected_worker_says_so(
    sandbox: Sandbox, running: RunningWorker, tmp_path: Path
) -> None:
    client = sdk(sandbox, tmp_path)
    await client.chat.completions.create(**_chat("warm the key cache"))
    engine = client._private_inference_engine
    # As if the client had cached a key that no connected worker holds any more.
    engine._org_pubs = [WorkloadKey.generate().public_bytes]
    with pytest.raises(pendra.APIStatusError) as caught:
        await client.chat.completions.create(**_chat("x"))
    assert caught.value.status_code == 503
    # The SDK read the re-key signal and dropped its cache: the next call fetches and works.
    assert engine.cached_org_public_keys() is None
    envelope, _ = sdk_pi.seal_request(
        WorkloadKey.generate().public_bytes, b"{}", model=FAKE_MODEL, stream=False, task_type="chat"
    )
    async with httpx.AsyncClient(base_url=sandbox.url, headers=AUTH) as http:
        answer = await http.post(
            "/api/v1/chat/completions", json={"model": FAKE_MODEL, "pendra_encrypted": envelope}
        )
    assert answer.status_code == 503
    assert answer.headers[ERROR_CODE_HEADER] == NO_WORKER_ERROR_CODE
    reply = await client.chat.completions.create(**_chat("again"))
    assert reply.choices[0].message.content.startswith("again-0")
    await client.close()


async def test_plaintext_beside_the_envelope_and_broken_envelopes_are_refused(
    sandbox: Sandbox, running: RunningWorker
) -> None:
    key = running.worker.private.current
    envelope, _ = sdk_pi.seal_request(
        key.public_bytes, b"{}", model=FAKE_MODEL, stream=False, task_type="chat"
    )
    async with httpx.AsyncClient(base_url=sandbox.url, headers=AUTH) as http:
        leaky = {"model": FAKE_MODEL, "pendra_encrypted": envelope, "messages": ["oops"]}
        answer = await http.post("/api/v1/chat/completions", json=leaky)
        assert answer.status_code == 400 and "'messages' must go inside" in answer.text
        broken = {"model": FAKE_MODEL, "pendra_encrypted": {**envelope, "v": 1}}
        answer = await http.post("/api/v1/chat/completions", json=broken)
        assert answer.status_code == 400 and "pendra_encrypted.v must be 2" in answer.text
        images = {"model": FAKE_MODEL, "pendra_encrypted": envelope}
        answer = await http.post("/api/v1/images/generations", json=images)
        assert answer.status_code == 400 and "does not cover images" in answer.text


class LeakyFailingBackend(FakeBackend):
    """A backend whose error message quotes the prompt, as some inference servers' do."""

    async def chat(self, body: dict[str, object]) -> dict[str, object]:
        raise BackendFailed(f"cannot continue {self._prompt(body)!r}", status=422)


async def test_worker_failures_reach_the_client_without_content(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    running = await start_worker(sandbox, LeakyFailingBackend(), tmp_path / "home")
    client = sdk(sandbox, tmp_path)
    with pytest.raises(pendra.APIStatusError) as caught:
        await client.chat.completions.create(**_chat("secret-prompt-words"))
    assert caught.value.status_code == 422
    assert "secret-prompt-words" not in str(caught.value) + json.dumps(caught.value.body)
    assert "backend_error" in str(caught.value)
    # A sealed body that disagrees with its envelope is refused, without quoting it either.
    key = running.worker.private.current
    inner = json.dumps(_chat("secret-prompt-words", model="other")).encode()
    envelope, _ = sdk_pi.seal_request(
        key.public_bytes, inner, model=FAKE_MODEL, stream=False, task_type="chat"
    )
    async with httpx.AsyncClient(base_url=sandbox.url, headers=AUTH) as http:
        answer = await http.post(
            "/api/v1/chat/completions", json={"model": FAKE_MODEL, "pendra_encrypted": envelope}
        )
    assert answer.status_code == 400 and "different model" in answer.text
    assert "secret-prompt-words" not in answer.text
    assert running.worker.private.status()["failed"] == 2
    await client.close()
    await running.stop()


async def test_rotation_keeps_the_old_key_while_a_request_sealed_to_it_runs(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    running = await start_worker(sandbox, FakeBackend(words=40, delay_s=0.02), tmp_path / "home")
    private = running.worker.private
    old = private.current
    client = sdk(sandbox, tmp_path)
    stream = await client.chat.completions.create(**_chat("slow"), stream=True)
    iterator = stream.__aiter__()
    first = await iterator.__anext__()  # the request sealed to the old key is now in flight

    status = await running.worker.rotate_workload_key()
    new = private.current
    assert new.kid != old.kid and status["fingerprint"] == new.kid
    await wait_for(lambda: sandbox.registered_kids() == {new.kid}, what="the new registration")
    # Deregistered and acknowledged, but still held: the stream sealed to it is running.
    assert private.status()["retired_keys_held"] == 1
    rest = [c async for c in iterator]
    text = "".join(c.choices[0].delta.content or "" for c in [first, *rest] if c.choices)
    assert text == " ".join(expected_words("slow", 40))
    await wait_for(lambda: private.status()["retired_keys_held"] == 0, what="the old key dropped")

    # The key file now holds the new key; a client that cached the old one recovers by itself.
    assert read_key(private.key_file).kid == new.kid
    with pytest.raises(pendra.APIStatusError) as caught:
        await client.chat.completions.create(**_chat("after"))
    assert caught.value.status_code == 503
    reply = await client.chat.completions.create(**_chat("after"))
    assert reply.choices[0].message.content.startswith("after-0")
    await client.close()
    await running.stop()


async def test_two_workers_either_serves_and_a_conversation_stays_on_one(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    first = await start_worker(sandbox, FakeBackend(), tmp_path / "home-a", index=0)
    second = await start_worker(sandbox, FakeBackend(), tmp_path / "home-b", index=1)
    kids = {first.worker.private.current.kid, second.worker.private.current.kid}
    assert len(kids) == 2 and sandbox.registered_kids() == kids
    client = sdk(sandbox, tmp_path)
    served_by = set()
    for turn in range(4):
        reply = await client.chat.completions.create(
            model=FAKE_MODEL,
            messages=[
                {"role": "user", "content": "same conversation"},
                {"role": "assistant", "content": f"turn {turn}"},
                {"role": "user", "content": f"next {turn}"},
            ],
        )
        served_by.add(reply.pendra.worker.id)
    assert len(served_by) == 1, "the affinity key should keep one conversation on one worker"

    # Either worker can serve: stop the one that did, the other takes the next request.
    stopped = first if first.worker.key.worker_id in served_by else second
    other = second if stopped is first else first
    assert await stopped.stop() == 0
    await wait_for(lambda: len(sandbox.hub.workers) == 1, what="the stopped worker to go")
    reply = await client.chat.completions.create(**_chat("still private"))
    assert reply.pendra.worker.id == other.worker.key.worker_id
    assert reply.choices[0].message.content.startswith("still private-0")
    await client.close()
    await other.stop()


async def test_private_transcription_through_speaches(sandbox: Sandbox, tmp_path: Path) -> None:
    async with SpeachesEmulator() as speaches:
        from worker.backends.speaches import SpeachesBackend

        backend = SpeachesBackend(speaches.url)
        running = await start_worker(sandbox, backend, tmp_path / "home")
        client = sdk(sandbox, tmp_path)
        audio = b"RIFF" + bytes(40) + b"WAVEdata"
        result = await client.audio.transcriptions.create(
            file=("clip.wav", audio), model="Systran/faster-whisper-small", language="en"
        )
        # The worker named the sealed audio after its format; the emulator echoes that name.
        assert result.text == f"transcribed {len(audio)} bytes of audio.wav"
        text = await client.audio.transcriptions.create(
            file=("clip.wav", audio), model="Systran/faster-whisper-small", response_format="text"
        )
        assert text.text == f"transcribed {len(audio)} bytes of audio.wav"
        await client.close()
        await running.stop()


async def test_the_sdk_without_private_inference_on_the_api_paths(
    sandbox: Sandbox, running: RunningWorker
) -> None:
    client = pendra.AsyncPendra(api_key=API_KEY, base_url=sandbox.url, private_inference=False)
    models = await client.models.list()
    assert {m.id for m in models} == {FAKE_MODEL, FAKE_EMBED}
    reply = await client.chat.completions.create(**_chat("plain"))
    assert reply.choices[0].message.content.startswith("plain-0")
    assert reply.pendra.worker.id == running.worker.key.worker_id
    stream = await client.chat.completions.create(**_chat("plain"), stream=True)
    chunks = [c async for c in stream]
    assert chunks[-1].choices == [] and stream.worker.id == running.worker.key.worker_id
    assert running.worker.private.status()["served"] == 0
    await client.close()


async def test_a_worker_with_private_inference_off_registers_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    running = await start_worker(
        sandbox, FakeBackend(), tmp_path / "home", PENDRA_PRIVATE_INFERENCE="false"
    )
    assert sandbox.registered_kids() == set()
    assert not (tmp_path / "home" / "workload.key").exists()
    status = running.worker.status()["worker"]["private_inference"]
    assert status["enabled"] is False and status["fingerprint"] is None
    async with httpx.AsyncClient(base_url=sandbox.url, headers=AUTH) as http:
        answer = await http.get("/v1/private-inference/key")
    assert answer.status_code == 404
    await running.stop()


async def test_the_placement_trailer_names_the_worker_only_when_asked(
    sandbox: Sandbox, running: RunningWorker
) -> None:
    key = running.worker.private.current
    body = json.dumps({**_chat("t"), "stream": True, "pendra_stream_terminator": 1}).encode()

    async def trailer(headers: dict[str, str]) -> dict[str, object]:
        envelope, _ = sdk_pi.seal_request(
            key.public_bytes, body, model=FAKE_MODEL, stream=True, task_type="chat"
        )
        request = {"model": FAKE_MODEL, "stream": True, "pendra_encrypted": envelope}
        async with (
            httpx.AsyncClient(base_url=sandbox.url, headers=AUTH) as http,
            http.stream("POST", "/api/v1/chat/completions", json=request, headers=headers) as r,
        ):
            assert r.headers["X-Worker-Id"] == running.worker.key.worker_id
            events = [line[6:] async for line in r.aiter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        unsealed = [json.loads(e) for e in events[:-1] if "pendra_encrypted" not in e]
        assert len(unsealed) == 1
        return unsealed[0]

    plain = await trailer({})
    assert plain["choices"] == [] and set(plain["pendra"]) == {"timing"}
    named = await trailer({"X-Pendra-Placement": "1"})
    assert named["pendra"]["worker"] == {"id": running.worker.key.worker_id}


async def test_hostile_sealed_frames_straight_from_the_control_plane(
    sandbox: Sandbox, running: RunningWorker, tmp_path: Path
) -> None:
    """A control plane that sends the worker broken or foreign envelopes gets a clear error
    frame for each, and the worker goes on serving."""
    from worker.protocol import ErrorFrame, Request
    from worker.sandbox.hub import Channel

    key = running.worker.private.current
    mine, _ = sdk_pi.seal_request(
        key.public_bytes, b"{}", model=FAKE_MODEL, stream=False, task_type="chat"
    )
    foreign, _ = sdk_pi.seal_request(
        WorkloadKey.generate().public_bytes, b"{}", model=FAKE_MODEL, stream=False, task_type="chat"
    )
    garbled = {**mine, "ciphertext": base64.b64encode(b"\x00" * 48).decode()}
    cases = [
        ("chat", {"v": 2}, "private_request_unreadable", 400),
        ("chat", foreign, NO_WORKER_ERROR_CODE, 503),
        ("chat", garbled, "private_request_unreadable", 400),
        ("images", mine, "invalid_request_error", 400),
    ]
    connection = next(iter(sandbox.hub.workers.values()))
    for index, (kind, envelope, code, status) in enumerate(cases):
        request_id = f"hostile_{index}"
        channel = Channel(connection, request_id)
        connection.channels[request_id] = channel
        body = {"model": FAKE_MODEL, "pendra_encrypted": envelope}
        await connection.send(Request(id=request_id, kind=kind, body=body).dump())
        answer = await channel.next(10)
        assert isinstance(answer, ErrorFrame), answer
        assert (answer.code, answer.status) == (code, status), answer
        await channel.close()
    client = sdk(sandbox, tmp_path)
    reply = await client.chat.completions.create(**_chat("fine"))
    assert reply.choices[0].message.content.startswith("fine-0")
    assert running.worker.private.status()["failed"] == len(cases)
    await client.close()
