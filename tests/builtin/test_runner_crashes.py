"""A model's runner dies; the worker does not. Through the real processes a user runs.

Each test starts ``pendra sandbox`` and ``pendra --no-ui``, talks to it with the official
``openai`` client through the sandbox, and breaks a model the way it breaks in the field: the
runner killed with ``kill -9`` mid-stream, the model file overwritten in place with ``cp``
(SIGBUS), a GGUF that makes llama.cpp abort. Every time, the request on that model gets
``model_crashed`` naming the signal, the worker keeps serving, and the next request works.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import openai
import pytest
from runner_stack import RunnerStack, process_alive, start_runner_stack

from worker.backends.pendra.runner import llama_unavailable

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

LONG = {"max_tokens": 4000, "temperature": 0}


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def gemma_stack(tmp_path: Path, clean_env: dict[str, str], gemma_gguf: Path, tiny_chat_gguf: Path):
    stack = start_runner_stack(tmp_path, clean_env, {"gemma": gemma_gguf, "tiny": tiny_chat_gguf})
    yield stack
    stack.close()


def _stream_until_error(stack: RunnerStack, model: str, on_first: callable) -> openai.APIError:
    stream = stack.client.chat.completions.create(
        model=model, messages=_user("Write a long story about a dog."), stream=True, **LONG
    )
    chunks = 0
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                chunks += 1
                if chunks == 2:
                    on_first()
    assert chunks >= 2, "the stream failed before it started"
    return info.value


def _error_code(error: openai.APIError) -> str | None:
    body = error.body if isinstance(error.body, dict) else {}
    return body.get("code") or (body.get("error") or {}).get("code")


def test_runner_killed_mid_stream(gemma_stack: RunnerStack) -> None:
    stack = gemma_stack
    assert stack.client.chat.completions.create(model="gemma", messages=_user("Hi"), max_tokens=2)
    pid = stack.runner_pid("gemma")
    assert pid != stack.worker.pid

    error = _stream_until_error(stack, "gemma", lambda: os.kill(pid, signal.SIGKILL))
    assert _error_code(error) == "model_crashed"
    assert "SIGKILL" in str(error)

    stack.assert_worker_alive()
    stack.wait_for(lambda: "gemma" not in stack.loaded(), "the dead runner to leave the status")
    again = stack.client.chat.completions.create(
        model="gemma", messages=_user("Hi"), max_tokens=3, temperature=0
    )
    assert again.choices[0].message.content is not None
    new_pid = stack.runner_pid("gemma")
    assert new_pid != pid and process_alive(new_pid)
    entry = stack.loaded()["gemma"]
    assert entry["crashes"] == 1 and entry["state"] == "ready"
    assert "died while serving: SIGKILL" in stack.worker.output()


def test_model_file_overwritten_in_place_with_cp(gemma_stack: RunnerStack) -> None:
    """``cp small.gguf loaded.gguf`` truncates the mapped file under the runner: SIGBUS kills
    the runner only, and the next request is served from the new file."""
    stack = gemma_stack
    target = stack.models_dir / "gemma.gguf"
    assert stack.client.chat.completions.create(model="gemma", messages=_user("Hi"), max_tokens=2)
    pid = stack.runner_pid("gemma")
    inode = target.stat().st_ino
    tiny = stack.models_dir / "tiny.gguf"

    def overwrite() -> None:
        subprocess.run(["cp", str(tiny), str(target)], check=True)

    error = _stream_until_error(stack, "gemma", overwrite)
    assert target.stat().st_ino == inode, "cp must have written in place"
    assert _error_code(error) == "model_crashed"
    assert "SIGBUS" in str(error)
    stack.assert_worker_alive()
    assert not process_alive(pid)

    # The file is now the tiny model: the next request loads it from the new bytes.
    answer = stack.client.chat.completions.create(
        model="gemma", messages=_user("Hi"), max_tokens=3, temperature=0
    )
    assert answer.usage is not None and answer.usage.completion_tokens <= 3
    entry = stack.loaded()["gemma"]
    assert entry["weights_bytes"] == tiny.stat().st_size
    assert entry["pid"] != pid


def test_model_file_replaced_while_idle_is_reloaded(gemma_stack: RunnerStack) -> None:
    """A file replaced by a rename (new inode) while loaded: the model reloads from it."""
    stack = gemma_stack
    assert stack.client.chat.completions.create(model="tiny", messages=_user("Hi"), max_tokens=2)
    before = stack.loaded()["tiny"]
    new = stack.models_dir / ".tiny.gguf.part"
    shutil.copy(stack.models_dir / "gemma.gguf", new)
    new.rename(stack.models_dir / "tiny.gguf")
    stack.wait_for(lambda: "tiny" not in stack.loaded(), "the replaced model to unload")
    # The model leaves the loaded list when its unload starts; its runner exits right after.
    stack.wait_for(lambda: not process_alive(before["pid"]), "the old runner to exit")
    assert stack.client.chat.completions.create(model="tiny", messages=_user("Hi"), max_tokens=2)
    after = stack.loaded()["tiny"]
    assert after["weights_bytes"] == (stack.models_dir / "gemma.gguf").stat().st_size
    assert after["weights_bytes"] != before["weights_bytes"]


def test_deleted_model_unloads_and_frees_its_slot(
    tmp_path: Path, clean_env: dict[str, str], tiny_chat_gguf: Path
) -> None:
    stack = start_runner_stack(
        tmp_path, clean_env, {"one": tiny_chat_gguf, "two": tiny_chat_gguf}, max_loaded_models="1"
    )
    try:
        assert stack.client.chat.completions.create(model="one", messages=_user("x"), max_tokens=1)
        pid = stack.runner_pid("one")
        (stack.models_dir / "one.gguf").unlink()
        stack.wait_for(lambda: "one" not in stack.loaded(), "the deleted model to unload")
        stack.wait_for(lambda: not process_alive(pid), "its runner to exit")
        with pytest.raises(openai.NotFoundError):
            stack.client.chat.completions.create(model="one", messages=_user("x"), max_tokens=1)
        # Its place under max_loaded_models is free: "two" loads without evicting anything.
        assert stack.client.chat.completions.create(model="two", messages=_user("x"), max_tokens=1)
        assert list(stack.loaded()) == ["two"]
    finally:
        stack.close()


def test_gguf_that_aborts_llama_cpp(
    tmp_path: Path, clean_env: dict[str, str], abort_gguf: Path, tiny_chat_gguf: Path
) -> None:
    """A GGUF whose header passes every check but trips a GGML_ASSERT inside llama.cpp."""
    stack = start_runner_stack(tmp_path, clean_env, {"hostile": abort_gguf, "tiny": tiny_chat_gguf})
    try:
        stream = stack.client.chat.completions.create(
            model="tiny", messages=_user("x"), stream=True, max_tokens=200, temperature=0
        )
        first = next(iter(stream))  # a stream on another model is in flight meanwhile
        with pytest.raises(openai.InternalServerError) as info:
            stack.client.chat.completions.create(model="hostile", messages=_user("x"), max_tokens=1)
        assert _error_code(info.value) == "model_crashed"
        message = str(info.value)
        assert "SIGABRT" in message and "GGML_ASSERT" in message
        assert first.choices and sum(1 for _ in stream) > 0  # the other stream finished
        stack.assert_worker_alive()
        again = stack.client.chat.completions.create(
            model="tiny", messages=_user("x"), max_tokens=2
        )
        assert again.choices
        assert "died while loading: SIGABRT" in stack.worker.output()
        # The CLI still talks to the worker.
        status = stack.cli("status")
        assert status.returncode == 0 and "tiny" in status.stdout
    finally:
        stack.close()


def test_runner_gets_the_scrubbed_environment(
    tmp_path: Path, clean_env: dict[str, str], tiny_chat_gguf: Path
) -> None:
    """A runner is a child of the worker like any other: no secret from the worker's
    environment reaches it, and its command line names only a file descriptor."""
    env = {**clean_env, "HF_TOKEN": "hf_secret_runner_test", "BILLING_API_KEY": "sk-secret-x"}
    stack = start_runner_stack(tmp_path, env, {"tiny": tiny_chat_gguf})
    try:
        stack.client.chat.completions.create(model="tiny", messages=_user("x"), max_tokens=1)
        pid = stack.runner_pid("tiny")
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"hf_secret_runner_test" not in environ and b"sk-secret-x" not in environ
        assert b"HF_TOKEN=" not in environ and b"BILLING_API_KEY=" not in environ
        assert b"PENDRA_HOME=" in environ  # the rest of the environment is there
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:5] == [b"-m", b"worker.backends.pendra.runner", b"--fd", cmdline[4]]
    finally:
        stack.close()


def test_llama_cpp_that_cannot_be_loaded_is_explained_not_a_crash(
    tmp_path: Path, clean_env: dict[str, str], tiny_chat_gguf: Path
) -> None:
    """llama.cpp's shared library missing from the environment (as when libgomp.so.1 or the CUDA
    runtime is absent on the host): the request says the built-in backend cannot run and what
    to do, with no traceback; the worker stays up and says so once in its log."""
    base = {**clean_env, "LLAMA_CPP_LIB_PATH": str(tmp_path / "no-llama-here")}
    stack = start_runner_stack(tmp_path, base, {"tiny": tiny_chat_gguf})
    try:
        with pytest.raises(openai.APIError) as info:
            stack.client.chat.completions.create(model="tiny", messages=_user("Hi"), max_tokens=2)
        assert _error_code(info.value) == "model_load_error"
        message = str(info.value)
        assert "llama.cpp could not be loaded" in message and "rerun get.sh" in message
        assert "Traceback" not in message and 'File "' not in message
        stack.assert_worker_alive()
        log = stack.worker.output()
        assert "llama.cpp could not be loaded" in log
        assert "Traceback" not in log and "died while" not in log
    finally:
        stack.close()


@pytest.mark.parametrize(
    ("error", "advice"),
    [
        (
            RuntimeError(
                "Failed to load shared library 'libllama.so': libgomp.so.1: cannot open shared "
                "object file: No such file or directory"
            ),
            "apt install libgomp1",
        ),
        (OSError("libcudart.so.12: cannot open shared object file"), "NVIDIA driver"),
        (FileNotFoundError("Shared library with base name 'llama' not found"), "rerun get.sh"),
    ],
)
def test_why_llama_cpp_cannot_load_names_the_fix(error: Exception, advice: str) -> None:
    explained = llama_unavailable(error)
    assert str(error) in explained.message
    assert advice in (explained.hint or "")
