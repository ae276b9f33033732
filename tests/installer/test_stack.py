"""The Docker stack: compose generation (GPU reservations, volumes, host-gateway, the key as a
secret file and never in the environment), the compose driver's commands, the Dockerfiles, and a
real run where a Docker daemon exists (none runs on this box or in CI, so that test skips)."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from installer import stack
from installer.checks.probes import CommandResult
from installer.stack import Stack, StackError, StackSpec, render_compose, to_yaml

ROOT = Path(__file__).resolve().parents[2]


def spec(tmp_path: Path, **kw: object) -> StackSpec:
    key = tmp_path / "worker.key"
    if not key.exists():
        key.write_text("pdk_not_a_real_key_but_secret_text\n")
        key.chmod(0o600)
    return StackSpec(build_context=ROOT, key_file=key, **kw)  # type: ignore[arg-type]


def test_cpu_compose(tmp_path: Path) -> None:
    doc = render_compose(spec(tmp_path, api_url="https://api.example"))
    worker = doc["services"]["worker"]
    assert list(doc["services"]) == ["worker"]
    assert worker["build"] == {"context": str(ROOT), "dockerfile": "Dockerfile"}
    assert worker["extra_hosts"] == ["host.docker.internal:host-gateway"]
    assert "pendra-models:/models" in worker["volumes"]
    assert doc["volumes"] == {"pendra-home": {}, "pendra-models": {}}
    assert "deploy" not in worker
    assert worker["environment"]["PENDRA_WORKER_KEY_FILE"] == "/run/secrets/pendra_worker_key"
    assert worker["environment"]["PENDRA_API_URL"] == "https://api.example"
    assert doc["secrets"] == {"pendra_worker_key": {"file": str(tmp_path / "worker.key")}}
    assert worker["secrets"] == [{"source": "pendra_worker_key", "target": "pendra_worker_key"}]


def test_gpu_compose_with_ollama_and_host_models(tmp_path: Path) -> None:
    doc = render_compose(
        spec(tmp_path, gpu=True, with_ollama=True, models=tmp_path / "models", run_as=(1000, 1000))
    )
    reservation = {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    for name in ("worker", "ollama"):
        devices = doc["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [reservation]
    worker = doc["services"]["worker"]
    assert worker["build"]["dockerfile"] == "Dockerfile.cuda"
    assert worker["image"].endswith("-cuda")
    assert worker["environment"]["OLLAMA_ENDPOINT"] == "http://ollama:11434"
    assert worker["depends_on"] == ["ollama"]
    assert worker["user"] == "1000:1000"
    assert f"{tmp_path / 'models'}:/models" in worker["volumes"]
    assert "pendra-models" not in doc["volumes"] and "ollama" in doc["volumes"]


def test_no_secret_in_any_environment(tmp_path: Path) -> None:
    s = spec(tmp_path, gpu=True, with_ollama=True)
    text = to_yaml(render_compose(s))
    assert "pdk_not_a_real_key" not in text
    for service in render_compose(s)["services"].values():
        assert "PENDRA_WORKER_KEY" not in service.get("environment", {})
    with pytest.raises(StackError, match="looks like a secret"):
        render_compose(spec(tmp_path, extra_env={"PENDRA_WORKER_KEY": "pdk_x"}))
    with pytest.raises(StackError):
        render_compose(spec(tmp_path, extra_env={"HF_TOKEN": "hf_x"}))
    assert render_compose(spec(tmp_path, extra_env={"PENDRA_LOG_LEVEL": "debug"}))


def test_yaml_round_trips_exactly(tmp_path: Path) -> None:
    for s in (spec(tmp_path), spec(tmp_path, gpu=True, with_ollama=True, run_as=(1, 2))):
        doc = render_compose(s)
        assert yaml.safe_load(to_yaml(doc)) == doc
    odd = {"a b": ["x: y", "- z", "#c", "yes", "1.0", ""], "n": 3, "t": True, "e": [], "m": {}}
    assert yaml.safe_load(to_yaml(odd)) == odd


def test_prepare_secret(tmp_path: Path) -> None:
    key = tmp_path / "worker.key"
    with pytest.raises(StackError, match="no worker key"):
        stack.prepare_secret(key, tmp_path / "stack", as_root=False)
    key.write_text("pdk_secret\n")
    key.chmod(0o600)
    assert stack.prepare_secret(key, tmp_path / "stack", as_root=False) == key
    if os.geteuid() != 0:
        pytest.skip("the root path chowns the copy to the image's uid, which needs root")
    copy = stack.prepare_secret(key, tmp_path / "stack", as_root=True)
    info = copy.stat()
    assert stat.S_IMODE(info.st_mode) == 0o400 and info.st_uid == stack.IMAGE_UID
    assert copy.read_text() == "pdk_secret\n"


class Recorder:
    def __init__(self, answers: dict[tuple[str, ...], CommandResult]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(tuple(argv))
        return self.answers.get(tuple(argv), CommandResult(0, ""))


def test_compose_v2_driver_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No Compose v2 on this box: the docker CLI is faked by a recorder; the compose file is real.
    monkeypatch.setattr(stack.shutil, "which", lambda name: f"/usr/bin/{name}")
    run = Recorder({("docker", "compose", "version", "--short"): CommandResult(0, "2.29.7\n")})
    s = Stack(spec(tmp_path, gpu=True), tmp_path / "stack", run=run)
    assert s.up() == "compose"
    compose = str(tmp_path / "stack" / "compose.yaml")
    assert ("docker", "compose", "-f", compose, "-p", "pendra", "up", "-d", "--build") in run.calls
    assert yaml.safe_load(Path(compose).read_text()) == render_compose(s.spec)
    assert s.down() == "compose"
    assert run.calls[-1] == ("docker", "compose", "-f", compose, "-p", "pendra", "down")
    failing = Recorder(
        {
            ("docker", "compose", "version", "--short"): CommandResult(0, "2.29.7"),
            ("docker", "compose", "-f", compose, "-p", "pendra", "up", "-d", "--build"): (
                CommandResult(1, "", 'could not select device driver "nvidia"')
            ),
        }
    )
    with pytest.raises(StackError, match="could not select device driver"):
        Stack(s.spec, tmp_path / "stack", run=failing).up()


def _docker_daemon() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.mark.docker
@pytest.mark.skipif(not _docker_daemon(), reason="no Docker daemon is running on this machine")
def test_sdk_stack_status_against_real_daemon(tmp_path: Path) -> None:
    sdk = stack.SdkStack(spec(tmp_path))
    assert isinstance(sdk.status(), list)


def test_sdk_without_daemon_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    with pytest.raises(StackError, match="cannot talk to the Docker daemon") as err:
        stack.SdkStack(spec(tmp_path)).status()
    assert "pendra doctor" in str(err.value)


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles(name: str) -> None:
    lines = [line.strip() for line in (ROOT / name).read_text().splitlines()]
    assert "USER pendra" in lines and "--uid 10001" in (ROOT / name).read_text()
    assert 'VOLUME ["/models", "/home/pendra/.pendra"]' in lines
    assert 'ENTRYPOINT ["pendra"]' in lines and 'CMD ["--no-ui"]' in lines
    env_text = " ".join(line for line in lines if line.startswith(("ENV", "ARG")))
    assert "PENDRA_WORKER_KEY=" not in env_text
    assert ".venv" in (ROOT / ".dockerignore").read_text()
