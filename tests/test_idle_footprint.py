"""What an idle worker keeps out of memory, checked on the real process a user runs.

``pendra --no-ui`` connected to a real ``pendra sandbox``, run with Python's import log
(``PYTHONPROFILEIMPORTTIME``): until a request arrives it must not have imported the built-in
backend's request code or runner supervisor, llama.cpp, numpy, psutil (Linux reads /proc) or
watchfiles (Linux follows the models directory with inotify). A GGUF dropped into the models
directory must still appear without a restart: the light watcher works, it is not merely absent.
Then the first request loads what serving needs, and it serves.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import httpx
import pytest

from tests.link.link_procs import API_KEY, start_process_stack, stop, wait_for_models
from tests.test_operated_worker import wait_connected

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the /proc and inotify paths"),
]

LOADED_LATER = (
    "worker.backends.pendra.serving",
    "worker.backends.pendra.supervisor",
    "worker.backends.pendra.pool",
    "worker.backends.pendra.grammar",
    "llama_cpp",
    "numpy",
    "psutil",
    "watchfiles",
)


def imported(log: str) -> set[str]:
    """Module names in a ``-X importtime`` log."""
    return {m.group(1) for m in re.finditer(r"^import time:.*\|\s*([\w.]+)\s*$", log, re.M)}


def test_an_idle_worker_has_not_imported_what_serving_needs_until_a_request(
    tmp_path: Path, clean_env: dict[str, str], tiny_chat_gguf: Path
) -> None:
    # the import log goes to each process's stderr (the sandbox's is not read)
    stack = start_process_stack({**clean_env, "PYTHONPROFILEIMPORTTIME": "1"}, tmp_path, {})
    models_dir, worker, api_url = tmp_path / "models", stack.worker, stack.url
    try:
        # dropped in after the worker is up: only the directory watcher can make it appear
        wait_connected(stack.env)
        shutil.copy(tiny_chat_gguf, models_dir / "tiny.gguf.part")
        (models_dir / "tiny.gguf.part").rename(models_dir / "tiny.gguf")
        wait_for_models(api_url, {"tiny"}, worker)

        at_idle = imported(worker.err.read_text(errors="replace"))
        assert "worker.runtime" in at_idle and "worker.modelstore.inotify" in at_idle
        assert not at_idle & {*LOADED_LATER}, sorted(at_idle & {*LOADED_LATER})

        body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        answer = httpx.post(
            f"{api_url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {API_KEY}"},
            json=body,
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        after = imported(worker.err.read_text(errors="replace"))
        assert {"worker.backends.pendra.serving", "worker.backends.pendra.supervisor"} <= after
        assert "llama_cpp" not in after  # llama.cpp runs in the model's runner, never here
        assert stop(worker, 60) == 0
    finally:
        stack.close()
