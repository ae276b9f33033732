"""``pendra pull hf.co/…`` through the real processes: ``pendra --no-ui`` and the CLI, the real
``huggingface_hub`` client resolving against the Hub emulator on 127.0.0.1 (``HF_ENDPOINT``), the
worker's own verified transfer downloading from the emulated CDN (a second origin the Hub
redirects to). Only the public internet is replaced; every byte moves over real sockets.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hf_procs import hf_env, hub_in_thread, pendra, running_worker, tree, wait_ready
from hub_fixtures import (
    GATED,
    SPLIT,
    TINY,
    TOKEN_GRANTED,
    TOKEN_OTHER,
    add_gated_repo,
    add_split_repo,
    add_tiny_repo,
    blob,
)
from model_factory import write_header_only

from tests.emulators.hf_hub import HubEmulator
from tests.link.link_procs import spawn, stop
from worker.modelstore.sidecar import read_sidecar

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TINY_FOLDER = "hf.co--bartowski--Tiny-Chat-GGUF--Q4_K_M"
SPLIT_FOLDER = "hf.co--unsloth--Tiny-Split-GGUF--Q4_K_M"


@pytest.fixture
def hub(tmp_path: Path, tiny_chat_gguf: Path, tiny_split_gguf: list[Path]) -> Iterator[HubEmulator]:
    emulator = HubEmulator()
    add_tiny_repo(emulator, tiny_chat_gguf, blob(tmp_path / "q8.gguf", 300_000, 2))
    mmproj = write_header_only(tmp_path / "mmproj.gguf", "clip", {"clip.has_vision_encoder": True})
    add_split_repo(emulator, tiny_split_gguf, mmproj)
    add_gated_repo(emulator, blob(tmp_path / "gated.gguf", 200_000, 3))
    with hub_in_thread(emulator):
        yield emulator


@pytest.fixture
def env(clean_env: dict[str, str], tmp_path: Path, hub: HubEmulator) -> dict[str, str]:
    return hf_env(clean_env, tmp_path, hub)


def models_dir(env: dict[str, str]) -> Path:
    return Path(env["PENDRA_MODELS_DIR"])


def no_token_left_the_hub(hub: HubEmulator, *tokens: str) -> None:
    for request in hub.cdn.requests:
        assert "Authorization" not in request.headers
        assert not any(t in value for t in tokens for value in request.headers.values())


def test_pull_list_show_and_rm_a_single_file_model(
    env: dict[str, str], hub: HubEmulator, tmp_path: Path, tiny_chat_gguf: Path
) -> None:
    with running_worker(env, tmp_path / "logs"):
        pulled = pendra(env, "pull", f"hf.co/{TINY}")
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        ref = f"hf.co/{TINY}:Q4_K_M"
        assert f"Installed {ref} into pendra (downloaded)" in pulled.stdout
        assert "resolving" in pulled.stderr and "downloading" in pulled.stderr
        folder = models_dir(env) / TINY_FOLDER
        assert tree(models_dir(env)) == [
            f"{TINY_FOLDER}/Tiny-Chat-Q4_K_M.gguf",
            f"{TINY_FOLDER}/Tiny-Chat-Q4_K_M.gguf.meta.json",
        ]
        assert (folder / "Tiny-Chat-Q4_K_M.gguf").read_bytes() == tiny_chat_gguf.read_bytes()
        repo = hub.repos[TINY]
        sidecar = read_sidecar(folder / "Tiny-Chat-Q4_K_M.gguf.meta.json")
        assert sidecar.ref == ref and sidecar.revision == repo.sha
        assert sidecar.sha256 == repo.files["Tiny-Chat-Q4_K_M.gguf"].sha256
        assert sidecar.task is not None and sidecar.task.value == "chat"
        assert (sidecar.context_length, sidecar.has_chat_template) == (512, True)
        assert sidecar.quantisation == "Q4_K_M" and sidecar.licence == "apache-2.0"
        assert sidecar.source_url == f"{hub.url}/{TINY}/resolve/{repo.sha}/Tiny-Chat-Q4_K_M.gguf"
        # The CDN served it (the Hub redirected there), pinned to the commit.
        assert sum(r.method == "GET" for r in hub.cdn.requests) == 1
        no_token_left_the_hub(hub)

        # Ollama's spellings and ours list the same thing; the running worker serves it.
        listed = pendra(env, "ls", "--json")
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == json.loads(pendra(env, "models", "--json").stdout)
        row = next(r for r in json.loads(listed.stdout) if r["id"] == ref)
        assert row["backend"] == "pendra" and row["task"] == "chat"

        shown = pendra(env, "show", ref, "--json", "--verify")
        assert shown.returncode == 0, shown.stderr
        info = json.loads(shown.stdout)
        assert info["architecture"] == "llama" and info["context_length"] == 512
        assert info["sha256"] == sidecar.sha256 and info["verified"] is True
        assert info["has_chat_template"] and info["parameter_count"] > 0
        assert info["revision"] == repo.sha
        text = pendra(env, "show", f"hf.co/{TINY}")  # the repo alone finds its only install
        assert text.returncode == 0 and "architecture      llama" in text.stdout

        again = pendra(env, "pull", f"huggingface.co/{TINY}:q4_k_m")
        assert again.returncode == 0 and "already installed" in again.stdout
        assert sum(r.method == "GET" for r in hub.cdn.requests) == 1  # not twice

        removed = pendra(env, "rm", f"hf.co/{TINY}")
        assert removed.returncode == 0, removed.stderr
        assert f"Removed {ref} from pendra" in removed.stdout
        assert tree(models_dir(env)) == []
        gone = pendra(env, "rm", f"hf.co/{TINY}")
        assert gone.returncode == 1 and "not installed" in gone.stderr
        assert "Traceback" not in gone.stderr


def test_split_gguf_with_projector_installs_whole_and_serves_a_chat(
    clean_env: dict[str, str], hub: HubEmulator, tmp_path: Path, tiny_split_gguf: list[Path]
) -> None:
    from openai import OpenAI

    from tests.link.link_procs import API_KEY, free_port, start_sandbox_proc, wait_for_models

    port = free_port()
    key_file = tmp_path / "sandbox-worker.key"
    sandbox = start_sandbox_proc(clean_env, tmp_path / "logs", port, key_file)
    env = hf_env(clean_env, tmp_path, hub)
    env.update(PENDRA_API_URL=f"http://127.0.0.1:{port}", PENDRA_WORKER_KEY_FILE=str(key_file))
    try:
        with running_worker(env, tmp_path / "logs") as worker:
            pulled = pendra(env, "pull", f"https://huggingface.co/{SPLIT}/tree/main")
            assert pulled.returncode == 0, pulled.stdout + pulled.stderr
            ref = f"hf.co/{SPLIT}:Q4_K_M"
            names = [p.name for p in tiny_split_gguf]
            assert tree(models_dir(env)) == sorted(
                [
                    *(f"{SPLIT_FOLDER}/{n}" for n in names),
                    f"{SPLIT_FOLDER}/{names[0]}.meta.json",
                    f"{SPLIT_FOLDER}/mmproj-F16.gguf",
                ]
            )
            sidecar = read_sidecar(models_dir(env) / SPLIT_FOLDER / f"{names[0]}.meta.json")
            assert sidecar.mmproj == "mmproj-F16.gguf"
            assert [f.file for f in sidecar.files] == [*names, "mmproj-F16.gguf"]

            # llama.cpp loads part 1 and finds the others: a real chat through the sandbox.
            api_url = f"http://127.0.0.1:{port}"
            wait_for_models(api_url, {ref}, worker)
            client = OpenAI(base_url=api_url + "/v1", api_key=API_KEY, timeout=120)
            reply = client.chat.completions.create(
                model=ref, messages=[{"role": "user", "content": "hello"}], max_tokens=4
            )
            assert reply.choices[0].finish_reason in {"stop", "length"}

            loaded = pendra(env, "ps", "--json")
            assert loaded.returncode == 0, loaded.stderr
            (row,) = [r for r in json.loads(loaded.stdout) if r["id"] == ref]
            assert row["backend"] == "pendra"
            table = pendra(env, "ps")
            assert ref in table.stdout and "BACKEND" in table.stdout

            shown = json.loads(pendra(env, "show", ref, "--json").stdout)
            assert [f["file"] for f in shown["files"]] == [*names, "mmproj-F16.gguf"]
            assert shown["size_bytes"] == sum(p.stat().st_size for p in tiny_split_gguf)
            assert shown["mmproj"] == "mmproj-F16.gguf"

            removed = pendra(env, "rm", ref)
            assert removed.returncode == 0, removed.stderr
            assert tree(models_dir(env)) == []
    finally:
        stop(sandbox)


def test_a_quantisation_the_repo_lacks_lists_those_it_has(
    env: dict[str, str], hub: HubEmulator, tmp_path: Path
) -> None:
    with running_worker(env, tmp_path / "logs"):
        result = pendra(env, "pull", f"hf.co/{TINY}:Q5_K_M")
    assert result.returncode == 1 and result.stdout == ""
    assert f"hf.co/{TINY} has no Q5_K_M GGUF" in result.stderr
    assert "it has: Q4_K_M, Q8_0" in result.stderr and "Traceback" not in result.stderr
    assert tree(models_dir(env)) == []
    assert hub.cdn.requests == []


def test_a_tampered_file_leaves_nothing_in_the_modelstore(
    env: dict[str, str], hub: HubEmulator, tmp_path: Path
) -> None:
    # The CDN serves other bytes for part 2 than the Hub's LFS hash says. The projector is
    # downloaded (and verified) before it: it must go too.
    part2 = next(f for p, f in hub.repos[SPLIT].files.items() if "00002-of" in p)
    part2.served = blob(tmp_path / "evil.gguf", part2.size, 99)
    with running_worker(env, tmp_path / "logs"):
        result = pendra(env, "pull", f"hf.co/{SPLIT}")
    assert result.returncode == 1, result.stdout
    assert "does not match the pinned SHA-256" in result.stderr and part2.sha256 in result.stderr
    assert "Traceback" not in result.stderr
    assert any("mmproj" in r.path or part2.sha256 in r.path for r in hub.cdn.requests)
    assert tree(models_dir(env)) == []


def test_gated_repo_without_then_with_a_token_that_goes_only_to_the_hub(
    env: dict[str, str], hub: HubEmulator, tmp_path: Path
) -> None:
    page = f"{hub.url}/{GATED}"
    with running_worker(env, tmp_path / "logs", "no-token"):
        refused = pendra(env, "pull", f"hf.co/{GATED}")
    assert refused.returncode == 1
    assert f"hf.co/{GATED} is a gated repository: accept its licence at {page}." in refused.stderr
    assert "HF_TOKEN" in refused.stderr and "Traceback" not in refused.stderr
    assert tree(models_dir(env)) == []

    other = {**env, "HF_TOKEN": TOKEN_OTHER}
    with running_worker(other, tmp_path / "logs", "other-token"):
        refused = pendra(other, "pull", f"hf.co/{GATED}")
    assert refused.returncode == 1 and "has no access yet" in refused.stderr

    granted = {**env, "HF_TOKEN": TOKEN_GRANTED}
    with running_worker(granted, tmp_path / "logs", "granted") as worker:
        pulled = pendra(granted, "pull", f"hf.co/{GATED}")
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        assert TOKEN_GRANTED not in worker.output()
    assert tree(models_dir(env))[0].endswith("Tiny-Gated-Q4_K_M.gguf")
    repo = hub.repos[GATED]
    authorised = [
        (r.method, r.path)
        for r in hub.requests
        if r.headers.get("Authorization") == f"Bearer {TOKEN_GRANTED}"
    ]
    download = f"/{GATED}/resolve/{repo.sha}/Tiny-Gated-Q4_K_M.gguf"
    assert ("HEAD", download) in authorised  # huggingface_hub checking access
    assert ("GET", download) in authorised  # the worker's own download, before the redirect
    assert sum(r.method == "GET" for r in hub.cdn.requests) == 1
    no_token_left_the_hub(hub, TOKEN_GRANTED, TOKEN_OTHER)


def test_resume_after_kill_9_of_the_worker_mid_download(
    env: dict[str, str], hub: HubEmulator, tmp_path: Path
) -> None:
    # A bigger Q8_0 file, sent slowly, so the worker can be killed in the middle of it.
    source = blob(tmp_path / "big-q8.gguf", 6 * 1024 * 1024, 7)
    item = hub.repos[TINY].add("Tiny-Chat-Q8_0.gguf", source)
    hub.publish()
    hub.cdn.delay_per_chunk_s = 0.05
    folder = models_dir(env) / "hf.co--bartowski--Tiny-Chat-GGUF--Q8_0"
    part = folder / ".Tiny-Chat-Q8_0.gguf.part"
    worker = spawn(["--no-ui"], env, tmp_path / "logs", "killed")
    try:
        wait_ready(env, worker)
        pull = subprocess.Popen(
            [sys.executable, "-m", "worker", "pull", f"hf.co/{TINY}:Q8_0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not (part.exists() and part.stat().st_size > 1024 * 1024):
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)
        worker.popen.wait(10)
        _, err = pull.communicate(timeout=60)
        assert pull.returncode != 0 and b"Traceback" not in err
    finally:
        worker.kill()
    have = part.stat().st_size
    assert 0 < have < item.size
    assert not (folder / "Tiny-Chat-Q8_0.gguf").exists()

    hub.cdn.delay_per_chunk_s = 0
    with running_worker(env, tmp_path / "logs", "restarted"):
        resumed = pendra(env, "pull", f"hf.co/{TINY}:Q8_0")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    last = hub.cdn.requests[-1]
    assert last.headers["Range"].startswith("bytes=")
    assert int(last.headers["Range"][6:-1]) >= have  # it went on from the partial file
    assert last.headers.get("If-Range") == f'"{item.sha256}"'
    assert (folder / "Tiny-Chat-Q8_0.gguf").read_bytes() == source.read_bytes()
    assert tree(folder) == ["Tiny-Chat-Q8_0.gguf", "Tiny-Chat-Q8_0.gguf.meta.json"]


def test_offline_and_without_a_worker(env: dict[str, str], hub: HubEmulator) -> None:
    # No worker: the CLI installs directly, the same way.
    pulled = pendra(env, "pull", f"hf://{TINY}")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert f"Installed hf.co/{TINY}:Q4_K_M into pendra" in pulled.stdout
    requests = len(hub.requests)
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    again = pendra(offline, "pull", f"hf.co/{TINY}")
    assert again.returncode == 0 and "already installed" in again.stdout
    missing = pendra(offline, "pull", f"hf.co/{TINY}:Q8_0")
    assert missing.returncode == 1 and "HF_HUB_OFFLINE is set" in missing.stderr
    assert len(hub.requests) == requests  # offline means no request at all
    wrong = pendra(env, "pull", f"{TINY}:Q4_K_M")
    assert wrong.returncode == 1 and f"write hf.co/{TINY}:Q4_K_M" in wrong.stderr


def test_without_q4_k_m_the_closest_is_installed_and_said(
    env: dict[str, str], hub: HubEmulator, tmp_path: Path
) -> None:
    repo = hub.repo("someone/Only-Big-GGUF")
    repo.add("Only-Big-Q8_0.gguf", blob(tmp_path / "q8.bin", 1000, 5))
    repo.add("Only-Big-Q5_K_M.gguf", blob(tmp_path / "q5.bin", 800, 6))
    hub.publish()
    pulled = pendra(env, "pull", "hf.co/someone/Only-Big-GGUF")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert "Installed hf.co/someone/Only-Big-GGUF:Q5_K_M into pendra" in pulled.stdout
    assert "has no Q4_K_M GGUF; installing Q5_K_M, the closest" in pulled.stdout
