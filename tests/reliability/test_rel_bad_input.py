"""Bad input: hostile model refs, hostile GGUF files, fuzzed catalogues, hostile backends.

Each gets a clear error and the worker (or the command) stays up. The GGUF and catalogue parsers
are fuzzed with hypothesis (bounded examples); the refs go through every entry point that takes
one — the ``pendra models`` CLI as a real process, the install manager, and the router behind the
real sandbox + link; the hostile backends are the project's emulators with their fault knobs.
"""

from __future__ import annotations

import contextlib
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import (
    chat_body,
    echo_of,
    start_sandbox,
    start_worker,
    stream_chat,
    unary_chat,
    wait_for,
)

from tests.emulators import EMULATORS, Faults, VllmEmulator
from tests.work_budget import within_budget
from worker.catalogue import Catalogue
from worker.catalogue.parse import CatalogueError, parse_catalogue
from worker.catalogue.refs import parse_ref
from worker.errors import BadRequest, PendraError
from worker.installs import InstallManager
from worker.modelstore import ModelStore
from worker.modelstore.gguf_header import GGUFHeaderError, parse_gguf_header
from worker.settings import load_settings

pytestmark = pytest.mark.timeout(120)

HOSTILE_REFS = [
    "../../etc/passwd:1",
    "..:..",
    "a:..",
    "/etc/passwd",
    "/abs/path:tag",
    "~root:x",
    "a\x00b:c",
    "gemma3:270m\x00",
    "x:y; rm -rf ~",
    "x:$(reboot)",
    "x:`id`",
    "x:y|sh",
    "x:y&&z",
    "x:y\nz",
    "a/b:c",
    "a\\b:c",
    "a:b:c",
    ".hidden:tag",
    "a:" + "b" * 200,
    "",
    "   ",
    "ｇemma:1",
]


# -- model refs ------


