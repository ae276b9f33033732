"""Control-plane-initiated installs run as install-manager jobs on an operated worker.

A real in-process sandbox serves a catalogue whose ``tiny:chat`` variant points at a tiny GGUF the
sandbox itself serves at ``/files``; the worker runs the real built-in backend and its install
manager (``Worker.enable_operations``). An install command over the link streams live progress
frames back, verifies the pinned SHA-256, shows up in the status document's ``installs``, and the
new model is then served and advertised; an uninstall command removes it again. A wrong pin fails
with a clear error and leaves nothing in the modelstore.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from link_fakes import Sandbox, send_command, wait_for, worker_settings

from worker.keys import generate_key
from worker.protocol import (
    ErrorFrame,
    InstallCommand,
    InstallDone,
    InstallProgressFrame,
    UninstallCommand,
)
from worker.runtime import Worker
from worker.sandbox import SandboxConfig, build_app, serve
from worker.sandbox.app import bound_port

pytestmark = pytest.mark.timeout(120)


def catalogue_for(path: Path, sha256: str) -> dict[str, Any]:
    variant = {
        "tag": "chat",
        "parameters": "1M",
        "quantisation": "F32",
        "context_length": 512,
        "size_bytes": path.stat().st_size,
        "min_vram_bytes": None,
        "backends": ["pendra"],
        "gguf_url": f"/files/{path.name}",
        "gguf_sha256": sha256,
    }
    broken = {**variant, "tag": "badpin", "gguf_sha256": "0" * 64}
    return {
        "version": 1,
        "models": [
            {
                "id": "tiny",
                "name": "Tiny",
                "family": "llama",
                "task": "chat",
                "description": "a tiny random-weight test model",
                "license": "MIT",
                "variants": [variant, broken],
            }
        ],
    }


async def test_install_command_runs_as_a_verified_job_with_live_progress(
    tmp_path: Path, tiny_chat_gguf: Path
) -> None:
    served = tmp_path / "files"
    served.mkdir()
    model = served / "tiny-chat.gguf"
    model.write_bytes(tiny_chat_gguf.read_bytes())
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    key = generate_key()
    config = SandboxConfig(
        api_key="sk-test",
        accepted_keys={key.public_key},
        catalogue=catalogue_for(model, sha),
        files_dir=served,
        extra_files={},
    )
    runner = await serve(build_app(config), "127.0.0.1", 0)
    sandbox = Sandbox(runner, runner.app, key, config.api_key, bound_port(runner))
    models_dir = tmp_path / "models"
    settings = worker_settings(sandbox.url, PENDRA_MODELS_DIR=str(models_dir))
    worker = Worker(settings, key)
    worker.enable_operations(admin=False, gpu=False)
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: sandbox.hub.workers and worker.state == "connected", 30)
        connection = next(iter(sandbox.hub.workers.values()))

        frames = await send_command(
            sandbox, InstallCommand(id="c1", ref="tiny:chat", backend=None), timeout_s=60
        )
        assert isinstance(frames[-1], InstallDone), frames[-1]
        assert frames[-1].backend == "pendra"
        phases = [f.phase for f in frames if isinstance(f, InstallProgressFrame)]
        assert "downloading" in phases or "verifying" in phases
        installed = models_dir / "tiny-chat.gguf"
        assert hashlib.sha256(installed.read_bytes()).hexdigest() == sha
        assert any(j["ref"] == "tiny:chat" and j["phase"] == "done" for j in worker.installs())
        await wait_for(lambda: connection.serves("tiny:chat"), 30, "the new model advertised")

        frames = await send_command(
            sandbox, InstallCommand(id="c2", ref="tiny:badpin", backend=None), timeout_s=60
        )
        assert isinstance(frames[-1], ErrorFrame)
        assert "SHA-256" in frames[-1].message or "sha256" in frames[-1].message.lower()
        visible = sorted(p.name for p in models_dir.iterdir() if not p.name.startswith("."))
        assert visible == ["tiny-chat.gguf", "tiny-chat.gguf.meta.json"]
        assert not [p.name for p in models_dir.iterdir() if p.name.endswith(".part")]

        frames = await send_command(
            sandbox, UninstallCommand(id="c3", ref="tiny:chat", backend=None), timeout_s=60
        )
        assert isinstance(frames[-1], InstallDone), frames[-1]
        assert not installed.exists()
        await wait_for(lambda: not connection.serves("tiny:chat"), 30, "the model withdrawn")
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 60)
        await runner.cleanup()
