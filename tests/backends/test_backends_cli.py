"""``pendra backends --json`` as a subprocess, with the environment pointing at running emulators
(explicit endpoints, every other kind disabled, so nothing on this machine is probed)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from tests.emulators import LlamaCppEmulator, OllamaEmulator, SpeachesEmulator, VllmEmulator
from worker.settings import BACKEND_KINDS

ROOT = Path(__file__).resolve().parents[2]


async def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "backends",
        *args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return subprocess.CompletedProcess(args, process.returncode or 0, out.decode(), err.decode())


async def test_backends_json_lists_running_emulators(clean_env: dict[str, str]) -> None:
    async with (
        OllamaEmulator() as ollama,
        VllmEmulator() as vllm,
        SpeachesEmulator() as speaches,
        LlamaCppEmulator() as llama,
    ):
        env = {**clean_env, "PENDRA_BUILTIN": "false"}
        env.update({f"{k.upper()}_ENDPOINT": "off" for k in BACKEND_KINDS})
        env["OLLAMA_ENDPOINT"] = ollama.url
        env["VLLM_ENDPOINT"] = vllm.url
        env["SPEACHES_ENDPOINT"] = speaches.url
        env["LMSTUDIO_ENDPOINT"] = llama.url  # a llama-server where LM Studio was promised
        result = await run_cli(env, "--json")
        assert result.returncode == 0, result.stderr
        rows = {row["name"]: row for row in json.loads(result.stdout)}
        assert set(rows) >= set(BACKEND_KINDS)
        assert rows["ollama"]["status"] == "ready"
        assert rows["ollama"]["endpoint"] == ollama.url
        assert rows["ollama"]["models"][0]["id"] == "llama3.2:latest"
        assert rows["ollama"]["models"][0]["context_length"] == 8192
        assert rows["ollama"]["capabilities"]["install"] is True
        assert rows["vllm"]["status"] == "ready"
        assert rows["speaches"]["capabilities"]["transcription"] is True
        assert rows["lmstudio"]["status"] == "error"
        assert "not LM Studio" in rows["lmstudio"]["detail"]
        assert rows["tgi"]["status"] == "disabled"
        table = await run_cli(env)
        assert table.returncode == 0
        assert "ollama" in table.stdout and "ready" in table.stdout
        assert "direct discovery" in table.stdout
