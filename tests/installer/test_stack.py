"""The Docker stack's pure parts: the Compose project (GPU reservations, volumes, host gateway, the
key as a secret file and never in the environment), remembered options, the environment the
container gets from the host's settings, the host files (modes and owners), and the Dockerfiles.
The real daemon runs in tests/docker/."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from installer import stack
from installer.stack import (
    StackError,
    StackOptions,
    StackPaths,
    StackSpec,
    backend_environment,
    load_options,
    passthrough_environment,
    prepare_host_files,
    render_compose,
    save_options,
    to_yaml,
    url_via_host_alias,
)
from worker.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
SECRET = "pdk_not_a_real_key_but_secret_text"


def spec(tmp_path: Path, **kw: object) -> StackSpec:
    key = tmp_path / "worker.key"
    if not key.exists():
        key.write_text(SECRET + "\n")
        key.chmod(0o600)
    fields: dict[str, object] = {"home": tmp_path, "key_file": key, "image": "pendra-worker:t"}
    fields.update(kw)
    return StackSpec(**fields)  # type: ignore[arg-type]


def test_cpu_compose_on_a_bridge_as_a_host_user(tmp_path: Path) -> None:
    s = spec(tmp_path, api_url="https://api.example", run_as=(1000, 1000))
    paths = StackPaths(tmp_path)
    doc = render_compose(s, paths, {"context": "/ctx", "dockerfile": "Dockerfile"})
    assert list(doc["services"]) == ["init-volumes", "worker"]
    worker = doc["services"]["worker"]
    assert worker["image"] == "pendra-worker:t" and worker["build"]["context"] == "/ctx"
    assert worker["user"] == "1000:1000" and worker["init"] is True
    assert worker["extra_hosts"] == ["host.docker.internal:host-gateway"]
    assert "network_mode" not in worker and "deploy" not in worker
    # Handed to uid 1000, the named volumes are never populated from the image again (Docker
    # would give an empty one back to the image's user at each mount).
    assert worker["volumes"] == [
        {"type": "volume", "source": s, "target": t, "volume": {"nocopy": True}}
        for s, t in (("pendra-models", "/models"), ("pendra-home", "/home/pendra/.pendra"))
    ] + [f"{tmp_path}/stack/run:/home/pendra/.pendra/run"]
    assert doc["volumes"] == {
        "pendra-home": {"name": "pendra-home"},
        "pendra-models": {"name": "pendra-models"},
    }
    assert worker["environment"] == {
        "PENDRA_MODELS_DIR": "/models",
        "PENDRA_WORKER_KEY_FILE": "/run/secrets/pendra_worker_key",
        "APP_SERVER_WS_URL": "https://api.example",
    }
    assert doc["secrets"] == {"pendra_worker_key": {"file": f"{tmp_path}/stack/worker.key"}}
    assert worker["secrets"] == [{"source": "pendra_worker_key", "target": "pendra_worker_key"}]
    assert worker["stop_signal"] == "SIGTERM" and worker["stop_grace_period"] == "45s"
    assert worker["cap_drop"] == ["ALL"] and worker["read_only"] is True
    assert worker["security_opt"] == ["no-new-privileges:true"]
    assert worker["depends_on"] == {"init-volumes": {"condition": "service_completed_successfully"}}
    init = doc["services"]["init-volumes"]
    assert init["user"] == "0:0" and init["network_mode"] == "none"
    assert init["command"] == [
        "chown -R 1000:1000 /home/pendra/.pendra /models && chmod 0700 /home/pendra/.pendra"
    ]
    assert init["volumes"] == worker["volumes"][:2]


def test_gpu_ollama_host_network_and_a_host_models_dir(tmp_path: Path) -> None:
    models = str(tmp_path / "models")
    s = spec(tmp_path, gpu=True, with_ollama=True, models=models, network="host")
    doc = render_compose(s, StackPaths(tmp_path))
    assert "init-volumes" not in doc["services"]  # uid 10001 owns the image's volumes already
    reservation = {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    for name in ("worker", "ollama"):
        service = doc["services"][name]
        assert service["deploy"]["resources"]["reservations"]["devices"] == [reservation]
        assert service["network_mode"] == "host"
    worker = doc["services"]["worker"]
    assert worker["environment"]["OLLAMA_ENDPOINT"] == "http://127.0.0.1:11434"
    assert worker["environment"]["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert worker["extra_hosts"] == ["host.docker.internal:127.0.0.1"]
    assert f"{models}:/models" in worker["volumes"]
    assert "pendra-models" not in doc["volumes"] and "pendra-ollama" in doc["volumes"]
    assert worker["depends_on"] == {"ollama": {"condition": "service_started"}}
    assert "build" not in worker


def test_init_service_leaves_a_host_models_dir_alone(tmp_path: Path) -> None:
    s = spec(tmp_path, models=str(tmp_path / "m"), run_as=(1000, 1000))
    init = render_compose(s, StackPaths(tmp_path))["services"]["init-volumes"]
    assert init["command"] == [
        "chown -R 1000:1000 /home/pendra/.pendra && chmod 0700 /home/pendra/.pendra"
    ]
    assert [v["source"] for v in init["volumes"]] == ["pendra-home"]


def test_config_file_is_mounted_read_only(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    doc = render_compose(spec(tmp_path, config_file=config), StackPaths(tmp_path))
    expected = f"{tmp_path}/stack/config.toml:/home/pendra/.pendra/config.toml:ro"
    assert expected in doc["services"]["worker"]["volumes"]


def test_no_secret_in_any_environment(tmp_path: Path) -> None:
    s = spec(tmp_path, gpu=True, with_ollama=True)
    text = to_yaml(render_compose(s, StackPaths(tmp_path)))
    assert SECRET not in text
    with pytest.raises(StackError, match="looks like a secret"):
        render_compose(
            spec(tmp_path, extra_env={"PENDRA_WORKER_KEY": "pdk_x"}), StackPaths(tmp_path)
        )
    with pytest.raises(StackError):
        render_compose(spec(tmp_path, extra_env={"HF_TOKEN": "hf_x"}), StackPaths(tmp_path))
    assert render_compose(
        spec(tmp_path, extra_env={"PENDRA_LOG_LEVEL": "debug"}), StackPaths(tmp_path)
    )


def test_yaml_round_trips_exactly(tmp_path: Path) -> None:
    for s in (spec(tmp_path), spec(tmp_path, gpu=True, with_ollama=True, run_as=(1, 2))):
        doc = render_compose(s, StackPaths(tmp_path), {"context": "/c", "args": {"A": "1"}})
        assert yaml.safe_load(to_yaml(doc)) == doc
    odd = {"a b": ["x: y", "- z", "#c", "yes", "1.0", ""], "n": 3, "t": True, "e": [], "m": {}}
    assert yaml.safe_load(to_yaml(odd)) == odd


def test_options_are_remembered_and_overridden(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path)
    assert load_options(paths) == StackOptions()
    save_options(paths, StackOptions(network="host", models="/srv/models"))
    assert stat.S_IMODE(paths.options_file.stat().st_mode) == 0o600
    loaded = load_options(paths)
    assert loaded.network == "host" and loaded.models == "/srv/models"
    merged = loaded.merged(network=None, gpu=True, models="other")
    assert merged == StackOptions(gpu=True, network="host", models="other")
    paths.options_file.write_text("{not json")
    assert load_options(paths) == StackOptions()
    paths.options_file.write_text('{"network": "host", "unknown": 1}')
    assert load_options(paths).network == "host"


def test_loopback_urls_go_through_the_host_alias() -> None:
    assert url_via_host_alias("http://127.0.0.1:11434/v1") == "http://host.docker.internal:11434/v1"
    assert url_via_host_alias("http://localhost:1234") == "http://host.docker.internal:1234"
    assert url_via_host_alias("http://gpu-box:8000") == "http://gpu-box:8000"
    assert stack.api_url_is_loopback("http://127.0.0.1:8787")
    assert not stack.api_url_is_loopback("https://api.pendra.ai")


def test_backend_choices_follow_the_worker_into_the_container(pendra_home: Path) -> None:
    env = {
        "PENDRA_HOME": str(pendra_home),
        "OLLAMA_ENDPOINT": "http://localhost:11434",
        "LMSTUDIO_ENDPOINT": "off",
        "VLLM_ENDPOINT": "http://gpu-box:8000",
    }
    settings = load_settings(env)
    bridged = backend_environment(settings, "bridge")
    assert bridged == {
        "OLLAMA_ENDPOINT": "http://host.docker.internal:11434",
        "LMSTUDIO_ENDPOINT": "off",
        "VLLM_ENDPOINT": "http://gpu-box:8000",
    }
    assert backend_environment(settings, "host")["OLLAMA_ENDPOINT"] == "http://localhost:11434"


def test_settings_from_the_shell_pass_through_but_not_paths_or_secrets(pendra_home: Path) -> None:
    env = {
        "PENDRA_HOME": str(pendra_home),
        "PENDRA_THREADS": "1",
        "PENDRA_LOG_LEVEL": "debug",
        "PENDRA_MODELS_DIR": "/host/models",
        "PENDRA_API_URL": "http://127.0.0.1:9",
    }
    passed = passthrough_environment(load_settings(env), env)
    assert passed == {"PENDRA_THREADS": "1", "PENDRA_LOG_LEVEL": "debug"}
    # The documented name neither: the stack sets the URL itself, rewritten for the container.
    documented = {**env, "APP_SERVER_WS_URL": "ws://127.0.0.1:9"}
    del documented["PENDRA_API_URL"]
    passed = passthrough_environment(load_settings(documented), documented)
    assert passed == {"PENDRA_THREADS": "1", "PENDRA_LOG_LEVEL": "debug"}


def test_host_files_are_private_copies(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("log_level: debug\n")
    config.chmod(0o600)
    uid_gid = (os.geteuid(), os.getegid()) if os.geteuid() else (10001, 10001)
    s = spec(tmp_path, config_file=config, run_as=uid_gid)
    paths = StackPaths(tmp_path)
    paths.dir.mkdir()
    (paths.dir / ".worker.key.tmp").write_text("a leftover from a crash")
    prepare_host_files(s, paths)
    for copy, text in ((paths.secret, SECRET + "\n"), (paths.dir / "config.yaml", None)):
        info = copy.stat()
        assert stat.S_IMODE(info.st_mode) == 0o400 and info.st_uid == uid_gid[0]
        assert text is None or copy.read_text() == text
    assert not (paths.dir / ".worker.key.tmp").exists()
    assert stat.S_IMODE(paths.dir.stat().st_mode) == 0o700
    run = paths.run_dir.stat()
    assert stat.S_IMODE(run.st_mode) == 0o700 and run.st_uid == uid_gid[0]
    prepare_host_files(s, paths)  # again: the 0400 copies are replaced, not refused


def test_a_key_kept_in_config_yaml_reaches_the_container_as_its_secret_only(
    tmp_path: Path,
) -> None:
    from worker.keys import generate_key

    key = generate_key(console_form=True).text
    config = tmp_path / "config.yaml"
    config.write_text(f"# mine\nworker_name: box\ngpu_worker_private_key: {key}\n")
    config.chmod(0o600)
    uid_gid = (os.geteuid(), os.getegid()) if os.geteuid() else (10001, 10001)
    s = StackSpec(
        home=tmp_path,
        key_file=tmp_path / "absent.key",
        key_text=key,
        image="i",
        config_file=config,
        run_as=uid_gid,
    )
    paths = StackPaths(tmp_path)
    prepare_host_files(s, paths)
    assert paths.secret.read_text() == key + "\n"
    copy = (paths.dir / "config.yaml").read_text()
    assert key not in copy and "worker_name: box" in copy and copy.startswith("# mine\n")
    assert key not in repr(s)


def test_host_files_need_a_key(tmp_path: Path) -> None:
    s = StackSpec(home=tmp_path, key_file=tmp_path / "missing.key", image="i")
    with pytest.raises(StackError, match="no worker key") as err:
        prepare_host_files(s, StackPaths(tmp_path))
    assert "pendra key set" in str(err.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="a foreign-owned directory needs root to make")
def test_host_models_dir_the_worker_cannot_write_is_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir(mode=0o755)  # owned by root; the worker runs as 10001
    s = spec(tmp_path, models=str(models))
    with pytest.raises(StackError, match="could not write models there") as err:
        prepare_host_files(s, StackPaths(tmp_path))
    assert "chown -R 10001:10001" in str(err.value)
    fresh = tmp_path / "fresh-models"
    prepare_host_files(spec(tmp_path, models=str(fresh)), StackPaths(tmp_path))
    assert fresh.stat().st_uid == 10001


def test_default_user_is_the_host_user_or_the_image_user() -> None:
    expected = (10001, 10001) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    assert stack.default_run_as() == expected


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda", "installer/docker/Dockerfile"])
def test_dockerfiles(name: str) -> None:
    text = (ROOT / name).read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert any(line.startswith("USER ") for line in lines) and "10001" in text
    assert 'VOLUME ["/models", "/home/pendra/.pendra"]' in lines
    assert 'ENTRYPOINT ["pendra"]' in lines and 'CMD ["--no-ui"]' in lines
    assert "STOPSIGNAL SIGTERM" in lines
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    assert '["pendra", "healthcheck"]' in text
    env_text = " ".join(line for line in lines if line.startswith(("ENV", "ARG")))
    assert "PENDRA_WORKER_KEY=" not in env_text
    assert ".venv" in (ROOT / ".dockerignore").read_text()


def test_stack_dockerfile_installs_without_an_index_or_a_compiler() -> None:
    text = (ROOT / "installer" / "docker" / "Dockerfile").read_text()
    assert "--no-index" in text and "--find-links /tmp/wheelhouse" in text
    assert "apt-get" not in text and "build-essential" not in text and "cmake" not in text
