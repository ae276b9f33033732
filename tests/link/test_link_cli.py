"""`pendra key set`, `pendra sandbox` options, the status document and live key checks."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from link_fakes import FakeBackend, Sandbox, start_sandbox, start_worker, worker_settings
from link_procs import free_port, spawn, start_sandbox_proc

from worker.keys import generate_key, read_key_file, write_key_file
from worker.link import verify_key

pytestmark = pytest.mark.timeout(60)


def _pendra(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _configured(home: Path):  # type: ignore[no-untyped-def]
    from worker.keys import load_configured_key
    from worker.settings import load_settings

    return load_configured_key(load_settings({"PENDRA_HOME": str(home)}))


@pytest.mark.parametrize("form", ["seed", "go", "pdk"])
def test_key_set_from_stdin_stores_0600_and_never_echoes(
    clean_env: dict[str, str], pendra_home: Path, form: str
) -> None:
    """The console's 32-byte and 64-byte base64 forms, and a pdk_ key, all go in as pasted."""
    import base64

    key = generate_key(console_form=True)
    text = {
        "seed": base64.b64encode(key.seed).decode(),
        "go": key.text,
        "pdk": generate_key().text,
    }[form]
    result = _pendra(["key", "set"], clean_env, stdin=text + "\n")
    assert result.returncode == 0, result.stderr
    stored = pendra_home / "config.yaml"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert f"gpu_worker_private_key: {text}" in stored.read_text()
    assert _configured(pendra_home).text == text
    assert text not in result.stdout + result.stderr
    assert _configured(pendra_home).key_id in result.stdout


