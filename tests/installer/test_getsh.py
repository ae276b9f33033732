"""get.sh for real: shellcheck, argument handling, the no-TTY refusal, and one fresh install
(piped, as `curl | bash` runs it) + one re-run (directly from the checkout) + uninstalls, each in a
temporary HOME, installing this checkout. PyPI is the only network it needs; pip's cache (the
developer's real one) makes the llama-cpp-python build a cache hit, as on a user's second run."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GET_SH = ROOT / "get.sh"


def _base_python() -> str:
    """The interpreter behind this venv: pip's wheel cache is keyed by Python version, so using
    the same one lets the fresh venv reuse the llama-cpp-python wheel built for the dev venv."""
    return getattr(sys, "_base_executable", sys.executable)


def _pip_cache_dir() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True, timeout=60
    )
    return done.stdout.strip() or str(Path.home() / ".cache" / "pip")


def _env(home: Path, **extra: str) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        HOME=str(home),
        PIP_CACHE_DIR=_pip_cache_dir(),
        PENDRA_PYTHON=_base_python(),
        # The prebuilt-wheel host is not reachable from here; skip the probe's DNS wait.
        PENDRA_WHEEL_INDEX="off",
        NO_COLOR="1",
    )
    env.update(extra)
    return env


def _run(
    cmd: list[str] | str, env: dict[str, str], *, timeout: float = 240, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    # start_new_session: no controlling terminal, exactly like a CI job or `ssh host cmd`.
    return subprocess.run(
        cmd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
        shell=isinstance(cmd, str),
        cwd=env["HOME"],
    )


def test_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (Debian: apt-get install -y shellcheck)")
    done = subprocess.run(["shellcheck", str(GET_SH)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


def test_truncated_download_runs_nothing(tmp_path: Path) -> None:
    """Everything is inside main(), called on the last line: a cut-off script must do nothing."""
    text = GET_SH.read_bytes()
    assert text.rstrip().endswith(b'main "$@"')
    for fraction in (0.1, 0.3, 0.5, 0.7, 0.9, 0.999):
        home = tmp_path / f"cut-{fraction}"
        home.mkdir()
        env = _env(home, PENDRA_INSTALL_SOURCE=str(ROOT))
        cut = text[: int(len(text) * fraction)]
        done = _run(
            ["bash", "-s", "--", "--yes", "--no-start"], env, timeout=30, stdin=cut.decode()
        )
        assert done.returncode != 0, fraction
        assert "==>" not in done.stderr, fraction  # no step ever started
        assert not (home / ".pendra").exists(), fraction


def test_help_and_bad_arguments(tmp_path: Path) -> None:
    env = _env(tmp_path)
    helped = _run(["bash", str(GET_SH), "--help"], env, timeout=30)
    assert helped.returncode == 0 and "--no-ui" in helped.stdout and "--uninstall" in helped.stdout
    bad = _run(["bash", str(GET_SH), "--frobnicate"], env, timeout=30)
    assert bad.returncode == 1 and "unknown option: --frobnicate" in bad.stderr
    lonely = _run(["bash", str(GET_SH), "--purge"], env, timeout=30)
    assert lonely.returncode == 1 and "only go with --uninstall" in lonely.stderr
    missing = _run(
        ["bash", str(GET_SH), "--yes", "--key-file", str(tmp_path / "nope")], env, timeout=30
    )
    assert missing.returncode == 1 and "cannot read the key file" in missing.stderr
    sh = _run(["sh", str(GET_SH), "--help"], env, timeout=30)
    if Path("/bin/sh").resolve().name != "bash":
        assert sh.returncode == 1 and "needs bash" in sh.stderr
    assert not (tmp_path / ".pendra").exists()


def test_no_tty_and_no_flags_refuses_before_doing_anything(tmp_path: Path) -> None:
    env = _env(tmp_path, PENDRA_INSTALL_SOURCE=str(ROOT))
    done = _run(f"cat {GET_SH} | bash", env, timeout=30)
    assert done.returncode != 0
    assert "no terminal here" in done.stderr and "--yes" in done.stderr and "--no-ui" in done.stderr
    assert not (tmp_path / ".pendra").exists()


@pytest.fixture
def local_api() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"version": 1, "models": []}')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_install_rerun_uninstall(tmp_path: Path, local_api: str) -> None:
    from worker.keys import generate_key

    home = tmp_path / "home"
    home.mkdir()
    pendra_home = home / ".pendra"
    venv = pendra_home / "venv"
    link = home / ".local" / "bin" / "pendra"
    key_text = generate_key().text
    key_src = tmp_path / "downloaded.key"
    key_src.write_text(key_text + "\n")
    key_src.chmod(0o600)

    # 1. Fresh install, piped like `curl … | bash -s -- …`, from this checkout, storing a key.
    env = _env(home, PENDRA_INSTALL_SOURCE=str(ROOT))
    began = time.monotonic()
    first = _run(f"cat {GET_SH} | bash -s -- --yes --no-start --key-file {key_src}", env)
    fresh_s = time.monotonic() - began
    assert first.returncode == 0, first.stderr[-3000:]
    assert "is ready" in first.stderr and "Next:" in first.stderr
    assert "is not on your PATH" in first.stderr  # ~/.local/bin is not on this PATH
    assert (venv / "bin" / "pendra").exists() and link.is_symlink()
    assert link.resolve() == (venv / "bin" / "pendra").resolve()
    version = _run([str(link), "--version"], env, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("pendra-worker ")
    stored = pendra_home / "worker.key"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert key_text not in first.stdout + first.stderr  # never echoed
    assert key_text not in (pendra_home / "logs" / "install.log").read_text()

    doctor = _run([str(link), "doctor", "--json"], {**env, "PENDRA_API_URL": local_api}, timeout=90)
    document = json.loads(doctor.stdout)
    checks = {c["id"]: c for c in document["checks"]}
    assert doctor.returncode == 0, doctor.stdout
    assert checks["llama_cpp"]["status"] == "ok" and "cpu build" in checks["llama_cpp"]["detail"]
    assert checks["worker_key"]["status"] == "ok"

    # The user's own files, which a re-run must not touch.
    config = pendra_home / "config.toml"
    config.write_text('log_level = "debug"\n')
    models = pendra_home / "models"
    models.mkdir()
    (models / "mine.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    key_before = stored.read_bytes()

    # 2. Re-run directly from the checkout (./get.sh installs the checkout it lives in).
    env2 = _env(home)
    began = time.monotonic()
    second = _run(["bash", str(GET_SH), "--yes", "--no-start"], env2)
    rerun_s = time.monotonic() - began
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"Upgrading pendra-worker from {ROOT}" in second.stderr
    assert "the cpu build is already installed; keeping it" in second.stderr
    assert "Building llama.cpp" not in second.stderr
    assert config.read_text() == 'log_level = "debug"\n'
    assert stored.read_bytes() == key_before and stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert _run([str(link), "--version"], env2, timeout=60).returncode == 0

    # 3. --no-ui on a host without systemd would run in the foreground; without a key it refuses.
    # (covered by the service tests; here: uninstall keeps config, key and models)
    removed = _run(["bash", str(GET_SH), "--uninstall"], env2, timeout=120)
    assert removed.returncode == 0, removed.stderr
    assert not venv.exists() and not link.exists() and not link.is_symlink()
    left = _tree(pendra_home)
    assert {"config.toml", "worker.key", "models", "models/mine.gguf"} <= left
    assert not any(p.startswith(("venv", "run")) for p in left)
    assert "Kept:" in removed.stderr and "--remove-models" in removed.stderr

    purged = _run(
        ["bash", str(GET_SH), "--uninstall", "--purge", "--remove-models"], env2, timeout=60
    )
    assert purged.returncode == 0, purged.stderr
    assert not pendra_home.exists()
    print(f"\nget.sh fresh install: {fresh_s:.1f} s, re-run: {rerun_s:.1f} s")
