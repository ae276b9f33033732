"""The field policy of every external kind through the processes a user runs: the official
``openai`` client → ``pendra sandbox`` → WSS link → ``pendra --no-ui`` → each emulated backend.

A field a kind cannot serve comes back to the client as a 400 whose ``param`` names it, and
nothing reaches the backend; the fields it serves arrive in its own spelling. The cases are the
ones docs/openai-compatibility.md lists per kind. The emulators run on an event loop in a thread
of the test (so the test can read what each one received); sandbox and worker are real processes.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from tests.emulators import EMULATORS, Emulator, OllamaEmulator, OllamaModel, SpeachesEmulator
from tests.link.link_procs import (
    API_KEY,
    Proc,
    free_port,
    spawn,
    start_sandbox_proc,
    stop,
    wait_for_models,
    worker_env,
)

pytestmark = pytest.mark.timeout(180)

OPENAI_KINDS = ["lmstudio", "vllm", "llamacpp", "tgi", "sglang", "localai", "openai"]
OLLAMA_MODEL = "llama3.2:latest"
USER = [{"role": "user", "content": "hi you"}]


def model_of(kind: str) -> str:
    return OLLAMA_MODEL if kind == "ollama" else f"{kind}-model"


def chat_path(kind: str) -> str:
    return "/api/chat" if kind == "ollama" else "/v1/chat/completions"


@dataclass
class Stack:
    emulators: dict[str, Emulator]
    client: openai.OpenAI
    worker: Proc

    def sent(self, kind: str, path: str) -> list[Any]:
        return list(self.emulators[kind].bodies(path))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("field-policies")
    emulators: dict[str, Emulator] = {k: EMULATORS[k](models=[model_of(k)]) for k in OPENAI_KINDS}
    emulators["ollama"] = OllamaEmulator([OllamaModel(OLLAMA_MODEL)])
    emulators["speaches"] = SpeachesEmulator()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="emulators", daemon=True)
    thread.start()

    def on_loop(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    procs: list[Proc] = []
    try:
        for emulator in emulators.values():
            on_loop(emulator.start())
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PENDRA_") and not k.endswith("_ENDPOINT")
        }
        base["PENDRA_HOME"] = str(root / "home")
        port = free_port()
        api_url = f"http://127.0.0.1:{port}"
        key_file = root / "sandbox-worker.key"
        procs.append(start_sandbox_proc(base, root / "logs", port, key_file))
        env = worker_env(base, api_url, key_file, root / "models")
        env["PENDRA_BUILTIN"] = "false"
        env.update({f"{k.upper()}_ENDPOINT": e.url for k, e in emulators.items()})
        worker = spawn(["--no-ui"], env, root / "logs", "worker")
        procs.append(worker)
        wait_for_models(api_url, {model_of(k) for k in [*OPENAI_KINDS, "ollama"]}, worker)
        client = openai.OpenAI(base_url=f"{api_url}/v1", api_key=API_KEY, max_retries=0)
        yield Stack(emulators, client, worker)
        client.close()
    finally:
        for proc in reversed(procs):
            stop(proc)
        for emulator in emulators.values():
            on_loop(emulator.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def assert_refused(stack: Stack, kind: str, path: str, call: Any, field: str) -> None:
    before = len(stack.sent(kind, path))
    with pytest.raises(openai.BadRequestError) as info:
        call()
    assert info.value.status_code == 400
    assert info.value.param == field, info.value.message
    assert f"'{field}'" in info.value.message
    assert len(stack.sent(kind, path)) == before, "a refused request reached the backend"
    assert stack.worker.popen.poll() is None


# -- chat: what each kind refuses (docs/openai-compatibility.md, "External backends") ----------
CHAT_REFUSED: list[tuple[str, str, Any]] = [
    ("ollama", "n", 2),
    ("ollama", "logit_bias", {"5": 1}),
    ("ollama", "logprobs", True),
    ("ollama", "top_logprobs", 2),
    ("ollama", "tool_choice", "required"),
    ("ollama", "parallel_tool_calls", False),
    ("lmstudio", "n", 2),
    ("lmstudio", "logprobs", True),
    ("lmstudio", "top_logprobs", 3),
    ("llamacpp", "n", 2),
    ("tgi", "n", 2),
    ("tgi", "logit_bias", {"5": 1}),
    ("localai", "n", 3),
]
# What every kind but the generic one refuses: OpenAI-service features and unknown fields.
HOSTED_ONLY: list[tuple[str, Any]] = [
    ("audio", {"voice": "alloy", "format": "wav"}),
    ("prediction", {"type": "content", "content": "x"}),
    ("web_search_options", {}),
    ("store", True),
    ("functions", [{"name": "f", "parameters": {}}]),
    ("verbosity", "low"),
    ("modalities", ["text", "audio"]),
    ("service_tier", "flex"),
    ("definitely_not_a_field", 1),
]


@pytest.mark.parametrize(("kind", "field", "value"), CHAT_REFUSED)
def test_chat_values_a_kind_cannot_serve_are_400s(
    stack: Stack, kind: str, field: str, value: Any
) -> None:
    def call() -> Any:
        return stack.client.chat.completions.create(
            model=model_of(kind), messages=USER, extra_body={field: value}
        )

    assert_refused(stack, kind, chat_path(kind), call, field)


@pytest.mark.parametrize("kind", ["ollama", *OPENAI_KINDS[:-1]])
@pytest.mark.parametrize(("field", "value"), HOSTED_ONLY)
def test_fields_no_self_hosted_server_serves_are_400s(
    stack: Stack, kind: str, field: str, value: Any
) -> None:
    def call() -> Any:
        return stack.client.chat.completions.create(
            model=model_of(kind), messages=USER, extra_body={field: value}
        )

    assert_refused(stack, kind, chat_path(kind), call, field)


def test_the_generic_kind_passes_every_field_on(stack: Stack) -> None:
    reply = stack.client.chat.completions.create(
        model="openai-model", messages=USER, n=1, extra_body={"definitely_not_a_field": 1}
    )
    assert reply.choices[0].message.content == "Echo: hi you"
    assert stack.sent("openai", "/v1/chat/completions")[-1]["definitely_not_a_field"] == 1


@pytest.mark.parametrize(
    ("kind", "sent", "received"),
    [
        ("vllm", {"repeat_penalty": 1.2, "top_k": 5}, {"repetition_penalty": 1.2, "top_k": 5}),
        ("sglang", {"repeat_penalty": 1.2, "regex": "a+"}, {"repetition_penalty": 1.2}),
        ("llamacpp", {"repetition_penalty": 1.3, "cache_prompt": True}, {"repeat_penalty": 1.3}),
        ("lmstudio", {"repetition_penalty": 1.1, "ttl": 60}, {"repeat_penalty": 1.1, "ttl": 60}),
        ("localai", {"repetition_penalty": 1.1, "mirostat": 2}, {"repeat_penalty": 1.1}),
    ],
)
def test_extensions_arrive_in_the_servers_spelling(
    stack: Stack, kind: str, sent: dict[str, Any], received: dict[str, Any]
) -> None:
    reply = stack.client.chat.completions.create(
        model=model_of(kind), messages=USER, seed=3, temperature=0.5, extra_body=sent
    )
    assert reply.choices[0].message.content == "Echo: hi you"
    body = stack.sent(kind, "/v1/chat/completions")[-1]
    assert {k: body.get(k) for k in received} == received
    assert body["seed"] == 3 and body["temperature"] == 0.5
    renamed = set(sent) - set(received) - {k for k in sent if k in body}
    assert not renamed & set(body)  # the client's spelling is not sent as well


def test_ollama_gets_sampling_fields_as_options(stack: Stack) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    stack.client.chat.completions.create(
        model=OLLAMA_MODEL,
        messages=USER,
        seed=7,
        max_tokens=5,
        stop=["x"],
        tools=tools,  # type: ignore[arg-type]
        tool_choice="auto",
        response_format={"type": "json_object"},
        extra_body={"top_k": 7, "min_p": 0.1, "repetition_penalty": 1.2, "keep_alive": "1m"},
    )
    native = stack.sent("ollama", "/api/chat")[-1]
    options = native["options"]
    assert (options["seed"], options["num_predict"], options["stop"]) == (7, 5, ["x"])
    assert (options["top_k"], options["min_p"], options["repeat_penalty"]) == (7, 0.1, 1.2)
    assert native["tools"] == tools and native["format"] == "json"
    assert native["keep_alive"] == "1m"


# -- legacy completions ------------------------------------------------------------------------
COMPLETION_REFUSED: list[tuple[str, str, Any]] = [
    ("ollama", "n", 2),
    ("ollama", "best_of", 2),
    ("ollama", "logprobs", 2),
    ("ollama", "logit_bias", {"5": 1}),
    ("ollama", "echo", True),
    ("vllm", "suffix", "x"),
    ("sglang", "suffix", "x"),
    ("llamacpp", "n", 2),
    ("llamacpp", "suffix", "x"),
    ("llamacpp", "echo", True),
    ("lmstudio", "best_of", 2),
    ("lmstudio", "logprobs", 1),
    ("lmstudio", "echo", True),
    ("lmstudio", "suffix", "x"),
    ("tgi", "n", 2),
    ("tgi", "logit_bias", {"5": 1}),
    ("tgi", "echo", True),
    ("tgi", "suffix", "x"),
    ("localai", "best_of", 3),
    ("localai", "suffix", "x"),
]


@pytest.mark.parametrize(("kind", "field", "value"), COMPLETION_REFUSED)
def test_completion_values_a_kind_cannot_serve_are_400s(
    stack: Stack, kind: str, field: str, value: Any
) -> None:
    def call() -> Any:
        return stack.client.completions.create(
            model=model_of(kind), prompt="x", extra_body={field: value}
        )

    assert_refused(stack, kind, "/v1/completions", call, field)


@pytest.mark.parametrize("kind", ["ollama", "vllm", "llamacpp", "lmstudio", "localai", "openai"])
def test_legacy_completions_relay_streamed_and_not(stack: Stack, kind: str) -> None:
    reply = stack.client.completions.create(model=model_of(kind), prompt="hello there", seed=1)
    assert reply.choices[0].text == "Echo: hello there"
    chunks = stack.client.completions.create(model=model_of(kind), prompt="hi you", stream=True)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Echo: hi you"
    last = stack.sent(kind, "/v1/completions")[-1]
    assert last["stream"] is True and last["prompt"] == "hi you"


def test_a_kind_without_chat_answers_501(stack: Stack) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        stack.client.chat.completions.create(model="Systran/faster-whisper-small", messages=USER)
    assert info.value.status_code == 501
    assert stack.worker.popen.poll() is None
