"""Private inference end to end with the official SDK and the real Gemma 3 270M, as a user runs it.

``pendra sandbox`` and ``pendra --no-ui`` run as processes; the client is the official ``pendra``
SDK with ``private_inference`` on. Between them sit recording proxies on both legs of the control
plane (client → sandbox and worker → sandbox), and for the tamper tests a relay that alters what the
control plane sends back. Nothing is mocked: the workload key, the link, the llama.cpp backend and
the SDK's own crypto are all real.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pendra
import pytest
from cryptography.exceptions import InvalidTag
from relay_proxies import (
    RecordingProxy,
    TamperingRelay,
    drop_last_sealed_frame,
    flip_second_sealed_frame,
    inject_unsealed_chunk,
)

from tests.admin.admin_status_schema import check_status_document
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

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

GEMMA = "gemma-3-270m"
EMBED = "tiny-embed"
RUN = 12
"""The length of completion runs that must not appear anywhere the control plane could read."""


def _clean_environ(home: Path) -> dict[str, str]:
    from tests.conftest import _LEAKY_VARS

    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_VARS}
    env["PENDRA_HOME"] = str(home)
    return env


def pendra_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@dataclass
class Worker:
    proc: Proc
    env: dict[str, str]
    home: Path

    def workload_key(self) -> dict[str, object]:
        result = pendra_cli(self.env, "key", "workload", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def status(self) -> dict[str, object]:
        result = pendra_cli(self.env, "status", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


class Stack:
    """A sandbox and ``workers`` Gemma workers (each with its own worker key, so its own workload
    key), every worker dialling through ``worker_leg`` and clients through ``client_leg``."""

    def __init__(self, root: Path, gemma: Path, embed: Path, workers: int = 1) -> None:
        from worker.keys import generate_key, write_key_file

        self.root = root
        self.logs = root / "logs"
        self.models = root / "models"
        self.models.mkdir(parents=True)
        (self.models / f"{GEMMA}.gguf").symlink_to(gemma)
        (self.models / f"{EMBED}.gguf").symlink_to(embed)
        key_files = [root / f"worker-{i}.key" for i in range(workers)]
        for extra in key_files[1:]:
            write_key_file(extra, generate_key())
        accept = [arg for path in key_files[1:] for arg in ("--accept-key", str(path))]
        sandbox_env = {**_clean_environ(root / "sandbox-home"), "PENDRA_LOG_LEVEL": "debug"}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_leg = RecordingProxy(self.port)
        self.worker_leg = RecordingProxy(self.port)
        # The workers dial the recording proxy: it is a URL the control plane serves, so their
        # signed handshakes name it (docs/protocol.md, "Handshake and authentication").
        public = ("--public-url", self.url, "--public-url", self.worker_leg.url)
        self.sandbox = start_sandbox_proc(
            sandbox_env, self.logs, self.port, key_files[0], *accept, *public
        )
        self.workers: list[Worker] = []
        for i, key_file in enumerate(key_files):
            home = root / f"worker-home-{i}"
            home.mkdir()
            env = worker_env(_clean_environ(home), self.worker_leg.url, key_file, self.models)
            env["PENDRA_LOG_LEVEL"] = "debug"
            self.workers.append(
                Worker(spawn(["--no-ui"], env, self.logs, f"worker-{i}"), env, home)
            )

    def restart(self, worker: Worker) -> None:
        worker.proc = spawn(["--no-ui"], worker.env, self.logs, f"worker-again-{id(worker)}")
        self.wait_until_ready()

    def wait_until_ready(self) -> None:
        for worker in self.workers:
            wait_for_models(self.url, {GEMMA, EMBED}, worker.proc, timeout_s=120)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            keys = httpx.get(self.url + "/v1/private-inference/key", headers=AUTH, timeout=5)
            if keys.status_code == 200 and len(keys.json()["keys"]) == len(self.workers):
                return
            time.sleep(0.05)
        raise AssertionError("the workers did not register their workload keys")

    def sdk(self, base_url: str | None = None, **private: object) -> pendra.Pendra:
        options = {"tofu_path": str(self.root / "known_org_keys.json"), **private}
        return pendra.Pendra(
            api_key=API_KEY,
            base_url=base_url or self.client_leg.url,
            timeout=120,
            private_inference=options,
        )

    def close(self) -> None:
        for worker in self.workers:
            worker.proc.kill()
        self.sandbox.kill()
        self.client_leg.close()
        self.worker_leg.close()


AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, gemma_gguf: Path, tiny_embed_gguf: Path
) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("private"), gemma_gguf, tiny_embed_gguf)
    try:
        s.wait_until_ready()
        yield s
    finally:
        s.close()


def _runs(text: str, n: int = RUN) -> set[str]:
    """Every ``n``-character run of ``text``, except runs of blanks alone (they say nothing, and a
    log line's column padding could hold one)."""
    return {text[i : i + n] for i in range(len(text) - n + 1) if text[i : i + n].strip()}


def _leaks(haystack: bytes, secrets: list[str]) -> list[str]:
    """The secrets (whole prompts, or completion runs) found in ``haystack``, as UTF-8 or as JSON
    would escape them."""
    found = []
    for secret in secrets:
        forms = {secret.encode(), json.dumps(secret)[1:-1].encode()}
        if any(form in haystack for form in forms):
            found.append(secret)
    return found


def _files_under(*roots: Path) -> bytes:
    out = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    out.append(path.read_bytes())
    return b"\n".join(out)


CHAT = {"temperature": 0.0, "seed": 7, "max_tokens": 40}


def test_private_chat_stream_and_embeddings_show_the_control_plane_nothing(
    stack: Stack,
) -> None:
    worker = stack.workers[0]
    prompts = [
        "Write three sentences about the lighthouse keeper of Quillinghurst Point.",
        "Describe the orchards of Vantermoor Abbey in early autumn.",
        "The tide tables of Brindlewick harbour",
    ]
    client = stack.sdk()
    reply = client.chat.completions.create(
        model=GEMMA, messages=[{"role": "user", "content": prompts[0]}], **CHAT
    )
    unary = reply.choices[0].message.content or ""
    assert reply.pendra.worker.id == worker.status()["worker"]["worker_id"]

    with client.chat.completions.create(
        model=GEMMA, messages=[{"role": "user", "content": prompts[1]}], stream=True, **CHAT
    ) as stream:
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert stream.worker is not None and stream.worker.id == reply.pendra.worker.id

    emb = client.embeddings.create(model=EMBED, input=prompts[2])
    assert len(emb.data) == 1 and len(emb.data[0].embedding) > 8

    for text in (unary, streamed):
        assert len(text) >= RUN, f"Gemma's answer is too short to check: {text!r}"
    completion_runs = sorted(_runs(unary) | _runs(streamed))
    secrets = [*prompts, *completion_runs]
    for leg in (stack.client_leg, stack.worker_leg):
        seen = leg.readable()
        assert b"pendra_encrypted" in seen  # the legs did carry the requests…
        assert _leaks(seen, secrets) == []  # …and nothing of what they said
    assert b"permessage-deflate" not in stack.worker_leg.readable()  # frames recorded as sent

    # Positive control: the same recorders see a plaintext request in full on both legs.
    plain_prompt = "Name the bells of Orrowdene cathedral."
    plain_client = pendra.Pendra(
        api_key=API_KEY, base_url=stack.client_leg.url, timeout=120, private_inference=False
    )
    plain = plain_client.chat.completions.create(
        model=GEMMA, messages=[{"role": "user", "content": plain_prompt}], **CHAT
    )
    plain_text = plain.choices[0].message.content or ""
    assert len(plain_text) >= RUN
    for leg in (stack.client_leg, stack.worker_leg):
        assert _leaks(leg.readable(), [plain_prompt, plain_text[:RUN]]) == [
            plain_prompt,
            plain_text[:RUN],
        ]
    assert {m.id for m in plain_client.models.list()} >= {GEMMA, EMBED}

    # The decrypted text lived in the worker's memory only: not in its logs (at DEBUG), its
    # status, the dashboard's events or any file it wrote; nor in the sandbox's output.
    status = worker.status()
    assert check_status_document(status) == []
    private = status["worker"]["private_inference"]
    assert private["served"] >= 3 and private["failed"] == 0
    everything = (
        worker.proc.output().encode()
        + stack.sandbox.output().encode()
        + json.dumps(status).encode()
        + _files_under(worker.home, stack.root / "sandbox-home", stack.logs)
    )
    assert b"DEBUG" in everything  # the logs really were at DEBUG
    assert _leaks(everything, [*secrets, plain_prompt, *_runs(plain_text)]) == []
    client.close()
    plain_client.close()


def test_a_pinned_fingerprint_that_matches_and_one_that_does_not(stack: Stack) -> None:
    worker = stack.workers[0]
    key = worker.workload_key()
    assert key["worker_running"] is True and len(str(key["fingerprint"])) == 64
    pinned = stack.sdk(pinned_fingerprint=str(key["fingerprint"]))
    reply = pinned.chat.completions.create(
        model=GEMMA, messages=[{"role": "user", "content": "Say hello."}], max_tokens=4
    )
    assert reply.choices[0].message.content is not None
    served = worker.status()["worker"]["private_inference"]["served"]

    wrong = stack.sdk(pinned_fingerprint="0" * 64)
    with pytest.raises(Exception, match="pinned fingerprint") as caught:
        wrong.chat.completions.create(
            model=GEMMA, messages=[{"role": "user", "content": "Say hello."}], max_tokens=4
        )
    assert type(caught.value).__name__ == "PrivateInferenceError"
    assert worker.status()["worker"]["private_inference"]["served"] == served  # nothing sent
    pinned.close()
    wrong.close()


def test_a_tampering_relay_is_caught_by_the_sdk(stack: Stack) -> None:
    relay = TamperingRelay(stack.url)
    client = stack.sdk(base_url=relay.url)
    messages = [{"role": "user", "content": "Count to five."}]
    try:
        # The relay itself is transparent until told otherwise.
        reply = client.chat.completions.create(model=GEMMA, messages=messages, max_tokens=8)
        assert reply.choices[0].message.content

        relay.flip_unary = True
        with pytest.raises(InvalidTag):
            client.chat.completions.create(model=GEMMA, messages=messages, max_tokens=8)
        relay.flip_unary = False

        relay.stream_transform = flip_second_sealed_frame
        with pytest.raises(InvalidTag):
            list(
                client.chat.completions.create(
                    model=GEMMA, messages=messages, stream=True, max_tokens=8
                )
            )

        relay.stream_transform = drop_last_sealed_frame
        with pytest.raises(ValueError, match="truncated"):
            list(
                client.chat.completions.create(
                    model=GEMMA, messages=messages, stream=True, max_tokens=8
                )
            )

        relay.stream_transform = inject_unsealed_chunk
        with pytest.raises(ValueError, match="refusing an unencrypted chunk"):
            list(
                client.chat.completions.create(
                    model=GEMMA, messages=messages, stream=True, max_tokens=8
                )
            )
    finally:
        client.close()
        relay.close()


def test_two_workers_with_their_own_keys_either_serves(
    tmp_path: Path, gemma_gguf: Path, tiny_embed_gguf: Path
) -> None:
    s = Stack(tmp_path / "two", gemma_gguf, tiny_embed_gguf, workers=2)
    try:
        s.wait_until_ready()
        kids = {str(w.workload_key()["fingerprint"]) for w in s.workers}
        assert len(kids) == 2
        client = s.sdk()
        first = client.chat.completions.create(
            model=GEMMA, messages=[{"role": "user", "content": "Hello there."}], max_tokens=4
        )
        # The client sealed to both keys; stop whichever worker answered, the other one serves.
        assert len(client._private_inference_engine.cached_org_public_keys()) == 2
        served_by = first.pendra.worker.id
        ids = [w.status()["worker"]["worker_id"] for w in s.workers]
        gone = s.workers[ids.index(served_by)]
        assert stop(gone.proc) == 0
        second = client.chat.completions.create(
            model=GEMMA, messages=[{"role": "user", "content": "Hello again."}], max_tokens=4
        )
        assert second.pendra.worker.id != served_by and second.choices[0].message.content
        client.close()
    finally:
        s.close()


def test_sigterm_during_a_private_stream_finishes_it(stack: Stack) -> None:
    """Draining covers private requests like any other; the worker then starts again with the
    same workload key."""
    worker = stack.workers[0]
    fingerprint = worker.workload_key()["fingerprint"]
    client = stack.sdk()
    with client.chat.completions.create(
        model=GEMMA,
        messages=[{"role": "user", "content": "Tell a story."}],
        stream=True,
        max_tokens=48,
    ) as stream:
        chunks = iter(stream)
        next(chunks)
        worker.proc.signal(signal.SIGTERM)
        rest = list(chunks)
    assert rest and stream.worker is not None
    assert worker.proc.wait(60) == 0
    stack.restart(worker)
    assert worker.workload_key()["fingerprint"] == fingerprint
    reply = client.chat.completions.create(
        model=GEMMA, messages=[{"role": "user", "content": "Back again?"}], max_tokens=4
    )
    assert reply.choices[0].message.content is not None
    client.close()
