"""``pendra models …`` and ``pendra catalogue`` as real subprocesses against a loopback server
that plays the control plane (catalogue + files). No worker runs, so they act directly."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from install_rangeserver import RangeServer, make_blob

from worker.catalogue import sample_catalogue_bytes
from worker.installs.download import partial_path

SIZE = 4 * 1024 * 1024 + 99
FILE = "tiny-1m.Q4_K_M.gguf"


def catalogue_doc(sha: str, size: int = SIZE) -> bytes:
    doc: dict[str, Any] = json.loads(sample_catalogue_bytes())
    doc["models"].append(
        {
            "id": "tiny",
            "name": "Tiny",
            "task": "chat",
            "variants": [
                {
                    "tag": "1m",
                    "parameters": "1M",
                    "quantisation": "Q4_K_M",
                    "context_length": 512,
                    "size_bytes": size,
                    "backends": ["pendra"],
                    "gguf_url": f"/files/{FILE}",
                    "gguf_sha256": sha,
                }
            ],
        }
    )
    return json.dumps(doc).encode()


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[tuple[RangeServer, Path]]:
    source = tmp_path / "tiny.gguf"
    sha = make_blob(source, SIZE)
    srv = await RangeServer(catalogue=catalogue_doc(sha)).start()
    srv.add(FILE, source)
    yield srv, source
    await srv.stop()


async def pendra(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
def env(clean_env: dict[str, str], plane: tuple[RangeServer, Path]) -> dict[str, str]:
    clean_env["PENDRA_API_URL"] = plane[0].url
    for kind in (
        "OLLAMA",
        "LMSTUDIO",
        "SPEACHES",
        "VLLM",
        "LLAMACPP",
        "TGI",
        "SGLANG",
        "LOCALAI",
        "OPENAI",
    ):
        clean_env[f"{kind}_ENDPOINT"] = "off"  # never probe the developer's real backends
    return clean_env


async def test_install_list_and_rm(
    env: dict[str, str], plane: tuple[RangeServer, Path], pendra_home: Path
) -> None:
    _, source = plane
    code, out, err = await pendra(env, "models", "install", "tiny:1m", "--json")
    assert code == 0, err
    job = json.loads(out)
    assert job["phase"] == "done" and job["ref"] == "tiny:1m" and job["backend"] == "pendra"
    installed = pendra_home / "models" / FILE
    assert installed.read_bytes() == source.read_bytes()
    assert "downloading" in err  # progress went to stderr, not stdout

    code, out, _ = await pendra(env, "models", "dir")
    assert code == 0 and out.strip() == str(pendra_home / "models")

    code, out, err = await pendra(env, "models", "rm", "tiny:1m", "--json")
    assert code == 0, err
    assert json.loads(out)["backend"] == "pendra"
    assert not installed.exists()

    code, out, err = await pendra(env, "models", "rm", "tiny:1m")
    assert code != 0 and "not installed" in err and "Traceback" not in err


async def test_kill_9_then_rerun_resumes_and_verifies(
    env: dict[str, str], plane: tuple[RangeServer, Path], pendra_home: Path
) -> None:
    server, source = plane
    server.files[FILE].delay_per_chunk_s = 0.05  # slow enough to kill it mid-way
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "models",
        "install",
        "tiny:1m",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    part = partial_path(pendra_home / "models" / FILE)
    for _ in range(400):
        if part.exists() and part.stat().st_size > 600_000:
            break
        await asyncio.sleep(0.025)
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    have = part.stat().st_size
    assert 0 < have < SIZE
    assert not (pendra_home / "models" / FILE).exists()

    server.files[FILE].delay_per_chunk_s = 0
    code, _, err = await pendra(env, "models", "install", "tiny:1m", "--json")
    assert code == 0, err
    assert server.requests[-1]["Range"].startswith("bytes=")
    resumed_at = int(server.requests[-1]["Range"][6:-1])
    assert resumed_at >= have
    assert (pendra_home / "models" / FILE).read_bytes() == source.read_bytes()
    assert sorted(p.name for p in (pendra_home / "models").iterdir()) == [FILE, FILE + ".meta.json"]


async def test_failures_exit_non_zero_with_a_clear_message(env: dict[str, str]) -> None:
    code, out, err = await pendra(env, "models", "install", "../../etc:passwd")
    assert code != 0 and out == "" and "Invalid model ref" in err and "Traceback" not in err
    code, _, err = await pendra(env, "models", "install", "tiny:9b")
    assert code != 0 and "not in the catalogue" in err and "tiny:1m" in err
    code, _, err = await pendra(env, "models", "install", "whisper:tiny")
    assert code != 0 and "speaches" in err and "Traceback" not in err


async def test_catalogue_table_and_json(
    env: dict[str, str], plane: tuple[RangeServer, Path]
) -> None:
    code, out, err = await pendra(env, "catalogue")
    assert code == 0, err
    assert "gemma3:270m" in out and "tiny:1m" in out and "FIT" in out
    code, out, err = await pendra(env, "catalogue", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["cached"] is False
    tiny = next(m for m in doc["models"] if m["id"] == "tiny")
    assert tiny["variants"][0]["fit"]["verdict"] in {"gpu", "partial", "cpu", "no"}
    assert {
        "cached",
        "age_s",
        "source_url",
        "stale_reason",
        "warnings",
        "machine",
        "models",
    } <= set(doc)

    await plane[0].stop()  # offline now: the cached copy is shown and marked
    code, out, err = await pendra(env, "catalogue")
    assert code == 0, err
    assert out.startswith("(cached copy,") and "gemma3:270m" in out
    code, out, _ = await pendra(env, "catalogue", "--json")
    assert json.loads(out)["cached"] is True


async def test_models_lists_what_the_builtin_backend_serves(
    env: dict[str, str], tiny_chat_gguf: Path
) -> None:
    # A real (tiny, random-weight) GGUF, so the built-in backend classifies it as a chat model.
    data = tiny_chat_gguf.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    srv = await RangeServer(catalogue=catalogue_doc(sha, len(data))).start()
    try:
        srv.add(FILE, tiny_chat_gguf)
        env = {**env, "PENDRA_API_URL": srv.url}
        assert (await pendra(env, "models", "install", "tiny:1m"))[0] == 0
        code, out, err = await pendra(env, "models", "--json")
        assert code == 0, err
        rows = json.loads(out)
        row = next(r for r in rows if r["backend"] == "pendra" and r["id"] == "tiny:1m")
        assert row["task"] == "chat" and row["context_length"] == 512
        code, out, err = await pendra(env, "models")
        assert code == 0 and "tiny:1m" in out and "pendra" in out
    finally:
        await srv.stop()