@pytest.mark.parametrize("ref", HOSTILE_REFS)
def test_hostile_refs_are_refused_with_a_reason(ref: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_ref(ref)
    assert caught.value.message.startswith("Invalid model ref")
    assert caught.value.hint


async def test_hostile_refs_into_install_and_uninstall_touch_nothing(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    victim = tmp_path / "victim.gguf"
    victim.write_bytes(b"GGUF precious")
    loads = 0

    async def load() -> Catalogue:
        nonlocal loads
        loads += 1
        return Catalogue(())

    settings = load_settings(
        {"PENDRA_HOME": str(tmp_path / "home"), "PENDRA_MODELS_DIR": str(models)}
    )
    manager = InstallManager(settings, catalogue_loader=load)
    try:
        for ref in [*HOSTILE_REFS, "../victim:gguf", "..%2fvictim:gguf"]:
            for call in (manager.start(ref), manager.uninstall(ref)):
                with pytest.raises(PendraError) as caught:
                    await call
                assert caught.value.message, ref
    finally:
        await manager.close()
    assert loads == 0, "a hostile ref reached the catalogue"
    assert victim.read_bytes() == b"GGUF precious"
    assert list(models.iterdir()) == []


@pytest.mark.parametrize("ref", ["../../etc/passwd:1", "x:$(touch /tmp/pwned)", "a\\b:c", "/etc"])
def test_models_cli_refuses_hostile_refs_without_a_traceback(
    ref: str, clean_env: dict[str, str]
) -> None:
    for args in (["models", "install", ref], ["models", "rm", ref]):
        done = subprocess.run(
            [sys.executable, "-m", "worker", *args],
            env={**clean_env, "PENDRA_API_URL": "http://127.0.0.1:9"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0
        assert "Traceback" not in done.stderr, done.stderr
        assert "Invalid model ref" in done.stderr, done.stderr
    assert not Path("/tmp/pwned").exists()


async def test_hostile_model_names_through_the_router_are_clear_404s() -> None:
    emulator = VllmEmulator(models=["ok-model"])
    await emulator.start()
    sandbox = await start_sandbox()
    running = await start_worker(sandbox, {"vllm": emulator.url}, {"ok-model"})
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for name in ["../ok-model", "/etc/passwd", "ok-model\x00", "$(id)", "x" * 5000, " "]:
                answer = await unary_chat(client, sandbox.url, name, "hi")
                assert answer.status_code in (400, 404), (name, answer.text)
                assert answer.json()["error"]["message"]
            still = await unary_chat(client, sandbox.url, "ok-model", "hi")
            assert still.status_code == 200
        assert not running.task.done()
    finally:
        await running.stop()
        await sandbox.stop()
        await emulator.stop()


# -- hostile GGUF headers ------


def _kv_string(key: str, value: bytes) -> bytes:
    k = key.encode()
    return (
        struct.pack("<Q", len(k)) + k + struct.pack("<I", 8) + struct.pack("<Q", len(value)) + value
    )


def _gguf(n_kv: int, body: bytes, n_tensors: int = 0, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + body


def _array(key: str, elem_type: int, length: int, payload: bytes = b"") -> bytes:
    k = key.encode()
    return (
        struct.pack("<Q", len(k))
        + k
        + struct.pack("<I", 9)
        + struct.pack("<IQ", elem_type, length)
        + payload
    )


ARCH = _kv_string("general.architecture", b"llama")
CRAFTED_GGUFS: dict[str, bytes] = {
    "wrong_magic": b"GGML" + bytes(60),
    "empty_after_magic": b"GGUF",
    "huge_kv_count": _gguf(2**63, ARCH),
    "huge_tensor_count": _gguf(1, ARCH, n_tensors=2**60),
    "huge_string_length": _gguf(
        2, ARCH + struct.pack("<Q", 4) + b"name" + struct.pack("<IQ", 8, 2**62) + b"abc"
    ),
    "huge_key_length": _gguf(1, struct.pack("<Q", 2**40) + b"k"),
    "huge_u8_array": _gguf(2, ARCH + _array("tokenizer.ggml.scores", 0, 2**62)),
    "huge_string_array": _gguf(2, ARCH + _array("tokenizer.ggml.tokens", 8, 2**61)),
    "nested_arrays_deep": _gguf(
        2, ARCH + _array("x", 9, 1, struct.pack("<IQ", 9, 1) * 10 + struct.pack("<IQ", 0, 0))
    ),
    "unknown_type": _gguf(2, ARCH + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 99)),
    "truncated": _gguf(3, ARCH),
    "bad_version": b"GGUF" + struct.pack("<IQQ", 99, 0, 0),
    "tensor_past_end": _gguf(1, ARCH, n_tensors=1)
    + struct.pack("<Q", 1)
    + b"t"
    + struct.pack("<I", 1)
    + struct.pack("<Q", 1 << 40)
    + struct.pack("<I", 0)
    + struct.pack("<Q", 0),
    "random_bytes": bytes(range(256)) * 4,
    "zero_bytes": b"",
}


@pytest.mark.parametrize("name", sorted(CRAFTED_GGUFS))
def test_hostile_gguf_headers_are_clear_errors_fast(name: str) -> None:
    data = CRAFTED_GGUFS[name]
    with pytest.raises(GGUFHeaderError) as caught:
        within_budget(lambda: parse_gguf_header(data), max_lines=5_000)  # no loop over claims
    assert str(caught.value)


def test_hostile_ggufs_in_the_modelstore_are_listed_as_unusable(tmp_path: Path) -> None:
    for name, data in CRAFTED_GGUFS.items():
        (tmp_path / f"{name}.gguf").write_bytes(data)
    models = within_budget(ModelStore(tmp_path).scan, max_lines=100_000)
    assert {m.id for m in models} == set(CRAFTED_GGUFS)
    for model in models:
        assert not model.usable and model.error, model


@pytest.fixture(scope="module")
def real_header(tiny_chat_gguf: Path) -> bytes:
    return tiny_chat_gguf.read_bytes()[:16384]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    flips=st.lists(st.tuples(st.integers(0, 16383), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.integers(0, 16384),
)
def test_mutated_real_headers_never_escape_the_parser(
    real_header: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(real_header)
    for offset, value in flips:
        data[offset] = value
    with contextlib.suppress(GGUFHeaderError):  # the whole real header takes ~4,000 lines
        within_budget(lambda: parse_gguf_header(bytes(data[:cut])), max_lines=200_000)


# -- catalogue ------

GOOD_ENTRY: dict[str, Any] = {
    "id": "tiny",
    "name": "Tiny",
    "task": "chat",
    "variants": [
        {
            "tag": "1m",
            "context_length": 512,
            "size_bytes": 1000,
            "backends": ["pendra", "ollama"],
            "gguf_url": "/files/tiny.gguf",
            "gguf_sha256": "a" * 64,
            "ollama_tag": "tiny:1m",
        }
    ],
}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def mutated_catalogues(draw: st.DrawFn) -> Any:
    entry = json.loads(json.dumps(GOOD_ENTRY))
    variant = entry["variants"][0]
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from([entry, variant]))
        key = draw(st.sampled_from([*sorted(target), "extra"]))
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(json_values)
    doc: Any = {"version": 1, "models": [GOOD_ENTRY, entry]}
    if draw(st.integers(0, 9)) == 0:
        doc = draw(json_values)
    return doc


@settings(max_examples=300, deadline=None)
@given(doc=mutated_catalogues())
def test_fuzzed_catalogues_skip_bad_entries_and_keep_good_ones(doc: Any) -> None:
    try:
        parsed = parse_catalogue(doc)
    except CatalogueError as exc:
        assert exc.message
        return
    ids = [m.id for m in parsed.models]
    assert "tiny" in ids
    for model in parsed.models:
        for variant in model.variants:
            if variant.gguf_sha256 is not None:
                assert len(variant.gguf_sha256) == 64
            if variant.gguf_url is not None:
                assert variant.gguf_url.startswith(("/", "https://", "http://"))


GOOD_API_ENTRY: dict[str, Any] = {
    "id": "tiny:1m",
    "name": "Tiny 1M",
    "backend": "both",
    "capability": "chat",
    "parameter_size": "1M",
    "context_length": 512,
    "licence": "apache-2.0",
    "variants": [
        {
            "quantisation": "Q4_K_M",
            "size_bytes": 1000,
            "gguf_url": "/files/tiny.gguf",
            "gguf_sha256": "a" * 64,
            "ollama_tag": "tiny:1m",
        }
    ],
}


@st.composite
def mutated_api_catalogues(draw: st.DrawFn) -> Any:
    """The API's shape (``{"data": [...]}``): a good entry and a mutated copy under another tag."""
    entry = json.loads(json.dumps({**GOOD_API_ENTRY, "id": "tiny:2m"}))
    variant = entry["variants"][0]
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from([entry, variant]))
        key = draw(st.sampled_from([*sorted(target), "extra", "hf_repo", "hf_file", "backend"]))
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(json_values)
    doc: Any = {"data": [GOOD_API_ENTRY, entry]}
    if draw(st.integers(0, 9)) == 0:
        doc = {"data": draw(json_values)}
    return doc


@settings(max_examples=300, deadline=None)
@given(doc=mutated_api_catalogues())
def test_fuzzed_api_catalogues_skip_bad_entries_and_keep_good_ones(doc: Any) -> None:
    try:
        parsed = parse_catalogue(doc)
    except CatalogueError as exc:
        assert exc.message
        return
    entries = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or GOOD_API_ENTRY not in entries:
        return  # junk: not raising was the point
    tiny = next(m for m in parsed.models if m.id == "tiny")
    good = tiny.variant("1m")
    assert good is not None and good.installs_into_pendra and good.gguf_sha256 == "a" * 64
    for model in parsed.models:
        for variant in model.variants:
            if variant.gguf_url is not None:
                assert variant.gguf_url.startswith(("/", "https://", "http://"))


# -- hostile backends ------


async def test_hostile_backend_responses_are_clear_errors_and_the_worker_stays_up() -> None:
    """Endless stream, a body that is not JSON, a 10 MB SSE line: three backends, one worker."""
    endless = VllmEmulator(models=["endless"], faults=Faults(endless=True, chunk_delay_s=0.001))
    broken = EMULATORS["sglang"](models=["broken"], faults=Faults(invalid_json=True))
    huge = EMULATORS["localai"](models=["huge"], faults=Faults(huge_line_bytes=10 * 1024 * 1024))
    for emu in (endless, broken, huge):
        await emu.start()
    sandbox = await start_sandbox()
    running = await start_worker(
        sandbox,
        {"vllm": endless.url, "sglang": broken.url, "localai": huge.url},
        {"endless", "broken", "huge"},
    )
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            # Endless: bounded by the client, who hangs up after 200 chunks; the worker must close
            # the backend's stream (so it stops generating) and free the request.
            result = await stream_chat(
                client, sandbox.url, chat_body("endless", "go"), max_chunks=200
            )
            assert result.chunks == 200 and result.error is None
            await wait_for(lambda: endless.disconnects >= 1, "the backend stream to be closed")
            await wait_for(
                lambda: running.worker.router.counters().in_flight == 0, "the request to end"
            )

            # Not JSON: a 502-class error naming the backend, for a plain and a streamed chat.
            plain = await unary_chat(client, sandbox.url, "broken", "hi")
            assert plain.status_code == 502, plain.text
            assert "sglang" in plain.json()["error"]["message"]
            streamed = await stream_chat(client, sandbox.url, chat_body("broken", "hi"))
            assert streamed.error is not None or streamed.status >= 400, streamed
            assert not streamed.done

            # A 10 MB line is under the 32 MiB line limit: relayed whole, exactly.
            big = await stream_chat(client, sandbox.url, chat_body("huge", "hi there"))
            assert big.error is None and big.done, big.error
            assert len(big.text) == len(echo_of("hi there")) + 10 * 1024 * 1024

            # And the worker still serves normally.
            fine = await unary_chat(client, sandbox.url, "endless", "x")
            assert fine.status_code == 200, fine.text
        assert not running.task.done()
        assert running.worker.router.counters().in_flight == 0
    finally:
        await running.stop()
        await sandbox.stop()
        for emu in (endless, broken, huge):
            await emu.stop()
