"""get.sh for real: shellcheck, argument handling, the no-TTY refusal, and one installation's whole
life in a temporary HOME, installing this checkout: Ctrl-C while the venv is being made, Ctrl-C in
the pip phase, then a fresh install (piped, as `curl | bash` runs it) — all three from a directory
holding decoy `worker/`, `installer/`, `pip/`, `venv/` and `ensurepip/` packages — a re-run
(directly from the checkout) with a different key, and uninstalls among decoy files. PyPI is
the only network it needs; pip's cache (the developer's real one) makes the llama-cpp-python build
a cache hit, as on a user's second run. The control plane (catalogue and model files) is a server
on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import signal
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
    cmd: list[str] | str,
    env: dict[str, str],
    *,
    timeout: float = 240,
    stdin: str | None = None,
    cwd: Path | None = None,
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
        cwd=cwd or env["HOME"],
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
    for flag in ("--purge", "--remove-models", "--remove-all-models"):
        lonely = _run(["bash", str(GET_SH), flag], env, timeout=30)
        assert lonely.returncode == 1 and "only go with --uninstall" in lonely.stderr, flag
    assert "--docker" in helped.stdout and "never installs" in helped.stdout
    for other in ("--no-start", "--uninstall"):
        clash = _run(["bash", str(GET_SH), "--docker", other], env, timeout=30)
        assert clash.returncode == 1
        assert "does not go with --no-start or --uninstall" in clash.stderr
        assert "pendra stack up" in clash.stderr
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


def test_pendra_home_that_is_not_its_own_directory_is_refused(tmp_path: Path) -> None:
    """PENDRA_HOME=$HOME (or / or a parent) would make ~/logs, ~/cache, ~/venv pendra's."""
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    (home / "logs" / "mine.txt").write_text("the user's own logs")
    (home / "config.toml").write_text("# some other tool's config\n")
    before = _tree(tmp_path)
    for unsafe, why in (
        (home, "your home directory"),
        ("/", "root"),
        (tmp_path, "holds your home"),
    ):
        for args in (["--yes", "--no-start"], ["--uninstall", "--purge", "--yes"]):
            env = _env(home, PENDRA_HOME=str(unsafe), PENDRA_INSTALL_SOURCE=str(ROOT))
            done = _run(["bash", str(GET_SH), *args], env, timeout=30)
            assert done.returncode == 1, (unsafe, args, done.stderr)
            assert "cannot be pendra's directory" in done.stderr and why in done.stderr
            assert "==>" not in done.stderr
    assert _tree(tmp_path) == before
    assert (home / "logs" / "mine.txt").read_text() == "the user's own logs"


def test_a_venv_get_sh_did_not_make_is_left_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    venv = home / ".pendra" / "venv"
    venv.mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "my-project.txt").write_text("not pendra's")
    env = _env(home, PENDRA_INSTALL_SOURCE=str(ROOT))
    install = _run(["bash", str(GET_SH), "--yes", "--no-start"], env, timeout=60)
    assert install.returncode == 1 and "get.sh did not make it" in install.stderr
    uninstall = _run(["bash", str(GET_SH), "--uninstall", "--yes"], env, timeout=60)
    assert uninstall.returncode == 0, uninstall.stderr
    assert "Nothing of Pendra worker is installed" in uninstall.stderr
    assert f"{venv} (not made by get.sh)" in uninstall.stderr
    assert (venv / "my-project.txt").read_text() == "not pendra's"


