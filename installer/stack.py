"""The Docker path: the worker (and optionally Ollama) as a Compose project.

:func:`render_compose` builds the project as plain data (pure, unit-tested): the worker image built
from this repository's ``Dockerfile`` (``Dockerfile.cuda`` for NVIDIA hosts), GPU reservations
through the NVIDIA runtime, ``host.docker.internal`` mapped to the host gateway so the worker finds
backends running on the host, a models volume, and the worker key mounted as a Compose *secret*
file (``/run/secrets/pendra_worker_key``) — never an environment variable. :func:`to_yaml` writes it
as YAML (every string double-quoted, so no value is ever misread).

:class:`Stack` drives it with ``docker compose`` when Compose v2 exists and through the Docker SDK
otherwise (Debian, for one, ships only Compose v1), labelling containers the way Compose does so
either driver sees the other's containers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer.checks.probes import CommandResult, run_command
from worker import __version__
from worker.errors import PendraError

PROJECT = "pendra"
SECRET_NAME = "pendra_worker_key"
SECRET_TARGET = f"/run/secrets/{SECRET_NAME}"
CONTAINER_MODELS = "/models"
CONTAINER_HOME = "/home/pendra/.pendra"
IMAGE_UID = 10001  # the non-root user in the Dockerfile
OLLAMA_IMAGE = "ollama/ollama:latest"
GPU_RESERVATION = {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}


class StackError(PendraError):
    code = "stack_error"


@dataclass(frozen=True)
class StackSpec:
    """What to run. ``models`` is a named volume (default) or a host directory."""

    build_context: Path
    key_file: Path
    gpu: bool = False
    with_ollama: bool = False
    api_url: str | None = None
    models: str | Path = "pendra-models"
    run_as: tuple[int, int] | None = None  # host uid:gid for the worker (reads the 0600 key)
    image: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def dockerfile(self) -> str:
        return "Dockerfile.cuda" if self.gpu else "Dockerfile"

    @property
    def image_name(self) -> str:
        return self.image or f"pendra-worker:{__version__}{'-cuda' if self.gpu else ''}"


_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)


def render_compose(spec: StackSpec) -> dict[str, Any]:
    """The compose project as data; raises :class:`StackError` for a secret in the environment."""
    environment: dict[str, str] = {
        "PENDRA_MODELS_DIR": CONTAINER_MODELS,
        "PENDRA_WORKER_KEY_FILE": SECRET_TARGET,
    }
    if spec.api_url:
        environment["PENDRA_API_URL"] = spec.api_url
    if spec.with_ollama:
        environment["OLLAMA_ENDPOINT"] = "http://ollama:11434"
    for name, value in spec.extra_env.items():
        if _SECRET_ENV.search(name) and name != "PENDRA_WORKER_KEY_FILE":
            raise StackError(
                f"{name} looks like a secret and would be visible in `docker inspect`",
                hint="pass secrets as files; the worker key is mounted as a secret already",
            )
        environment[name] = value
    models_source = str(spec.models)
    worker: dict[str, Any] = {
        "image": spec.image_name,
        "build": {"context": str(spec.build_context), "dockerfile": spec.dockerfile},
        "command": ["--no-ui"],
        "restart": "unless-stopped",
        "environment": environment,
        "secrets": [{"source": SECRET_NAME, "target": SECRET_NAME}],
        "volumes": [f"{models_source}:{CONTAINER_MODELS}", f"pendra-home:{CONTAINER_HOME}"],
        "extra_hosts": ["host.docker.internal:host-gateway"],
        "stop_grace_period": "45s",
    }
    if spec.run_as is not None:
        worker["user"] = f"{spec.run_as[0]}:{spec.run_as[1]}"
    services: dict[str, Any] = {"worker": worker}
    volumes: dict[str, Any] = {"pendra-home": {}}
    if not Path(models_source).is_absolute():
        volumes[models_source] = {}
    if spec.with_ollama:
        services["ollama"] = {
            "image": OLLAMA_IMAGE,
            "restart": "unless-stopped",
            "volumes": ["ollama:/root/.ollama"],
        }
        worker["depends_on"] = ["ollama"]
        volumes["ollama"] = {}
    if spec.gpu:
        for service in services.values():
            service["deploy"] = {
                "resources": {"reservations": {"devices": [dict(GPU_RESERVATION)]}}
            }
    return {
        "name": PROJECT,
        "services": services,
        "secrets": {SECRET_NAME: {"file": str(spec.key_file)}},
        "volumes": volumes,
    }


# --------------------------------------------------------------------------------------------------
# YAML output (a small emitter: mappings, lists, strings, numbers, booleans)

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if value is None:
        return "null"
    return json.dumps(str(value))  # a JSON string is a valid YAML double-quoted scalar


def _key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) else json.dumps(key)


def _emit(value: Any, indent: int) -> Iterator[str]:
    pad = "  " * indent
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, (Mapping, list)) and item:
                yield f"{pad}{_key(key)}:"
                yield from _emit(item, indent + 1)
            elif isinstance(item, (Mapping, list)):
                yield f"{pad}{_key(key)}: {'{}' if isinstance(item, Mapping) else '[]'}"
            else:
                yield f"{pad}{_key(key)}: {_scalar(item)}"
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (Mapping, list)) and item:
                lines = list(_emit(item, indent + 1))
                yield f"{pad}- {lines[0].lstrip()}"
                yield from lines[1:]
            else:
                yield f"{pad}- {_scalar(item)}"
    else:
        yield f"{pad}{_scalar(value)}"


def to_yaml(document: Mapping[str, Any]) -> str:
    header = "# Generated by pendra (installer/stack.py); regenerated on every `stack up`.\n"
    return header + "\n".join(_emit(document, 0)) + "\n"


# --------------------------------------------------------------------------------------------------
# Driving it

Runner = Callable[[Sequence[str]], CommandResult]


def _run_long(argv: Sequence[str]) -> CommandResult:
    return run_command(argv, 3600.0)


def prepare_secret(key_file: Path, stack_dir: Path, *, as_root: bool) -> Path:
    """The key file the container reads. As root, a 0400 copy owned by the image's user (a bind-
    mounted 0600 root file is unreadable to uid 10001); otherwise the user's own 0600 file, read
    by a container running as that same uid."""
    if not key_file.exists():
        raise StackError(
            f"no worker key at {key_file}", hint="store it first: pendra key set --file FILE"
        )
    if not as_root:
        return key_file
    stack_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    copy = stack_dir / "worker.key"
    tmp = stack_dir / ".worker.key.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_file.read_bytes())
    os.chown(tmp, IMAGE_UID, IMAGE_UID)
    os.replace(tmp, copy)
    return copy


class Stack:
    """``up``/``down``/``status`` for the compose project written to ``stack_dir``."""

    def __init__(self, spec: StackSpec, stack_dir: Path, run: Runner = _run_long) -> None:
        self.spec = spec
        self.stack_dir = stack_dir
        self.run = run

    @property
    def compose_file(self) -> Path:
        return self.stack_dir / "compose.yaml"

    def write(self) -> Path:
        self.stack_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.compose_file.with_name(".compose.yaml.tmp")
        tmp.write_text(to_yaml(render_compose(self.spec)), encoding="utf-8")
        os.replace(tmp, self.compose_file)
        return self.compose_file

    def has_compose_v2(self) -> bool:
        if shutil.which("docker") is None:
            return False
        result = self.run(["docker", "compose", "version", "--short"])
        return result.ok and result.stdout.strip().lstrip("v").startswith(("2", "3"))

    def _compose(self, *args: str) -> CommandResult:
        return self.run(["docker", "compose", "-f", str(self.compose_file), "-p", PROJECT, *args])

    def up(self) -> str:
        self.write()
        if self.has_compose_v2():
            result = self._compose("up", "-d", "--build")
            if not result.ok:
                raise StackError(
                    f"`docker compose up` failed: {result.stderr.strip()[-500:]}",
                    hint=f"the project is in {self.compose_file}; run `pendra doctor` for Docker",
                )
            return "compose"
        SdkStack(self.spec).up()
        return "sdk"

    def down(self) -> str:
        if self.compose_file.exists() and self.has_compose_v2():
            result = self._compose("down")
            if not result.ok:
                raise StackError(f"`docker compose down` failed: {result.stderr.strip()[-500:]}")
            return "compose"
        SdkStack(self.spec).down()
        return "sdk"


class SdkStack:
    """The same project through the Docker SDK, for hosts without Compose v2."""

    def __init__(self, spec: StackSpec, client: Any | None = None) -> None:
        self.spec = spec
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env()
                self._client.ping()
            except docker.errors.DockerException as exc:
                raise StackError(
                    f"cannot talk to the Docker daemon: {exc}", hint="run `pendra doctor`"
                ) from None
        return self._client

    def _labels(self, service: str) -> dict[str, str]:
        return {"com.docker.compose.project": PROJECT, "com.docker.compose.service": service}

    def up(self, progress: Callable[[str], None] = print) -> None:
        from docker.types import DeviceRequest, Mount

        document = render_compose(self.spec)
        client = self.client
        network = f"{PROJECT}_default"
        if not client.networks.list(names=[network]):
            client.networks.create(network, labels={"com.docker.compose.project": PROJECT})
        for name, service in document["services"].items():
            image = service["image"]
            if "build" in service:
                progress(f"building {image} from {service['build']['context']}")
                for chunk in client.api.build(
                    path=service["build"]["context"],
                    dockerfile=service["build"]["dockerfile"],
                    tag=image,
                    decode=True,
                    rm=True,
                ):
                    if "stream" in chunk and chunk["stream"].strip():
                        progress(chunk["stream"].rstrip())
                    if "error" in chunk:
                        raise StackError(f"building {image} failed: {chunk['error']}")
            else:
                progress(f"pulling {image}")
                client.images.pull(image)
            container_name = f"{PROJECT}-{name}-1"
            for old in client.containers.list(all=True, filters={"name": container_name}):
                old.remove(force=True)
            mounts = []
            for volume in service.get("volumes", []):
                source, target = volume.rsplit(":", 1)
                kind = "bind" if source.startswith("/") else "volume"
                mounts.append(Mount(target=target, source=source, type=kind))
            if name == "worker":
                secret = document["secrets"][SECRET_NAME]["file"]
                mounts.append(
                    Mount(target=SECRET_TARGET, source=secret, type="bind", read_only=True)
                )
            devices = []
            if "deploy" in service:
                devices = [DeviceRequest(count=-1, capabilities=[["gpu"]], driver="nvidia")]
            client.containers.run(
                image,
                command=service.get("command"),
                name=container_name,
                detach=True,
                environment=service.get("environment"),
                mounts=mounts,
                user=service.get("user"),
                extra_hosts={"host.docker.internal": "host-gateway"},
                restart_policy={"Name": "unless-stopped"},
                device_requests=devices or None,
                network=network,
                labels=self._labels(name),
                hostname=name,
            )
            progress(f"started {container_name}")

    def containers(self) -> list[Any]:
        return self.client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={PROJECT}"}
        )

    def status(self) -> list[dict[str, str]]:
        return [
            {"name": c.name, "status": c.status, "image": ",".join(c.image.tags)}
            for c in self.containers()
        ]

    def down(self) -> None:
        for container in self.containers():
            container.remove(force=True)
