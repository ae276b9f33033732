"""``pendra stack`` end to end against a real Docker daemon (a private one, see conftest).

A ``pendra sandbox`` runs on the host; ``pendra stack up`` builds the worker image from this very
installation on a debootstrap base image (no compiler, no network: the base even lacks llama.cpp's
libgomp, which is copied from the host) and starts the container with the host's network. The
containerised worker connects to the sandbox, discovers an Ollama emulator on the host through
``host.docker.internal`` — mapped to 127.0.0.2, where nothing answers on ``localhost``, so only
that name can have found it — and the host's ``pendra models install`` reaches it through its admin
socket on a bind mount and installs the Gemma test model from the control plane into the models
volume. The official ``openai`` client streams a completion through the sandbox; ``docker stop``
in the middle of a stream drains it and the worker exits 0. The key is nowhere in ``docker
inspect``, the image's layers or ``docker logs``; ``pendra stack down`` keeps the volume.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from stack_support import SANDBOX_API_KEY, pendra, spawn_until, start_sandbox, stop_process

from worker.keys import parse_key

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

HOST_ALIAS_ADDRESS = "127.0.0.2"  # host.docker.internal inside the container
OLLAMA_PORT = 11434
MODEL = "gemma3:270m"
HERE = Path(__file__).resolve().parent
OTHER_BACKENDS_OFF = {
    f"{kind.upper()}_ENDPOINT": "off"
    for kind in ("lmstudio", "speaches", "vllm", "llamacpp", "tgi", "sglang", "localai", "openai")
}


@pytest.fixture
def sandbox(docker_env: dict[str, str], pendra_home: Path, tmp_path: Path) -> Iterator[str]:
    """``pendra sandbox`` on the host; its worker key is the one the stack mounts."""
    url, proc = start_sandbox(docker_env, pendra_home / "worker.key", tmp_path / "sandbox.log")
    try:
        yield url
    finally:
        stop_process(proc)


@pytest.fixture
def host_ollama(docker_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """An Ollama emulator on the host at 127.0.0.2:11434 (its default port)."""
    argv = [sys.executable, str(HERE / "emulator_proc.py"), "ollama", HOST_ALIAS_ADDRESS]
    argv.append(str(OLLAMA_PORT))
    proc = spawn_until(argv, docker_env, "READY", tmp_path / "ollama.log")
    try:
        yield f"http://{HOST_ALIAS_ADDRESS}:{OLLAMA_PORT}"
    finally:
        stop_process(proc)


def _contains_anywhere(chunks: Iterator[bytes], needle: bytes) -> bool:
    tail = b""
    for chunk in chunks:
        window = tail + chunk
        if needle in window:
            return True
        tail = window[-len(needle) :]
    return False


def _volume_listing(client: Any, image: str, volume: str) -> str:
    from docker.types import Mount

    out = client.containers.run(
        image,
        ["ls", "-ln", "/v"],
        entrypoint=[],
        mounts=[Mount("/v", volume, type="volume", read_only=True)],
        network_mode="none",
        remove=True,
        user="0",
    )
    return out.decode()


def test_stack_up_serves_through_the_sandbox_and_stops_cleanly(
    docker_env: dict[str, str],
    docker_client: Any,
    base_image: str,
    sandbox: str,
    host_ollama: str,
    gemma_gguf: Path,
    pendra_home: Path,
) -> None:
    from openai import OpenAI

    # One llama.cpp thread and a generous drain: the CI box has two busy cores (as the other
    # process tests do); PENDRA_THREADS also shows the shell's settings reaching the container.
    env = {
        **docker_env,
        "PENDRA_API_URL": sandbox,
        "PENDRA_THREADS": "1",
        "PENDRA_DRAIN_TIMEOUT": "60",
        **OTHER_BACKENDS_OFF,
    }
    key_text = (pendra_home / "worker.key").read_text().strip()
    parse_key(key_text)  # the sandbox's key, in the console's form

    # -- up: image built from this installation, worker connected -------------------------------
    started = time.monotonic()
    options = ["--network", "host", "--host-address", HOST_ALIAS_ADDRESS]
    up = pendra(["stack", "up", *options, "--base-image", base_image, "--json"], env)
    assert up.returncode == 0, up.stdout + up.stderr
    print(f"first `pendra stack up`: {time.monotonic() - started:.1f} s")
    assert "building pendra-worker:" in up.stderr and "no compiler, no network" in up.stderr
    assert "lacks libgomp.so.1" in up.stderr  # minbase has no libgomp: the host's is copied
    document = json.loads(up.stdout)
    assert document["worker"]["worker"]["state"] == "connected"
    (row,) = document["containers"]
    assert row["name"] == "pendra-worker-1" and row["state"] == "running"
    image_tag = row["image"]

    # Options are remembered; an unchanged installation reuses its image.
    again = pendra(["stack", "up"], env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "reusing the image" in again.stderr and "building" not in again.stderr

    container = docker_client.containers.get("pendra-worker-1")
    attrs = container.attrs
    assert "PENDRA_THREADS=1" in attrs["Config"]["Env"]
    assert attrs["Config"]["User"] == "10001:10001"  # root on the host → the image's own user
    assert attrs["Config"]["StopSignal"] == "SIGTERM" and attrs["Config"]["StopTimeout"] == 45
    assert attrs["Config"]["Healthcheck"]["Test"] == ["CMD", "pendra", "healthcheck"]
    host_config = attrs["HostConfig"]
    assert host_config["Init"] is True and host_config["ReadonlyRootfs"] is True
    assert host_config["CapDrop"] == ["ALL"] and host_config["NetworkMode"] == "host"
    assert host_config["ExtraHosts"] == [f"host.docker.internal:{HOST_ALIAS_ADDRESS}"]
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/models"]["Type"] == "volume" and mounts["/models"]["Name"] == "pendra-models"
    secret = mounts["/run/secrets/pendra_worker_key"]
    assert secret["Type"] == "bind" and secret["RW"] is False
    copy = pendra_home / "stack" / "worker.key"
    info = copy.stat()
    assert stat.S_IMODE(info.st_mode) == 0o400 and info.st_uid == 10001
    seen = container.exec_run(["stat", "-c", "%a %u", "/run/secrets/pendra_worker_key"])
    assert seen.output.decode().strip() == "400 10001"

    # -- the host's CLI reaches the containerised worker ---------------------------------------
    status = pendra(["status", "--json"], env)
    assert status.returncode == 0, status.stderr
    backends = {b["name"]: b for b in json.loads(status.stdout)["backends"]}
    assert backends["ollama"]["status"] == "ready"
    assert backends["ollama"]["endpoint"] == f"http://host.docker.internal:{OLLAMA_PORT}"
    health = container.exec_run(["pendra", "healthcheck"])
    assert health.exit_code == 0 and b"healthy" in health.output

    install = pendra(["models", "install", MODEL], env)
    assert install.returncode == 0, install.stdout + install.stderr
    listing = _volume_listing(docker_client, base_image, "pendra-models")
    assert "gemma-3-270m-q4_k_m.gguf" in listing and " 10001 " in listing

    # -- a completion streams through the sandbox; docker stop mid-stream drains it ------------
    client = OpenAI(base_url=f"{sandbox}/v1", api_key=SANDBOX_API_KEY, timeout=120)
    deadline = time.monotonic() + 60
    while MODEL not in {m.id for m in client.models.list().data}:
        assert time.monotonic() < deadline, "the sandbox never listed the installed model"
        time.sleep(0.2)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count from one to twenty."}],
        max_tokens=32,
        temperature=0,
        stream=True,
    )
    pieces: list[str] = []
    finish: str | None = None
    stopper: threading.Thread | None = None
    try:
        for chunk in stream:
            if not chunk.choices:
                continue
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
            if stopper is None and "".join(pieces):
                stopper = threading.Thread(target=container.stop, kwargs={"timeout": 45})
                stopper.start()  # SIGTERM while the stream is still running
    except Exception as exc:
        raise AssertionError(f"{exc}; the worker's log:\n{container.logs().decode()}") from exc
    assert stopper is not None
    stopper.join(timeout=60)
    assert finish in {"length", "stop"} and "".join(pieces)
    container.reload()
    assert container.status == "exited"
    assert container.attrs["State"]["ExitCode"] == 0
    logs = container.logs()
    assert b"draining: 1 request(s) in flight" in logs and b"pendra worker stopped" in logs

    # -- the key is nowhere but in its file ------------------------------------------------------
    needle = key_text.encode()
    assert needle not in json.dumps(docker_client.api.inspect_container(container.id)).encode()
    assert needle not in json.dumps(docker_client.api.inspect_image(image_tag)).encode()
    assert not _contains_anywhere(docker_client.images.get(image_tag).save(), needle)
    assert needle not in logs

    # -- down: containers gone, the models volume and the key stay ------------------------------
    down = pendra(["stack", "down"], env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "kept the models (volume pendra-models)" in down.stdout
    assert not docker_client.containers.list(all=True, filters={"label": "ai.pendra.stack=1"})
    assert "gemma-3-270m-q4_k_m.gguf" in _volume_listing(docker_client, base_image, "pendra-models")
    assert (pendra_home / "worker.key").read_text().strip() == key_text
    after = pendra(["stack", "status"], env)
    assert after.returncode == 3 and "not running" in after.stdout
    gone = pendra(["status"], env)
    assert gone.returncode == 3

    # -- the same project as a compose.yaml, run by a real Compose ------------------------------
    compose_file = pendra_home / "compose.yaml"
    written = pendra(["stack", "compose", "-o", str(compose_file)], env)
    assert written.returncode == 0, written.stdout + written.stderr
    project = yaml.safe_load(compose_file.read_text())
    worker = project["services"]["worker"]
    assert project["name"] == "pendra" and worker["image"] == image_tag
    assert worker["network_mode"] == "host" and worker["user"] == "10001:10001"
    assert worker["build"]["network"] == "none" and worker["build"]["args"] == {
        "BASE_IMAGE": base_image
    }
    context = Path(worker["build"]["context"])
    assert (context / "Dockerfile").is_file() and (context / "hostlib" / "libgomp.so.1").is_file()
    assert any((context / "wheelhouse").glob("llama_cpp_python-*.whl"))
    assert project["secrets"]["pendra_worker_key"]["file"] == str(copy)
    assert key_text not in compose_file.read_text()
    # Compose v2 (`docker compose`) runs the file as written when this machine has it; else
    # Compose v1 (Debian bookworm's) checks it against the Compose Specification and runs it: it
    # predates only the top-level `name`, given to it as -p instead.
    v2 = subprocess.run(["docker", "compose", "version"], env=env, capture_output=True, text=True)
    if v2.returncode == 0:
        print(f"\n{v2.stdout.strip()} runs the compose.yaml")
        compose = ["docker", "compose", "--file", str(compose_file)]
    else:
        v1_file = pendra_home / "compose-v1.yaml"
        v1_file.write_text(yaml.safe_dump({k: v for k, v in project.items() if k != "name"}))
        compose = ["docker-compose", "--project-name", "pendra", "--file", str(v1_file)]
    checked = subprocess.run([*compose, "config", "--quiet"], env=env, capture_output=True)
    assert checked.returncode == 0, checked.stderr.decode()
    started = subprocess.run(
        [*compose, "up", "--detach", "--no-build"], env=env, capture_output=True
    )
    assert started.returncode == 0, started.stderr.decode()
    deadline = time.monotonic() + 90
    while True:
        status = pendra(["status", "--json"], env)
        if status.returncode == 0 and json.loads(status.stdout)["worker"]["state"] == "connected":
            break
        assert time.monotonic() < deadline, status.stdout + status.stderr
        time.sleep(0.5)
    listed = json.loads(pendra(["stack", "status", "--json"], env).stdout)
    assert [c["service"] for c in listed["containers"]] == ["worker"]
    # pendra stack down removes what Compose started: one project, whichever driver.
    assert pendra(["stack", "down"], env).returncode == 0
    assert not docker_client.containers.list(all=True, filters={"label": "ai.pendra.stack=1"})
    assert docker_client.volumes.get("pendra-models")


HOST_USER = 1000  # a host user that is not root
OTHER_USER = 1001
RAW_STATUS = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("refused")
    sys.exit(0)
s.sendall(b"GET /v1/status HTTP/1.0\\r\\nHost: pendra-worker\\r\\n\\r\\n")
data = b"".join(iter(lambda: s.recv(65536), b""))
head, _, body = data.partition(b"\\r\\n\\r\\n")
print(head.split(b" ")[1].decode(), json.loads(body)["worker"]["state"])
"""