def test_uninstall_without_an_installed_worker_keeps_every_model(tmp_path: Path) -> None:
    """Without the installed worker nothing can tell pendra's downloads from the user's files."""
    home = tmp_path / "home"
    models = home / ".pendra" / "models"
    models.mkdir(parents=True)
    (models / "mine.gguf").write_bytes(b"GGUF dropped in by hand")
    done = _run(
        ["bash", str(GET_SH), "--uninstall", "--remove-models", "--yes"], _env(home), timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "installed worker" in done.stderr and "none were removed" in done.stderr
    assert (models / "mine.gguf").read_bytes() == b"GGUF dropped in by hand"


# --------------------------------------------------------------------------------------------------
# The whole life of one installation


TINY = {"a": b"GGUF tiny model a " * 4096, "b": b"GGUF tiny model b " * 2048}


@pytest.fixture
def plane() -> Iterator[str]:
    """The control plane's catalogue (two tiny models pinned by SHA-256) and their files."""
    models = [
        {
            "id": "tiny",
            "name": "Tiny",
            "task": "chat",
            "variants": [
                {
                    "tag": tag,
                    "parameters": "1M",
                    "quantisation": "Q4_K_M",
                    "context_length": 512,
                    "size_bytes": len(data),
                    "backends": ["pendra"],
                    "gguf_url": f"/files/tiny-{tag}.Q4_K_M.gguf",
                    "gguf_sha256": hashlib.sha256(data).hexdigest(),
                }
                for tag, data in TINY.items()
            ],
        }
    ]
    catalogue = json.dumps({"version": 1, "models": models}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = catalogue
            if self.path.startswith("/files/tiny-"):
                body = TINY[self.path.removeprefix("/files/tiny-")[0]]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def _contents(root: Path) -> dict[str, bytes | str | None]:
    """Every entry under ``root``: file bytes, a link's target, None for a folder."""
    out: dict[str, bytes | str | None] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            out[key] = os.readlink(path)
        elif path.is_file():
            out[key] = path.read_bytes()
        else:
            out[key] = None
    return out


def _processes(*needles: str) -> list[str]:
    """Command lines of live processes that contain every needle (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(needle in cmdline for needle in needles):
            found.append(cmdline)
    return found


def _interrupt_when(
    cmd: list[str], env: dict[str, str], cwd: Path, *needles: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Start get.sh, and once a process matching ``needles`` runs, Ctrl-C its process group (what
    a terminal does). Returns get.sh's result and the command line that was running."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # A shell that started this suite in the background (`./test.sh &`) left SIGINT ignored,
        # and bash cannot trap a signal ignored on entry: give get.sh a terminal's default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen: list[str] = []
    deadline = time.monotonic() + 300
    while not seen and proc.poll() is None and time.monotonic() < deadline:
        seen = _processes(*needles)
        if not seen:
            time.sleep(0.02)  # polling for the phase to begin, not waiting for a result
    if seen:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.kill()
    out, err = proc.communicate(timeout=60)
    assert seen, f"never saw {needles} running; get.sh ended with {proc.returncode}: {err[-2000:]}"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), seen[0]


def _decoy_project(root: Path, witness: Path) -> Path:
    """A project folder with packages named like the ones get.sh runs: importing any of them
    records it in ``witness`` and fails."""
    for name in ("worker", "installer", "pip", "venv", "ensurepip"):
        package = root / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(
            f"import pathlib\npathlib.Path({str(witness)!r}).mkdir(exist_ok=True)\n"
            f"pathlib.Path({str(witness)!r}, {name!r}).touch()\nraise SystemExit(97)\n"
        )
        (package / "__main__.py").write_text("raise SystemExit(97)\n")
    return root


def _at_terminal(
    cmd: list[str], env: dict[str, str], typed: str
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with a terminal of its own (a pty) on which ``typed`` is typed."""
    if shutil.which("setsid") is None:
        pytest.skip("setsid (util-linux) is needed to give get.sh a terminal")
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            ["setsid", "--ctty", *cmd],
            env=env,
            cwd=env["HOME"],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(slave)
        slave = -1
        os.write(master, typed.encode())
        out, err = proc.communicate(timeout=120)
    finally:
        if slave != -1:
            os.close(slave)
        os.close(master)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _system_unit_dir_sandbox(system_dir: Path) -> list[str] | None:
    """A command prefix giving get.sh a private mount namespace in which ``system_dir`` is
    /etc/systemd/system, so a root uninstall meets another user's system unit without this
    machine's own units being at stake; None where that is not possible (then skipped)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None
    if not Path("/etc/systemd/system").is_dir():
        return None
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
    probe = subprocess.run(
        [*prefix, 'mount --bind "$0" /etc/systemd/system', str(system_dir)],
        capture_output=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return None
    return [*prefix, 'mount --bind "$0" /etc/systemd/system && exec "$@"', str(system_dir)]


def _wait_until_it_answers(
    link: Path, env: dict[str, str], process: subprocess.Popen[bytes], timeout_s: float = 90
) -> None:
    """Until the worker ``process`` answers ``pendra status`` on its admin socket."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the worker exited ({process.returncode})"
        if _run([str(link), "status", "--json"], env, timeout=60).returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError("the worker never answered on its admin socket")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_install_rerun_uninstall(tmp_path: Path, plane: str) -> None:
    from installer.service import ServiceSpec, render_systemd_unit
    from worker.keys import generate_key, read_key_file

    if not Path("/proc/self/cmdline").exists():
        pytest.skip("finds get.sh's processes through /proc (Linux)")

    home = tmp_path / "home"
    home.mkdir()
    pendra_home = home / ".pendra"
    venv = pendra_home / "venv"
    link = home / ".local" / "bin" / "pendra"
    first_key, second_key = generate_key(), generate_key()
    key_src = tmp_path / "downloaded.key"
    key_src.write_text(first_key.text + "\n")
    key_src.chmod(0o600)
    witness = tmp_path / "decoys-imported"
    project = _decoy_project(tmp_path / "project", witness)
    env = _env(home, PENDRA_INSTALL_SOURCE=str(ROOT))

    # 1. Ctrl-C while the new venv's pip is being bootstrapped (ensurepip): get.sh stops its
    #    whole process group, removes the half-made venv and exits 130.
    command = ["bash", str(GET_SH), "--yes", "--no-start"]
    stopped, running = _interrupt_when(command, env, project, str(venv), "ensurepip")
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "Interrupted: nothing is left running" in stopped.stderr
    assert _processes(str(home)) == [], f"still running after get.sh exited ({running})"
    assert not venv.exists()

    # 2. Ctrl-C in the pip phase (get.sh's own pip command running, with whatever build processes
    #    it started): nothing of it survives, and the venv stays marked as unfinished.
    stopped, running = _interrupt_when(command, env, project, f"{venv}/bin/python -I -m pip")
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert _processes(str(home)) == [], f"still running after get.sh exited ({running})"
    assert _processes("pip", str(venv)) == []
    assert (venv / ".pendra-get").read_text() == "installing\n"

    # 3. The next run, piped like `curl … | bash -s -- …` from the same decoy project folder,
    #    makes the venv afresh and succeeds.
    began = time.monotonic()
    first = _run(
        f"cat {GET_SH} | bash -s -- --yes --no-start --key-file {key_src}", env, cwd=project
    )
    fresh_s = time.monotonic() - began
    assert first.returncode == 0, first.stderr[-3000:]
    assert "making the virtualenv afresh" in first.stderr
    assert "Creating the virtualenv" in first.stderr
    assert not witness.exists(), sorted(p.name for p in witness.iterdir())
    assert "is ready" in first.stderr and "Next:" in first.stderr
    assert "is not on your PATH" in first.stderr  # ~/.local/bin is not on this PATH
    assert (venv / "bin" / "pendra").exists() and link.is_symlink()
    assert link.resolve() == (venv / "bin" / "pendra").resolve()
    assert (venv / ".pendra-get").read_text() == "ready\n"
    version = _run([str(link), "--version"], env, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("pendra-worker ")
    stored = pendra_home / "config.yaml"  # gpu_worker_private_key, as Pendra's docs keep it
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert f"gpu_worker_private_key: {first_key.text}" in stored.read_text()
    assert first_key.text not in first.stdout + first.stderr  # never echoed
    assert first_key.text not in (pendra_home / "logs" / "install.log").read_text()

    doctor = _run([str(link), "doctor", "--json"], {**env, "PENDRA_API_URL": plane}, timeout=90)
    document = json.loads(doctor.stdout)
    checks = {c["id"]: c for c in document["checks"]}
    assert doctor.returncode == 0, doctor.stdout
    assert checks["llama_cpp"]["status"] == "ok" and "cpu build" in checks["llama_cpp"]["detail"]
    assert checks["worker_key"]["status"] == "ok"

    # The user's own lines in the configuration, which a re-run must not touch.
    with stored.open("a") as handle:
        handle.write("# my own line\nlog_level: debug\n")
    env2 = _env(home)

    # 4. Re-run directly from the checkout (./get.sh installs the checkout it lives in), with a
    #    different key: the old one is backed up, and get.sh says where.
    key_src.write_text(second_key.text + "\n")
    began = time.monotonic()
    second = _run(["bash", str(GET_SH), "--yes", "--no-start", "--key-file", str(key_src)], env2)
    rerun_s = time.monotonic() - began
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"Upgrading pendra-worker from {ROOT}" in second.stderr
    assert "the cpu build is already installed; keeping it" in second.stderr
    assert "Building llama.cpp" not in second.stderr
    text = stored.read_text()
    assert text.endswith("# my own line\nlog_level: debug\n") and first_key.text not in text
    assert f"gpu_worker_private_key: {second_key.text}" in text
    (backup,) = pendra_home.glob("worker.key.*.bak")
    assert read_key_file(backup) == first_key
    assert str(backup) in second.stdout + second.stderr
    assert _run([str(link), "--version"], env2, timeout=60).returncode == 0

    # 5. Models installed by pendra into a shared folder (`models_dir = "~/Downloads"`), among
    #    the user's own files.
    downloads = home / "Downloads"
    downloads.mkdir()
    (downloads / "report.pdf").write_bytes(b"%PDF-1.7 the user's report")
    (downloads / "photo.jpg").write_bytes(b"\xff\xd8\xff a photo")
    (downloads / "mine.gguf").write_bytes(b"GGUF dropped in by hand")
    (downloads / "tax").mkdir()
    (downloads / "tax" / "2024.gguf").write_bytes(b"GGUF in a sub-folder")
    use = {
        **env2,
        "PENDRA_MODELS_DIR": str(downloads),
        "PENDRA_API_URL": plane,
        **{f"{kind}_ENDPOINT": "off" for kind in ("OLLAMA", "LMSTUDIO", "SPEACHES", "VLLM")},
        **{f"{kind}_ENDPOINT": "off" for kind in ("LLAMACPP", "TGI", "SGLANG", "LOCALAI")},
        "OPENAI_ENDPOINT": "off",
    }
    for ref in ("tiny:a", "tiny:b"):
        installed = _run([str(link), "models", "install", ref], use, timeout=120)
        assert installed.returncode == 0, installed.stderr
    pendras = {f"tiny-{t}.Q4_K_M.gguf{s}" for t in TINY for s in ("", ".meta.json")}
    assert pendras <= set(os.listdir(downloads))
    users = {k: v for k, v in _contents(downloads).items() if k not in pendras}

    # 6. Uninstalls that must change nothing.
    untouched = {k: v for k, v in _contents(home).items() if not k.startswith(".pendra/venv")}
    uninstall = ["bash", str(GET_SH), "--uninstall", "--remove-models"]
    for unsafe, why in (
        (home, "it is your home directory"),
        (Path("/"), "it is the root of the file system"),
        (tmp_path, "it holds your home directory"),
    ):
        refused = _run([*uninstall, "--yes"], {**use, "PENDRA_MODELS_DIR": str(unsafe)}, timeout=60)
        assert refused.returncode == 1, refused.stderr
        assert f"refusing to remove models from {unsafe}: {why}" in refused.stderr
        assert "nothing was changed" in refused.stderr and "Traceback" not in refused.stderr
    no_terminal = _run(uninstall, use, timeout=60)
    assert no_terminal.returncode == 1 and "no terminal to ask on" in no_terminal.stderr
    declined = _at_terminal([*uninstall[:2], "--uninstall", "--remove-all-models"], use, "\n")
    assert declined.returncode == 1 and "Nothing removed." in declined.stderr
    assert "Remove them? [y/N]" in declined.stderr
    listed = declined.stderr.split("This removes:")[1].split("and keeps:")[0]
    assert f"{downloads / 'mine.gguf'} (" in listed  # --remove-all-models lists the user's GGUFs
    assert "report.pdf" not in listed and "2024.gguf" not in listed
    assert all(f"{downloads / name} (" in listed for name in pendras)
    assert {
        k: v for k, v in _contents(home).items() if not k.startswith(".pendra/venv")
    } == untouched
    assert _run([str(link), "--version"], env2, timeout=60).returncode == 0

    # 7. The uninstall: this installation's user unit goes; another user's system unit (root
    #    uninstall) stays; only pendra's downloads leave the shared folder.
    user_unit = home / ".config" / "systemd" / "user" / "pendra.service"
    user_unit.parent.mkdir(parents=True)
    printed = _run([str(link), "service", "install", "--print"], env2, timeout=60)
    user_unit.write_text(printed.stdout)  # what `pendra service install` writes for this install
    system_dir = tmp_path / "etc-systemd-system"
    system_dir.mkdir()
    bob = ServiceSpec(
        exec_path=Path("/home/bob/.pendra/venv/bin/pendra"),
        home=Path("/home/bob/.pendra"),
        system=True,
        run_as="bob",
    )
    (system_dir / "pendra.service").write_text(render_systemd_unit(bob))
    sandbox = _system_unit_dir_sandbox(system_dir)
    #    A worker running in a terminal (no service) is drained and stops with the uninstall.
    foreground = subprocess.Popen(
        [str(link), "--no-ui"],
        env=use,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_it_answers(link, use, foreground)
        removed = _run([*(sandbox or []), *uninstall, "--yes"], use, timeout=180)
        assert foreground.wait(timeout=30) == 0  # drained: a clean exit
    finally:
        if foreground.poll() is None:
            foreground.kill()
            foreground.wait()
    assert removed.returncode == 0, removed.stderr
    assert f"the running worker (pid {foreground.pid})" in removed.stderr
    assert not user_unit.exists()
    if sandbox is not None:
        assert (system_dir / "pendra.service").read_text() == render_systemd_unit(bob)
        assert "another installation's worker (/home/bob/.pendra/venv/bin/pendra)" in removed.stdout
    assert _contents(downloads) == users  # pendra's four files gone, the rest byte for byte
    assert not venv.exists() and not link.exists() and not link.is_symlink()
    left = _tree(pendra_home)
    assert {"config.yaml", backup.name} <= left
    assert not any(p.startswith(("venv", "run")) for p in left)
    kept = removed.stderr.split("Kept:")[1]
    assert "mine.gguf (not downloaded by pendra" in kept and "other entries" in kept

    # 8. --purge takes configuration, key and its backups; the shared folder stays as it is.
    purged = _run([*uninstall, "--purge", "--yes"], use, timeout=60)
    assert purged.returncode == 0, purged.stderr
    assert not pendra_home.exists()
    assert _contents(downloads) == users
    print(f"\nget.sh fresh install: {fresh_s:.1f} s, re-run: {rerun_s:.1f} s")
