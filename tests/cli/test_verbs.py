"""``pendra pull`` / ``list`` / ``ls`` / ``rm``: the same commands as ``pendra models …``, as real
processes against a loopback control plane serving the catalogue (no worker: they act directly)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.installs.install_rangeserver import RangeServer
from worker.catalogue import sample_catalogue_bytes
from worker.settings import BACKEND_KINDS


async def pendra(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def env(clean_env: dict[str, str], tiny_chat_gguf: Path) -> AsyncIterator[dict[str, str]]:
    document = json.loads(sample_catalogue_bytes())
    data = tiny_chat_gguf.read_bytes()
    document["models"].append(
        {
            "id": "tiny",
            "task": "chat",
            "variants": [
                {
                    "tag": "latest",
                    "backends": ["pendra"],
                    "size_bytes": len(data),
                    "gguf_url": "/files/tiny.gguf",
                    "gguf_sha256": hashlib.sha256(data).hexdigest(),
                }
            ],
        }
    )
    server = await RangeServer(catalogue=json.dumps(document).encode()).start()
    server.add("tiny.gguf", tiny_chat_gguf)
    yield {
        **clean_env,
        "PENDRA_API_URL": server.url,
        **{f"{kind.upper()}_ENDPOINT": "off" for kind in BACKEND_KINDS},
    }
    await server.stop()


async def test_pull_ls_and_rm_are_the_models_commands(env: dict[str, str]) -> None:
    code, out, err = await pendra(env, "pull", "tiny")  # a bare id is <id>:latest, as in Ollama
    assert code == 0, err
    assert out.strip() == "Installed tiny:latest into pendra (downloaded)."
    code, listed, err = await pendra(env, "ls", "--json")
    assert code == 0, err
    assert [r["id"] for r in json.loads(listed)] == ["tiny:latest"]
    for spelling in (("list", "--json"), ("models", "--json")):
        assert (await pendra(env, *spelling))[1] == listed
    code, out, err = await pendra(env, "rm", "tiny", "--json")
    assert code == 0, err
    assert json.loads(out)["ref"] == "tiny:latest"
    code, out, _ = await pendra(env, "ls")
    assert out.startswith("No models on any backend")


async def test_a_bare_id_the_catalogue_has_only_with_tags_lists_them(env: dict[str, str]) -> None:
    code, out, err = await pendra(env, "pull", "llama3.2")
    assert code == 1 and out == "" and "Traceback" not in err
    assert "llama3.2:latest is not in the catalogue" in err
    assert "llama3.2:1b, llama3.2:3b" in err


async def test_help_shows_both_kinds_of_ref(env: dict[str, str]) -> None:
    code, out, _ = await pendra(env, "pull", "--help")
    assert code == 0 and "hf.co/OWNER/REPO[:QUANT]" in out and "<id>:<tag>" in out
