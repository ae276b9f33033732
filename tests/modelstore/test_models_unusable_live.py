"""Files in the modelstore that cannot be served show in ``pendra models`` with the reason.

Real processes: the CLI on its own (no worker), then a real ``pendra sandbox`` + ``pendra --no-ui``
with the same modelstore, where the CLI goes through the worker. A truncated GGUF and a hostile one
(the magic, then garbage) sit next to a good tiny model; one more bad file dropped in while the
worker runs reaches admin-API subscribers in a ``models`` event and shows in the next listing.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.link.link_procs import free_port, spawn, start_sandbox_proc, stop, worker_env
from worker.admin.client import AdminClient
from worker.settings import load_settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def pendra(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def fill_store(models_dir: Path, good: Path) -> None:
    models_dir.mkdir()
    data = good.read_bytes()
    (models_dir / "good.gguf").write_bytes(data)
    (models_dir / "cut.gguf").write_bytes(data[:1000])
    (models_dir / "junk.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 4)


def check_listing(env: dict[str, str], bad_files: set[str]) -> list[dict[str, Any]]:
    listed = pendra(env, "models", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["usable"]) for r in rows if r["usable"]] == [("good", True)]
    unusable = {r["file"]: r for r in rows if not r["usable"]}
    assert set(unusable) == bad_files, rows
    for row in unusable.values():
        assert row["backend"] == "pendra"
        assert row["error"]  # the reason, as the modelstore gives it
    text = pendra(env, "models")
    assert text.returncode == 0, text.stderr
    assert "good" in text.stdout
    for name, row in unusable.items():
        line = next(line for line in text.stdout.splitlines() if name in line)
        assert row["error"] in line, text.stdout
    return rows


def test_unusable_files_are_listed_with_the_reason_directly_and_through_the_worker(
    tmp_path: Path, clean_env: dict[str, str], tiny_chat_gguf: Path
) -> None:
    models_dir = tmp_path / "models"
    fill_store(models_dir, tiny_chat_gguf)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    key_file = tmp_path / "sandbox-worker.key"
    sandbox = start_sandbox_proc(clean_env, tmp_path / "logs", port, key_file)
    env = worker_env(clean_env, api_url, key_file, models_dir)

    rows = check_listing(env, {"cut.gguf", "junk.gguf"})  # no worker: the CLI reads the store
    assert "(this machine (no worker running))" in pendra(env, "models").stdout
    cut = next(r for r in rows if r.get("file") == "cut.gguf")

    worker = spawn(["--no-ui"], env, tmp_path / "logs", "worker")
    try:
        deadline = time.monotonic() + 60
        while pendra(env, "status", "--json").returncode != 0:
            assert worker.popen.poll() is None, worker.output()
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.2)
        through_worker = check_listing(env, {"cut.gguf", "junk.gguf"})
        assert next(r for r in through_worker if r.get("file") == "cut.gguf") == cut
        assert "(the running worker)" in pendra(env, "models").stdout

        event = asyncio.run(drop_and_wait(env, models_dir / "late.gguf"))
        assert "late.gguf" in {u["file"] for u in event["unusable"]}
        check_listing(env, {"cut.gguf", "junk.gguf", "late.gguf"})
    finally:
        assert stop(worker) == 0, worker.output()
        stop(sandbox)


async def drop_and_wait(env: dict[str, str], path: Path) -> dict[str, Any]:
    """Drop a bad file into the running worker's store; the ``models`` event that names it."""
    client = AdminClient.for_settings(load_settings(env))
    async with client.event_stream({"models"}) as stream:
        path.write_bytes(b"not a gguf at all")

        async def first_naming_it() -> dict[str, Any]:
            async for event in stream:
                if path.name in {u["file"] for u in event.get("unusable") or []}:
                    return event
            raise AssertionError("the event stream ended")

        return await asyncio.wait_for(first_naming_it(), 30)
