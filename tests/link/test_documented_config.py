"""Pendra's documented worker configuration, through the processes a user runs.

``pendra sandbox`` issues a key in the console's form; ``pendra --no-ui`` is configured only by
``~/.pendra/config.yaml`` with the documented keys, or only by the documented variables; the key
goes in as the 64-byte and the 32-byte base64 forms; a config file others can read is refused
when it holds the key and warned about when it does not; ``pendra config set max_concurrent 100``
is clamped and the worker declares 64; ``MODELS`` limits what the sandbox sees; a config.toml of
an earlier install is moved to config.yaml on the first start.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from link_procs import (
    API_KEY,
    Proc,
    environ_has,
    free_port,
    spawn,
    start_sandbox_proc,
    stop,
    wait_for_models,
)

from worker.keys import read_key_file
from worker.settings import BACKEND_KINDS

pytestmark = pytest.mark.timeout(240)

QUIET = {"PENDRA_HEARTBEAT_INTERVAL": "1", "PENDRA_THREADS": "1"}


@pytest.fixture
def models_dir(tmp_path: Path, tiny_chat_gguf: Path, tiny_embed_gguf: Path) -> Path:
    directory = tmp_path / "models"
    directory.mkdir()
    (directory / "tiny-chat.gguf").symlink_to(tiny_chat_gguf)
    (directory / "tiny-embed.gguf").symlink_to(tiny_embed_gguf)
    return directory


class Sandbox:
    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}"
        self.key_file = tmp_path / "sandbox" / "worker.key"
        self.logs = tmp_path / "logs"
        self.proc = start_sandbox_proc(env, self.logs, self.port, self.key_file)

    @property
    def key_text(self) -> str:
        return self.key_file.read_text().strip()

    def workers(self) -> list[dict]:
        return httpx.get(self.http + "/api/v1/workers", timeout=5).json()["workers"]

    def models(self) -> set[str]:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        data = httpx.get(self.http + "/v1/models", headers=headers, timeout=5).json()["data"]
        return {m["id"] for m in data}


@pytest.fixture
def sandbox(tmp_path: Path, clean_env: dict[str, str]) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path, clean_env)
    yield box
    box.proc.kill()


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


def write_config(home: Path, text: str, mode: int = 0o600) -> Path:
    path = home / "config.yaml"
    path.write_text(text)
    path.chmod(mode)
    return path


def endpoints_off_yaml() -> str:
    return "".join(f"{kind}_endpoint: off\n" for kind in BACKEND_KINDS)


def run_worker(env: dict[str, str], logs: Path, name: str) -> Proc:
    return spawn(["--no-ui"], {**env, **QUIET}, logs, name)


def test_the_sandbox_issues_console_keys_at_ws_gpu(sandbox: Sandbox) -> None:
    raw = base64.b64decode(sandbox.key_text, validate=True)
    assert len(raw) == 64  # Go's seed ‖ public key, base64: the console's form
    assert read_key_file(sandbox.key_file).public_bytes == raw[32:]
    printed = sandbox.proc.out.read_text()
    assert f"{sandbox.ws}/ws/gpu" in printed and f"APP_SERVER_WS_URL={sandbox.ws}" in printed


def test_worker_configured_only_by_config_yaml(
    sandbox: Sandbox, clean_env: dict[str, str], pendra_home: Path, models_dir: Path
) -> None:
    config = write_config(
        pendra_home,
        "# as Pendra's docs show it\n"
        f"app_server_ws_url: {sandbox.ws}\n"
        f"gpu_worker_private_key: {sandbox.key_text}\n"
        "worker_name: rack-7 gpu\n"
        "max_concurrent: 2\n"
        f"models_dir: {models_dir}\n" + endpoints_off_yaml(),
    )
    worker = run_worker(clean_env, sandbox.logs, "yaml-only")
    try:
        wait_for_models(sandbox.http, {"tiny-chat", "tiny-embed"}, worker)
        (entry,) = sandbox.workers()
        assert entry["worker_name"] == "rack-7 gpu" and entry["max_concurrency"] == 2
        worker_id = entry["worker_id"]
        assert worker_id.startswith("wrk-") and f"worker_id: {worker_id}" in config.read_text()
        assert config.read_text().startswith("# as Pendra's docs show it\n")  # comments kept

        status = pendra(["status", "--json"], clean_env)
        assert status.returncode == 0, status.stderr
        document = json.loads(status.stdout)["worker"]
        assert (document["worker_id"], document["worker_name"]) == (worker_id, "rack-7 gpu")
        assert document["control_plane"] == sandbox.ws and document["max_concurrent"] == 2
        text = pendra(["status"], clean_env).stdout
        assert f"rack-7 gpu ({worker_id})" in text
        assert stop(worker) == 0

        again = run_worker(clean_env, sandbox.logs, "yaml-only-again")
        wait_for_models(sandbox.http, {"tiny-chat"}, again)
        assert [w["worker_id"] for w in sandbox.workers()] == [worker_id]  # persisted
        assert stop(again) == 0
    finally:
        worker.kill()
    log = (pendra_home / "logs" / "worker.log").read_text()
    assert sandbox.key_text not in log and "wrk-" in log


def test_worker_configured_only_by_the_documented_variables(
    sandbox: Sandbox, clean_env: dict[str, str], pendra_home: Path, models_dir: Path, tmp_path: Path
) -> None:
    """The key as the 32-byte seed form; MODELS narrows what the sandbox sees to one model."""
    seed_form = base64.b64encode(read_key_file(sandbox.key_file).seed).decode()
    env = {
        **clean_env,
        "APP_SERVER_WS_URL": sandbox.ws,
        "GPU_WORKER_PRIVATE_KEY": seed_form,
        "WORKER_ID": "wrk-from-env",
        "WORKER_NAME": "env-box",
        "MODELS": '["tiny-chat"]',
        "MAX_CONCURRENT": "3",
        "PENDRA_MODELS_DIR": str(models_dir),
        **{f"{kind.upper()}_ENDPOINT": "off" for kind in BACKEND_KINDS},
    }
    worker = run_worker(env, sandbox.logs, "env-only")
    try:
        wait_for_models(sandbox.http, {"tiny-chat"}, worker)
        assert sandbox.models() == {"tiny-chat"}  # tiny-embed is installed, but filtered out
        (entry,) = sandbox.workers()
        assert (entry["worker_id"], entry["worker_name"]) == ("wrk-from-env", "env-box")
        assert entry["max_concurrency"] == 3
        refused = httpx.post(
            sandbox.http + "/v1/embeddings",
            headers={"Authorization": f"Bearer {API_KEY}"},
            json={"model": "tiny-embed", "input": "x"},
            timeout=30,
        )
        assert refused.status_code == 404
        served = httpx.post(
            sandbox.http + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {API_KEY}"},
            json={
                "model": "tiny-chat",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 4,
            },
            timeout=60,
        )
        assert served.status_code == 200 and served.headers["X-Worker-Id"] == "wrk-from-env"
        status = json.loads(pendra(["status", "--json"], env).stdout)
        assert status["worker"]["models_filter"] == ["tiny-chat"]
        local = {m["id"] for b in status["backends"] for m in b.get("models", [])}
        assert {"tiny-chat", "tiny-embed"} <= local  # the inventory still lists both
        assert stop(worker) == 0
    finally:
        worker.kill()
    assert not (pendra_home / "config.yaml").exists()  # nothing written: WORKER_ID was given
    log = (pendra_home / "logs" / "worker.log").read_text()
    assert seed_form not in log and sandbox.key_text not in log


def test_a_key_pasted_into_key_set_in_either_console_form_connects(
    sandbox: Sandbox, clean_env: dict[str, str], pendra_home: Path, models_dir: Path
) -> None:
    write_config(pendra_home, f"app_server_ws_url: {sandbox.ws}\n" + endpoints_off_yaml())
    env = {**clean_env, "PENDRA_MODELS_DIR": str(models_dir)}
    key = read_key_file(sandbox.key_file)
    for name, text in (
        ("go-form", sandbox.key_text),
        ("seed-form", base64.b64encode(key.seed).decode()),
    ):
        stored = pendra(["key", "set"], env, stdin=text + "\n")
        assert stored.returncode == 0, stored.stderr
        assert text not in stored.stdout + stored.stderr
        worker = run_worker(env, sandbox.logs, name)
        try:
            wait_for_models(sandbox.http, {"tiny-chat"}, worker)
            assert not environ_has(worker.pid, text)  # read from the file, not the environment
            assert stop(worker) == 0
        finally:
            worker.kill()


def test_a_config_file_others_can_read(
    sandbox: Sandbox, clean_env: dict[str, str], pendra_home: Path, models_dir: Path, tmp_path: Path
) -> None:
    """Holding the key: refused with the fix. Without the key: the worker runs, and warns."""
    config = write_config(
        pendra_home,
        f"app_server_ws_url: {sandbox.ws}\ngpu_worker_private_key: {sandbox.key_text}\n"
        f"models_dir: {models_dir}\n" + endpoints_off_yaml(),
        mode=0o644,
    )
    refused = run_worker(clean_env, sandbox.logs, "loose-with-key")
    assert refused.wait(60) == 4
    out = refused.output()
    assert f"chmod 600 {config}" in out and "Traceback" not in out
    assert sandbox.key_text not in out and sandbox.workers() == []

    config.write_text(
        f"app_server_ws_url: {sandbox.ws}\nmodels_dir: {models_dir}\n" + endpoints_off_yaml()
    )
    config.chmod(0o644)
    env = {**clean_env, "PENDRA_WORKER_KEY_FILE": str(sandbox.key_file)}
    worker = run_worker(env, sandbox.logs, "loose-without-key")
    try:
        wait_for_models(sandbox.http, {"tiny-chat"}, worker)
        log = (pendra_home / "logs" / "worker.log").read_text()
        assert "readable by other users (mode 644)" in log and f"chmod 600 {config}" in log
        assert stop(worker) == 0
    finally:
        worker.kill()
    # saving its new worker id, the worker wrote the file back 0600, and said so
    assert os.stat(config).st_mode & 0o777 == 0o600
    assert "it is 0600 now" in (pendra_home / "logs" / "worker.log").read_text()
    config.chmod(0o644)
    listed = pendra(["config", "list"], env)
    assert "readable by other users" in listed.stderr  # every command says it


def test_max_concurrent_100_is_clamped_and_declared(
    sandbox: Sandbox, clean_env: dict[str, str], pendra_home: Path, models_dir: Path
) -> None:
    write_config(
        pendra_home,
        f"app_server_ws_url: {sandbox.ws}\ngpu_worker_private_key: {sandbox.key_text}\n"
        f"models_dir: {models_dir}\n" + endpoints_off_yaml(),
    )
    result = pendra(["config", "set", "max_concurrent", "100"], clean_env)
    assert result.returncode == 0, result.stderr
    assert "Set max_concurrent = 64" in result.stdout
    assert "100 is outside 1–64; clamped to the maximum, 64" in result.stderr
    assert "max_concurrent: 64" in (pendra_home / "config.yaml").read_text()
    got = pendra(["config", "get", "max_concurrent", "--json"], clean_env)
    assert json.loads(got.stdout)["value"] == 64
    worker = run_worker(clean_env, sandbox.logs, "clamped")
    try:
        wait_for_models(sandbox.http, {"tiny-chat"}, worker)
        assert sandbox.workers()[0]["max_concurrency"] == 64
        assert stop(worker) == 0
    finally:
        worker.kill()


def test_config_toml_of_an_earlier_install_is_moved_on_first_start(
    sandbox: Sandbox, clean_env: dict[str, str], pendra_home: Path, models_dir: Path
) -> None:
    toml = pendra_home / "config.toml"
    toml.write_text(
        f'api_url = "{sandbox.http}"\nkey_file = "{sandbox.key_file}"\n'
        f'models_dir = "{models_dir}"\n[backends]\n'
        + "".join(f'{kind} = "off"\n' for kind in BACKEND_KINDS)
    )
    worker = run_worker(clean_env, sandbox.logs, "migrated")
    try:
        wait_for_models(sandbox.http, {"tiny-chat"}, worker)
        assert stop(worker) == 0
    finally:
        worker.kill()
    assert not toml.exists() and (pendra_home / "config.toml.migrated").exists()
    text = (pendra_home / "config.yaml").read_text()
    assert f"app_server_ws_url: {sandbox.ws}" in text and "ollama_endpoint: off" in text
    assert os.stat(pendra_home / "config.yaml").st_mode & 0o777 == 0o600
    log = (pendra_home / "logs" / "worker.log").read_text()
    assert "moved the settings from" in log
