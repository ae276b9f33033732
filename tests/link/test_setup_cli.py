"""``pendra setup`` without a terminal: plain prompts on stdin, or flags with ``--yes``; the key
checked live against a real ``pendra sandbox``; everything saved to config.yaml (0600)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from link_procs import free_port, start_sandbox_proc

from worker.keys import generate_key, read_key_file
from worker.settings import EndpointMode, load_settings

pytestmark = pytest.mark.timeout(120)


def pendra(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def sandbox(tmp_path: Path, clean_env: dict[str, str]):  # type: ignore[no-untyped-def]
    port = free_port()
    key_file = tmp_path / "sandbox.key"
    proc = start_sandbox_proc(clean_env, tmp_path / "logs", port, key_file)
    yield f"ws://127.0.0.1:{port}", key_file
    proc.kill()


def test_plain_prompts_set_up_a_new_worker(
    sandbox: tuple[str, Path], clean_env: dict[str, str], pendra_home: Path
) -> None:
    url, key_file = sandbox
    key_text = key_file.read_text().strip()
    answers = f"{url}\n{key_text}\nlab box\noff\n\n\nhttp://127.0.0.1:8000\noff\n"
    result = pendra(["setup"], clean_env, stdin=answers)  # no terminal: plain prompts
    assert result.returncode == 0, result.stderr
    assert key_text not in result.stdout + result.stderr
    assert "Control plane [wss://api.pendra.ai]:" in result.stderr
    assert "accepted by the control plane" in result.stdout
    config = pendra_home / "config.yaml"
    assert os.stat(config).st_mode & 0o777 == 0o600
    settings = load_settings({"PENDRA_HOME": str(pendra_home)})
    assert settings.server_url == url and settings.worker_name == "lab box"
    assert settings.private_key == key_text
    assert settings.backend("ollama").mode is EndpointMode.DISABLED
    assert settings.backend("lmstudio").mode is EndpointMode.AUTO
    assert settings.backend("vllm").url == "http://127.0.0.1:8000"
    assert settings.builtin_enabled is False
    assert settings.worker_id and settings.worker_id.startswith("wrk-")
    assert f"({settings.worker_id})" in result.stdout


def test_setup_again_keeps_what_is_not_changed(
    sandbox: tuple[str, Path], clean_env: dict[str, str], pendra_home: Path
) -> None:
    url, key_file = sandbox
    config = pendra_home / "config.yaml"
    config.write_text(
        f"# my notes\napp_server_ws_url: {url}\nworker_name: old\n"
        f"gpu_worker_private_key: {key_file.read_text().strip()}\nworker_id: wrk-kept\n"
    )
    config.chmod(0o600)
    result = pendra(["setup"], clean_env, stdin="\n\nnew name\n")  # then the end of input
    assert result.returncode == 0, result.stderr
    assert "(Enter keeps the stored key)" in result.stderr
    text = config.read_text()
    assert text.startswith("# my notes\n") and "worker_name: new name" in text
    settings = load_settings({"PENDRA_HOME": str(pendra_home)})
    assert settings.worker_id == "wrk-kept" and settings.server_url == url
    assert settings.private_key == key_file.read_text().strip()


def test_flags_with_yes_and_the_seed_form_on_stdin(
    sandbox: tuple[str, Path], clean_env: dict[str, str], pendra_home: Path
) -> None:
    url, key_file = sandbox
    seed_form = base64.b64encode(read_key_file(key_file).seed).decode()
    result = pendra(
        ["setup", "--yes", "--url", url, "--name", "ci", "--key-stdin", "--backend", "ollama=off"],
        clean_env,
        stdin=seed_form,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("?") == 0 and "Control plane [" not in result.stderr  # no prompts
    settings = load_settings({"PENDRA_HOME": str(pendra_home)})
    assert settings.private_key == seed_form and settings.worker_name == "ci"
    assert settings.backend("ollama").mode is EndpointMode.DISABLED


def test_a_refused_key_changes_nothing(
    sandbox: tuple[str, Path], clean_env: dict[str, str], pendra_home: Path
) -> None:
    url, _key_file = sandbox
    stranger = generate_key(console_form=True).text
    result = pendra(
        ["setup", "--yes", "--url", url, "--name", "x", "--key-stdin"], clean_env, stdin=stranger
    )
    assert result.returncode == 4 and "refused the key" in result.stderr
    assert "Nothing was changed" in result.stderr and stranger not in result.stderr
    assert not (pendra_home / "config.yaml").exists()


def test_bad_answers_are_said_and_asked_again(clean_env: dict[str, str], pendra_home: Path) -> None:
    key = generate_key(console_form=True).text
    answers = f"ftp://x\nws://127.0.0.1:9\nnot-a-key\n{key}\n\nbogus\noff\n\n\n\n\n"
    result = pendra(["setup", "--no-verify"], clean_env, stdin=answers)
    assert result.returncode == 0, result.stderr
    assert "not a control plane URL" in result.stderr
    assert "32-byte seed" in result.stderr  # which key forms are expected
    assert "not an http(s) URL" in result.stderr
    settings = load_settings({"PENDRA_HOME": str(pendra_home)})
    assert settings.server_url == "ws://127.0.0.1:9" and settings.private_key == key
    assert settings.backend("ollama").mode is EndpointMode.DISABLED


def test_no_key_anywhere_is_a_clear_error(clean_env: dict[str, str], pendra_home: Path) -> None:
    result = pendra(["setup", "--yes", "--name", "x"], clean_env)
    assert result.returncode == 2 and "No worker key" in result.stderr
    assert "--key-file" in result.stderr and "Traceback" not in result.stderr
    refused = pendra(["setup", "--key-stdin"], clean_env, stdin="abc")
    assert refused.returncode == 2 and "--yes" in refused.stderr
