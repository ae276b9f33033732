"""``pendra ps`` and ``pendra show``: the pure parts, and the real command against a real Ollama
emulator and a real modelstore (no worker running: they act directly)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.emulators.ollama import OllamaEmulator, OllamaModel
from worker.cli.ps import ROW_KEYS, parse_time, render, rows_from_builtin, rows_from_ollama_ps
from worker.modelstore.naming import sidecar_path
from worker.modelstore.sidecar import Sidecar, write_sidecar
from worker.settings import BACKEND_KINDS

NEW_FORM = {
    "name": "pendra",
    "models": [{"id": "gemma3:270m", "context_length": 32768}],
    "loaded": [
        {
            "id": "gemma3:270m",
            "pid": 4242,
            "state": "ready",
            "weights_bytes": 250_000_000,
            "kv_type": "f16",
            "kv_tokens": 8192,
            "kv_bytes": 50_000_000,
            "kv_tokens_in_use": 300,
            "context_length": 8192,
            "slots": 4,
            "slots_in_use": 0,
            "queued": 0,
            "idle_unload_in_s": 272.5,
        }
    ],
}


def test_builtin_rows_in_the_new_and_the_old_form() -> None:
    (row,) = rows_from_builtin(NEW_FORM)
    assert set(row) == set(ROW_KEYS)
    assert row["memory_bytes"] == 300_000_000 and row["pid"] == 4242
    assert (row["slots"], row["slots_in_use"], row["idle_unload_in_s"]) == (4, 0, 272.5)
    table = render([row], "the running worker")
    assert "gemma3:270m" in table and "0/4" in table and "in 4m 32s" in table
    assert "KV" in table and "(the running worker)" in table

    old = {"name": "pendra", "models": NEW_FORM["models"], "loaded": ["gemma3:270m", 7]}
    (row,) = rows_from_builtin(old)  # a bare id (the form before); junk ignored
    assert row["id"] == "gemma3:270m" and row["context_length"] == 32768
    assert row["memory_bytes"] is None
    assert "serving" in render([{**row, "slots_in_use": 1}], "x")


def test_ollama_ps_rows() -> None:
    now = 1_717_500_000.0
    document = {
        "models": [
            {
                "name": "llama3.2:latest",
                "size": 3_000_000_000,
                "size_vram": 1_500_000_000,
                "expires_at": "2024-06-04T11:25:00.123456789Z",
                "context_length": 8192,
            },
            {"name": "forever:latest", "size": 10, "expires_at": "2318-01-01T00:00:00-07:00"},
        ]
    }
    first, second = rows_from_ollama_ps("ollama", document, now=now)
    assert first["idle_unload_in_s"] == pytest.approx(
        parse_time("2024-06-04T11:25:00Z") - now, abs=1
    )
    assert first["memory_bytes"] == 3_000_000_000 and first["vram_bytes"] == 1_500_000_000
    table = render([first, second], "x")
    assert "50% GPU" in table and "forever" in table
    (speaches,) = rows_from_ollama_ps("speaches", {"models": ["Systran/faster-whisper-small"]})
    assert speaches["id"] == "Systran/faster-whisper-small"
    assert parse_time("not a time") is None and parse_time(None) is None


async def pendra(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def offline_env(clean_env: dict[str, str]) -> dict[str, str]:
    return {**clean_env, **{f"{kind.upper()}_ENDPOINT": "off" for kind in BACKEND_KINDS}}


async def test_ps_asks_ollama_what_it_has_loaded(clean_env: dict[str, str]) -> None:
    async with OllamaEmulator([OllamaModel("llama3.2:latest"), OllamaModel("qwen3:8b")]) as ollama:
        assert isinstance(ollama, OllamaEmulator)
        ollama.loaded["qwen3:8b"] = (time.time() + 240, 4_000_000_000)
        env = {**offline_env(clean_env), "OLLAMA_ENDPOINT": ollama.url}
        code, out, err = await pendra(env, "ps", "--json")
        assert code == 0, err
        (row,) = json.loads(out)
        assert (row["backend"], row["id"], row["context_length"]) == ("ollama", "qwen3:8b", 8192)
        assert 200 < row["idle_unload_in_s"] <= 240
        code, out, err = await pendra(env, "ps")
        assert code == 0 and "qwen3:8b" in out and "no worker running" in out
        assert "/api/ps" in ollama.paths("GET")


async def test_ps_with_nothing_loaded(clean_env: dict[str, str]) -> None:
    code, out, err = await pendra(offline_env(clean_env), "ps")
    assert code == 0, err
    assert out.startswith("No model is loaded")


async def test_show_a_hand_dropped_model_its_template_and_verify(
    clean_env: dict[str, str], pendra_home: Path, tiny_chat_gguf: Path
) -> None:
    models = pendra_home / "models"
    models.mkdir()
    dropped = models / "tiny-chat.gguf"
    shutil.copyfile(tiny_chat_gguf, dropped)
    env = offline_env(clean_env)

    code, out, err = await pendra(env, "show", "tiny-chat", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert (info["id"], info["backend"], info["architecture"]) == ("tiny-chat", "pendra", "llama")
    assert info["task"] == "chat" and info["context_length"] == 512
    assert info["quantisation"] == "F32" and info["parameter_count"] > 100_000
    assert info["vocab_size"] > 256 and info["embedding_length"] == 64
    assert info["sha256"] is None and info["source"] == "header"

    code, out, _ = await pendra(env, "show", "tiny-chat.gguf")
    assert code == 0 and "not recorded" in out and "Template" in out
    code, out, _ = await pendra(env, "show", "tiny-chat", "--template")
    assert code == 0 and out.startswith("{% for message in messages %}")

    real = hashlib.sha256(dropped.read_bytes()).hexdigest()
    write_sidecar(sidecar_path(dropped), Sidecar(ref="tiny:chat", sha256=real))
    code, out, err = await pendra(env, "show", "tiny:chat", "--verify", "--json")
    assert code == 0, err
    assert json.loads(out)["verified"] is True
    write_sidecar(sidecar_path(dropped), Sidecar(ref="tiny:chat", sha256="0" * 64))
    code, out, _ = await pendra(env, "show", "tiny:chat", "--verify")
    assert code == 1 and "MISMATCH" in out

    code, out, err = await pendra(env, "show", "nothing:here")
    assert code == 1 and out == "" and "not installed" in err and "Traceback" not in err