def test_key_set_from_file_and_bad_input(
    clean_env: dict[str, str], pendra_home: Path, tmp_path: Path
) -> None:
    source = tmp_path / "pasted.txt"
    key = generate_key(console_form=True)
    source.write_text(key.text + "\n")
    assert _pendra(["key", "set", "--file", str(source)], clean_env).returncode == 0
    assert _configured(pendra_home) == key
    mangled = key.text[:-10] + "AAAAAAAA=="  # the public half no longer matches
    result = _pendra(["key", "set"], clean_env, stdin=mangled)
    assert result.returncode == 4 and "public half" in result.stderr
    assert "Traceback" not in result.stderr and mangled not in result.stderr
    assert _configured(pendra_home) == key  # the good key was not replaced
    pdk = generate_key().text
    typo = pdk[:-1] + ("A" if pdk[-1] != "A" else "B")
    result = _pendra(["key", "set"], clean_env, stdin=typo)
    assert result.returncode == 4 and "typo" in result.stderr and typo not in result.stderr
    cut = _pendra(["key", "set"], clean_env, stdin=key.text[:30])
    assert cut.returncode == 4 and "32-byte seed" in cut.stderr and "64-byte" in cut.stderr
    missing = _pendra(["key", "set", "--file", str(tmp_path / "nope")], clean_env)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_key_set_updates_a_key_file_in_use(
    clean_env: dict[str, str], pendra_home: Path, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys" / "worker.key"
    env = {**clean_env, "PENDRA_WORKER_KEY_FILE": str(key_file)}
    key = generate_key(console_form=True)
    result = _pendra(["key", "set"], env, stdin=key.text)
    assert result.returncode == 0, result.stderr
    assert read_key_file(key_file) == key and str(key_file) in result.stdout
    assert not (pendra_home / "config.yaml").exists()


def test_key_set_backs_up_a_different_key_and_says_where(
    clean_env: dict[str, str], pendra_home: Path, tmp_path: Path
) -> None:
    config = pendra_home / "config.yaml"
    first, second = generate_key(console_form=True), generate_key(console_form=True)
    source = tmp_path / "first.key"
    source.write_text(first.text + "\n")
    assert _pendra(["key", "set", "--file", str(source)], clean_env).returncode == 0

    same = _pendra(["key", "set", "--file", str(source)], clean_env)
    assert same.returncode == 0 and "already holds this key" in same.stdout
    assert list(pendra_home.glob("worker.key.*")) == []  # the same key: no backup

    source.write_text(second.text + "\n")
    replaced = _pendra(["key", "set", "--file", str(source)], clean_env)
    assert replaced.returncode == 0, replaced.stderr
    (backup,) = pendra_home.glob("worker.key.*.bak")
    assert read_key_file(backup) == first  # readable by the loader: 0600 and intact
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert _configured(pendra_home) == second
    assert str(backup) in replaced.stdout and first.key_id in replaced.stdout
    assert first.text not in replaced.stdout + replaced.stderr
    assert second.text not in replaced.stdout + replaced.stderr

    # A damaged key in config.yaml (hand-edited): kept too, never silently lost, and replaceable.
    text = config.read_text().replace(second.text, "my-notes-not-a-key")
    config.write_text(text)
    again = _pendra(["key", "set", "--file", str(source)], clean_env)
    assert again.returncode == 0, again.stderr
    backups = sorted(pendra_home.glob("worker.key.*.bak"))
    assert len(backups) == 2 and "not a valid key" in again.stdout
    assert any(b.read_text() == "my-notes-not-a-key\n" for b in backups)
    assert _configured(pendra_home) == second


def test_key_set_backs_up_a_key_file_in_use_too(
    clean_env: dict[str, str], pendra_home: Path, tmp_path: Path
) -> None:
    stored = pendra_home / "worker.key"
    first, second = generate_key(), generate_key()
    stored.write_text(first.text + "\n")
    stored.chmod(0o600)
    replaced = _pendra(["key", "set"], clean_env, stdin=second.text)
    assert replaced.returncode == 0, replaced.stderr
    (backup,) = pendra_home.glob("worker.key.*.bak")
    assert read_key_file(backup) == first and read_key_file(stored) == second
    assert not (pendra_home / "config.yaml").exists()


def test_sandbox_key_out_is_reused_across_restarts(
    clean_env: dict[str, str], tmp_path: Path
) -> None:
    key_out = tmp_path / "k" / "worker.key"
    port = free_port()
    first = start_sandbox_proc(clean_env, tmp_path / "logs", port, key_out)
    first.kill()
    key = read_key_file(key_out)
    assert stat.S_IMODE(key_out.stat().st_mode) == 0o600
    second = start_sandbox_proc(clean_env, tmp_path / "logs", port, key_out)
    second.kill()
    assert read_key_file(key_out) == key
    os.chmod(key_out, 0o644)
    third = spawn(
        ["sandbox", "--port", str(port), "--key-out", str(key_out)],
        clean_env,
        tmp_path / "logs",
        "third",
    )
    assert third.wait(30) == 4 and f"chmod 600 {key_out}" in third.output()


async def test_sandbox_accepts_further_worker_keys(
    clean_env: dict[str, str], tmp_path: Path
) -> None:
    """`--accept-key FILE`: several workers, each with its own key, on one sandbox."""
    extra = tmp_path / "second.key"
    write_key_file(extra, generate_key())
    port = free_port()
    proc = start_sandbox_proc(
        clean_env, tmp_path / "logs", port, tmp_path / "first.key", "--accept-key", str(extra)
    )
    try:
        settings = worker_settings(f"http://127.0.0.1:{port}")
        for path in (tmp_path / "first.key", extra):
            assert (await verify_key(settings, read_key_file(path))).ok
        assert not (await verify_key(settings, generate_key())).ok
    finally:
        proc.kill()
    os.chmod(extra, 0o644)
    refused = spawn(
        ["sandbox", "--port", str(port), "--key-out", str(tmp_path / "first.key"),
         "--accept-key", str(extra)],
        clean_env,
        tmp_path / "logs",
        "refused",
    )  # fmt: skip
    assert refused.wait(30) == 4 and f"chmod 600 {extra}" in refused.output()


def test_sandbox_bad_options_are_clear(clean_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "cat.json"
    bad.write_text('{"models": 3}')
    result = _pendra(["sandbox", "--catalogue", str(bad), "--port", str(free_port())], clean_env)
    assert result.returncode == 2 and "is not a catalogue" in result.stderr
    port = free_port()
    busy = start_sandbox_proc(clean_env, tmp_path / "logs", port, tmp_path / "a.key")
    try:
        again = _pendra(
            ["sandbox", "--port", str(port), "--key-out", str(tmp_path / "b.key")], clean_env
        )
        assert again.returncode == 2 and "already in use" in again.stderr
    finally:
        busy.kill()


async def test_sandbox_serves_the_catalogue_in_the_apis_shape() -> None:
    import httpx

    from worker.catalogue.parse import parse_catalogue
    from worker.sandbox.catalogue import load_catalogue

    sandbox = await start_sandbox(catalogue=load_catalogue(None))
    try:
        async with httpx.AsyncClient() as http:
            r = await http.get(sandbox.url + "/api/v1/catalogue")
    finally:
        await sandbox.stop()
    assert r.status_code == 200
    document = r.json()
    assert set(document) == {"data"}  # Pendra's API: {"data": [entries]}
    gemma = next(e for e in document["data"] if e["id"] == "gemma3:270m")
    assert gemma.keys() >= {
        "id",
        "name",
        "backend",
        "capability",
        "parameter_size",
        "context_length",
        "licence",
        "variants",
    }
    assert gemma["backend"] == "both" and gemma["capability"] == "chat"
    build = gemma["variants"][0]
    assert build["gguf_url"].startswith("/files/") and len(build["gguf_sha256"]) == 64
    parsed = parse_catalogue(document)
    assert not parsed.warnings
    assert parsed.models[0].variant("270m") is not None


async def test_bundled_catalogue_is_the_sample() -> None:
    from worker.sandbox.catalogue import load_catalogue, model_ids

    catalogue = load_catalogue(None)
    assert catalogue["version"] == 1 and "gemma3:270m" in model_ids(catalogue)


async def test_status_document_shape_and_no_key(sandbox: Sandbox) -> None:
    running = await start_worker(sandbox, FakeBackend())
    status = running.worker.status()
    assert status["worker"]["state"] == "connected"
    assert set(status) >= {"worker", "backends", "gpus", "installs", "requests"}
    assert status["backends"][0]["name"] == "fake"
    assert set(status["requests"]) >= {"in_flight", "served", "failed"}
    text = json.dumps(status)
    assert sandbox.key.text not in text and sandbox.key.seed.hex() not in text
    assert await running.stop() == 0
    assert running.worker.status()["worker"]["state"] == "draining"


async def test_verify_key_live(sandbox: Sandbox) -> None:
    settings = worker_settings(sandbox.url)
    good = await verify_key(settings, sandbox.key.text)
    assert good.ok and good.worker_id == sandbox.key.worker_id
    bad = await verify_key(settings, generate_key())
    assert bad.status == "rejected" and not bad.ok
    typo = await verify_key(settings, "pdk_nope")
    assert typo.status == "invalid_format"
    down = await verify_key(worker_settings(f"http://127.0.0.1:{free_port()}"), sandbox.key)
    assert down.status == "unreachable"


def test_key_file_written_by_write_key_file_is_accepted_by_worker_loader(tmp_path: Path) -> None:
    from worker.keys import load_worker_key

    path = tmp_path / "w.key"
    key = generate_key()
    write_key_file(path, key)
    assert load_worker_key(path, {}) == key