def _as_user(uid: int, argv: list[str]) -> str:
    """``argv`` as ``uid`` (setpriv: no account needed), with the system Python."""
    done = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_worker_runs_as_a_host_user_who_alone_may_use_its_socket(
    docker_env: dict[str, str],
    docker_client: Any,
    base_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What ``pendra stack up`` does for a user who is not root: the container runs as that user
    (the named volumes handed over to it first), the key copy and the socket are that user's, and
    that user — not another — reaches the worker through the socket on the bind mount. The
    commands run in this process (as root) with the user's id set on the spec; the socket is then
    tried as the host user and as another user for real."""
    import os
    import shutil
    import tempfile
    from dataclasses import replace

    from installer.stack import prepare_host_files
    from installer.stack_docker import DockerStack
    from installer.stack_image import ensure_image
    from installer.stack_run import build_spec, resolve, worker_status
    from worker.admin.locate import stack_socket
    from worker.settings import load_settings

    python = "/usr/bin/python3"
    if shutil.which("setpriv") is None or not Path(python).exists():
        pytest.skip("needs setpriv and a system /usr/bin/python3 to act as another user")
    # The user's home, where that user (and only they) can reach it.
    top = Path(tempfile.mkdtemp(prefix="pendra-host-user-", dir="/tmp"))
    top.chmod(0o755)
    home = top / ".pendra"
    home.mkdir(mode=0o700)
    url, proc = start_sandbox(docker_env, home / "worker.key", tmp_path / "sandbox.log")
    stack: DockerStack | None = None
    try:
        for path in (home, home / "worker.key"):
            os.chown(path, HOST_USER, HOST_USER)
        monkeypatch.setenv("PENDRA_HOME", str(home))
        monkeypatch.setenv("PENDRA_API_URL", url)
        monkeypatch.setenv("PENDRA_THREADS", "1")
        for name, value in OTHER_BACKENDS_OFF.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("OLLAMA_ENDPOINT", "off")
        settings = load_settings()
        image = ensure_image(docker_client, base_image=base_image, progress=print).tag
        resolved = resolve(settings, {"network": "host"})
        spec = replace(build_spec(settings, resolved, image), run_as=(HOST_USER, HOST_USER))
        assert spec.needs_volume_init
        prepare_host_files(spec, resolved.paths)
        os.chown(resolved.paths.dir, HOST_USER, HOST_USER)  # made by the user's own `stack up`
        stack = DockerStack(docker_client, print)
        container = stack.up(spec, resolved.paths)
        document = stack.wait_until_connected(container, lambda: worker_status(settings), 120)
        assert document is not None and document["worker"]["state"] == "connected"

        assert container.attrs["Config"]["User"] == f"{HOST_USER}:{HOST_USER}"
        listing = _volume_listing(docker_client, base_image, "pendra-home")
        assert f" {HOST_USER} {HOST_USER} " in listing  # handed over, and written by the worker
        secret = resolved.paths.secret.stat()
        assert (secret.st_uid, stat.S_IMODE(secret.st_mode)) == (HOST_USER, 0o400)
        socket_path = str(stack_socket(home))
        assert _as_user(HOST_USER, [python, "-c", RAW_STATUS, socket_path]) == "200 connected"
        assert _as_user(OTHER_USER, [python, "-c", RAW_STATUS, socket_path]) == "refused"
    finally:
        if stack is not None:
            stack.down()
        stop_process(proc)
        shutil.rmtree(top, ignore_errors=True)
