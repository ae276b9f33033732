"""Errors that come back through the admin client are rendered once: message, then its hint.

Real ``pendra sandbox`` (a catalogue whose one variant has a wrong SHA-256 pin, the file served
from ``--files``) and ``pendra --no-ui``; the CLI talks to the worker over its admin socket. Each
failure — refused before a job starts, a job that fails, a removal of nothing — prints exactly
``pendra: <message>`` and one ``  → <hint>`` line, and nothing else.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.link.link_procs import API_KEY, free_port, spawn, stop, worker_env
from worker.errors import PendraError, render, render_inline, split_rendered

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


def assert_rendered_once(err: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("pendra: ") and lines[1].startswith("  → "), err
    hint = lines[1][4:]
    assert err.count(hint) == 1 and lines[0].count(hint) == 0, err


def test_admin_client_errors_print_message_and_hint_once(
    tmp_path: Path, clean_env: dict[str, str], tiny_chat_gguf: Path
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    (files / "tiny.gguf").write_bytes(tiny_chat_gguf.read_bytes())
    variant = {
        "tag": "badpin",
        "context_length": 512,
        "size_bytes": tiny_chat_gguf.stat().st_size,
        "backends": ["pendra"],
        "gguf_url": "/files/tiny.gguf",
        "gguf_sha256": "0" * 64,
    }
    catalogue = tmp_path / "catalogue.json"
    catalogue.write_text(
        json.dumps(
            {"version": 1, "models": [{"id": "tiny", "task": "chat", "variants": [variant]}]}
        )
    )
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    key_file = tmp_path / "sandbox-worker.key"
    args = ["--port", str(port), "--api-key", API_KEY, "--key-out", str(key_file)]
    sandbox = spawn(
        ["sandbox", *args, "--catalogue", str(catalogue), "--files", str(files)],
        clean_env,
        tmp_path / "logs",
        "sandbox",
    )
    deadline = time.monotonic() + 30
    while "Pendra sandbox ready" not in sandbox.out.read_text():
        assert sandbox.popen.poll() is None and time.monotonic() < deadline, sandbox.output()
        time.sleep(0.05)
    env = worker_env(clean_env, api_url, key_file, tmp_path / "models")
    worker = spawn(["--no-ui"], env, tmp_path / "logs", "worker")
    try:
        while pendra(env, "status", "--json").returncode != 0:
            assert worker.popen.poll() is None and time.monotonic() < deadline + 30, worker.output()
            time.sleep(0.2)

        refused = pendra(env, "models", "install", "tiny:badpin", "--backend", "ollama")
        assert refused.returncode == 1
        assert "cannot be installed into 'ollama'" in refused.stderr
        assert_rendered_once(refused.stderr)

        failed = pendra(env, "models", "install", "tiny:badpin")  # a job that fails verifying
        assert failed.returncode == 1, failed.stderr
        assert "pendra: Installing tiny:badpin failed: " in failed.stderr
        assert "SHA-256" in failed.stderr
        progress = [line for line in failed.stderr.splitlines() if line.startswith("tiny:badpin")]
        assert_rendered_once("\n".join(failed.stderr.splitlines()[len(progress) :]))
        assert list((tmp_path / "models").glob("*.gguf")) == []

        missing = pendra(env, "models", "rm", "tiny:badpin")
        assert missing.returncode == 1
        assert "is not installed on any backend here" in missing.stderr
        assert_rendered_once(missing.stderr)
    finally:
        assert stop(worker) == 0, worker.output()
        stop(sandbox)


def test_a_hint_already_rendered_into_the_message_is_not_repeated() -> None:
    hint = "start it (see `pendra backends`), or pick another with --backend"
    for doubled in (
        render("The ollama backend is not running.", hint),
        "Not running. (" + hint + ")",
    ):
        message = split_rendered(doubled, hint)
        assert hint not in message
        assert str(PendraError(message, hint=hint)).count(hint) == 1
    assert render_inline("m", None) == render("m", None) == "m"
    assert split_rendered("only a message", hint) == "only a message"
