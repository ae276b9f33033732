"""The Docker path: the worker (and optionally Ollama) as containers, and the Compose file for it.

:class:`StackSpec` says what to run; :func:`render_compose` turns it into a Compose project as
plain data (pure, unit-tested) and :func:`to_yaml` writes it — every string double-quoted, so no
value is ever misread. ``installer.stack_docker`` runs the same project through the Docker API
(the real Compose v2 is not everywhere: Debian ships only v1), with the same names and labels, so
either driver sees the other's containers.

Conventions (both drivers):

* The worker runs as the host user (root: the image's uid 10001), so the host's ``pendra status``
  passes the admin socket's peer-credential check. Its admin socket is on a bind mount:
  ``$PENDRA_HOME/stack/run`` on the host (``worker.admin.locate``).
* The worker key is mounted as a file, a 0400 copy owned by the container's user
  (``$PENDRA_HOME/stack/worker.key``; a Compose *secret*), never in the environment, so never in
  ``docker inspect``. The host's config file is mounted read-only the same way.
* Models live on a named volume (``pendra-models``) or a host directory; ``down`` never removes
  them. ``host.docker.internal`` resolves to the host (the host gateway on a bridge network,
  127.0.0.1 with the host's network), where discovery looks for backends running on the host.
* SIGTERM drains; the stop timeout (45 s) covers the worker's drain. A tiny init reaps the
  worker's child processes. Healthy means the worker answers and is connected (``pendra
  healthcheck``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from worker.admin.locate import STACK_RUN_DIR
from worker.atomic_files import write_atomic
from worker.errors import PendraError

PROJECT = "pendra"
WORKER_SERVICE = "worker"
OLLAMA_SERVICE = "ollama"
INIT_SERVICE = "init-volumes"
SECRET_NAME = "pendra_worker_key"
SECRET_TARGET = f"/run/secrets/{SECRET_NAME}"
CONTAINER_MODELS = "/models"
CONTAINER_HOME = "/home/pendra/.pendra"
CONTAINER_RUN = f"{CONTAINER_HOME}/run"
MODELS_VOLUME = "pendra-models"
HOME_VOLUME = "pendra-home"
OLLAMA_VOLUME = "pendra-ollama"
IMAGE_UID = 10001  # the worker image's own user
OLLAMA_IMAGE = "ollama/ollama:latest"
GPU_RESERVATION = {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
STOP_GRACE_S = 45
NETWORKS = ("bridge", "host")
HOST_ALIAS = "host.docker.internal"

# The worker's settings the container gets in its environment (none of them secret).
ENV_API_URL = "APP_SERVER_WS_URL"
# Every name the control plane's URL goes by: the stack sets it from the resolved settings (a
# loopback URL rewritten for the container), so the shell's own value never passes through as-is.
API_URL_ENV = frozenset({ENV_API_URL, "PENDRA_API_URL"})
ENV_KEY_FILE = "PENDRA_WORKER_KEY_FILE"
ENV_MODELS_DIR = "PENDRA_MODELS_DIR"
ENV_HOME = "PENDRA_HOME"
# Host paths mean nothing inside the container; the stack sets its own.
HOST_PATH_ENV = frozenset({ENV_HOME, ENV_KEY_FILE, ENV_MODELS_DIR, "PENDRA_CA_FILE"})

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_STACK = "ai.pendra.stack"

_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)


class StackError(PendraError):
    code = "stack_error"


def default_run_as() -> tuple[int, int]:
    """The host user, so the host's CLI may use the worker's admin socket; root → uid 10001
    (the worker never runs as root in its container)."""
    uid, gid = os.geteuid(), os.getegid()
    return (IMAGE_UID, IMAGE_UID) if uid == 0 else (uid, gid)


@dataclass(frozen=True)
class StackSpec:
    """What to run. ``models`` is a named volume (default) or an absolute host directory."""

    home: Path
    key_file: Path
    image: str
    key_text: str | None = field(default=None, repr=False)
    """The key itself, when the settings hold it inline (config.yaml or the environment)
    rather than in ``key_file``: written to the container's secret file all the same."""
    api_url: str | None = None
    gpu: bool = False
    with_ollama: bool = False
    models: str = MODELS_VOLUME
    network: str = "bridge"
    host_address: str | None = None
    run_as: tuple[int, int] = (IMAGE_UID, IMAGE_UID)
    config_file: Path | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def models_is_dir(self) -> bool:
        return self.models.startswith("/")

    @property
    def host_gateway(self) -> str:
        """What ``host.docker.internal`` resolves to in the containers."""
        if self.host_address:
            return self.host_address
        return "127.0.0.1" if self.network == "host" else "host-gateway"

    @property
    def user(self) -> str:
        return f"{self.run_as[0]}:{self.run_as[1]}"

    @property
    def needs_volume_init(self) -> bool:
        """Named volumes start owned by the image's uid; another uid needs them handed over."""
        return self.run_as != (IMAGE_UID, IMAGE_UID)


@dataclass(frozen=True)
class StackPaths:
    """The stack's files on the host, under ``$PENDRA_HOME/stack``."""

    home: Path

    @property
    def dir(self) -> Path:
        return self.home / "stack"

    @property
    def compose_file(self) -> Path:
        return self.dir / "compose.yaml"

    @property
    def secret(self) -> Path:
        return self.dir / "worker.key"

    @property
    def run_dir(self) -> Path:
        return self.home / STACK_RUN_DIR

    @property
    def options_file(self) -> Path:
        return self.dir / "stack.json"

    @property
    def build_dir(self) -> Path:
        return self.dir / "build"

    def config_copy(self, config_file: Path) -> Path:
        return self.dir / config_file.name


# --------------------------------------------------------------------------------------------------
# Remembered options: `pendra stack up --network host` once, plain `pendra stack up` later.


@dataclass(frozen=True)
class StackOptions:
    gpu: bool = False
    with_ollama: bool = False
    models: str = MODELS_VOLUME
    network: str | None = None
    host_address: str | None = None
    base_image: str | None = None
    image: str | None = None

    def merged(self, **given: Any) -> StackOptions:
        """These options with every explicitly given (not None) value replacing its own."""
        return replace(self, **{k: v for k, v in given.items() if v is not None})


def load_options(paths: StackPaths) -> StackOptions:
    try:
        data = json.loads(paths.options_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return StackOptions()
    known = {k: v for k, v in data.items() if k in StackOptions.__dataclass_fields__}
    try:
        return StackOptions(**known)
    except TypeError:
        return StackOptions()


def save_options(paths: StackPaths, options: StackOptions) -> None:
    paths.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = json.dumps(asdict(options), indent=2) + "\n"
    write_atomic(paths.options_file, text.encode(), mode=0o600)


# --------------------------------------------------------------------------------------------------
# The container's environment


def _is_loopback(host: str | None) -> bool:
    return bool(host) and (host in {"localhost", "::1"} or str(host).startswith("127."))


def url_via_host_alias(url: str) -> str:
    """``url`` with a loopback host replaced by ``host.docker.internal`` (port and path kept)."""
    parts = urlsplit(url)
    if not _is_loopback(parts.hostname):
        return url
    netloc = HOST_ALIAS + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def api_url_is_loopback(api_url: str | None) -> bool:
    return api_url is not None and _is_loopback(urlsplit(api_url).hostname)


def backend_environment(settings: Any, network: str) -> dict[str, str]:
    """The host's backend choices for the container: disabled stays disabled, an explicit URL on
    the host's loopback is reached through ``host.docker.internal`` on a bridge network, and
    auto stays auto (discovery tries localhost, then host.docker.internal)."""
    env: dict[str, str] = {}
    for kind, setting in sorted(getattr(settings, "backends", {}).items()):
        mode = getattr(getattr(setting, "mode", None), "value", None)
        name = f"{kind.upper()}_ENDPOINT"
        if mode == "disabled":
            env[name] = "off"
        elif mode == "explicit" and setting.url:
            env[name] = setting.url if network == "host" else url_via_host_alias(setting.url)
    return env


def passthrough_environment(settings: Any, environ: Mapping[str, str]) -> dict[str, str]:
    """Settings this shell sets through the environment (``PENDRA_LOG_LEVEL=debug pendra stack
    up``), except host paths and anything that looks secret."""
    env: dict[str, str] = {}
    for source in getattr(settings, "sources", {}).values():
        match = re.match(r"environment variable (\w+)$", str(source))
        if not match:
            continue
        name = match.group(1)
        if name in HOST_PATH_ENV or name in API_URL_ENV or _SECRET_ENV.search(name):
            continue
        if environ.get(name, "").strip():
            env[name] = environ[name]
    return env


def container_environment(spec: StackSpec) -> dict[str, str]:
    """The worker's environment; raises :class:`StackError` for anything that looks secret."""
    environment: dict[str, str] = {
        ENV_MODELS_DIR: CONTAINER_MODELS,
        ENV_KEY_FILE: SECRET_TARGET,
    }
    if spec.api_url:
        environment[ENV_API_URL] = spec.api_url
    if spec.with_ollama:
        host = "127.0.0.1" if spec.network == "host" else OLLAMA_SERVICE
        environment["OLLAMA_ENDPOINT"] = f"http://{host}:11434"
    if spec.gpu:
        environment["NVIDIA_VISIBLE_DEVICES"] = "all"
        environment["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"
    for name, value in spec.extra_env.items():
        if _SECRET_ENV.search(name) and name != ENV_KEY_FILE:
            raise StackError(
                f"{name} looks like a secret and would be visible in `docker inspect`",
                hint="pass secrets as files; the worker key is mounted as a file already",
            )
        environment[name] = value
    return environment


def volume_init_command(spec: StackSpec) -> str:
    """Hands the named volumes to the worker's user (run once as root, with no network)."""
    targets = [CONTAINER_HOME] + ([] if spec.models_is_dir else [CONTAINER_MODELS])
    return f"chown -R {spec.user} {' '.join(targets)} && chmod 0700 {CONTAINER_HOME}"


# --------------------------------------------------------------------------------------------------
# The Compose project


def _volume(spec: StackSpec, source: str, target: str) -> str | dict[str, Any]:
    """A volume entry; a named volume handed to another user is mounted without copying the
    image's directory into it (Docker would reset its owner at each mount while it is empty)."""
    if source.startswith("/") or not spec.needs_volume_init:
        return f"{source}:{target}"
    return {"type": "volume", "source": source, "target": target, "volume": {"nocopy": True}}


def render_compose(
    spec: StackSpec, paths: StackPaths, build: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The Compose project as data. ``build`` (context, dockerfile, args) lets ``docker compose
    up --build`` make the image; without it the image must exist."""
    volumes_spec: list[Any] = [
        _volume(spec, spec.models, CONTAINER_MODELS),
        _volume(spec, HOME_VOLUME, CONTAINER_HOME),
        f"{paths.run_dir}:{CONTAINER_RUN}",
    ]
    if spec.config_file is not None:
        copy = paths.config_copy(spec.config_file)
        volumes_spec.append(f"{copy}:{CONTAINER_HOME}/{spec.config_file.name}:ro")
    worker: dict[str, Any] = {"image": spec.image}
    if build:
        worker["build"] = dict(build)
    worker.update(
        {
            "command": ["--no-ui"],
            "user": spec.user,
            "init": True,
            "restart": "unless-stopped",
            "environment": container_environment(spec),
            "secrets": [{"source": SECRET_NAME, "target": SECRET_NAME}],
            "volumes": volumes_spec,
            "extra_hosts": [f"{HOST_ALIAS}:{spec.host_gateway}"],
            "stop_signal": "SIGTERM",
            "stop_grace_period": f"{STOP_GRACE_S}s",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "read_only": True,
            "tmpfs": ["/tmp"],
            "logging": {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}},
            "labels": {LABEL_STACK: "1"},
        }
    )
    if spec.network == "host":
        worker["network_mode"] = "host"
    services: dict[str, Any] = {}
    depends: dict[str, Any] = {}
    if spec.needs_volume_init:
        services[INIT_SERVICE] = {
            "image": spec.image,
            "entrypoint": ["/bin/sh", "-c"],
            "command": [volume_init_command(spec)],
            "user": "0:0",
            "network_mode": "none",
            "restart": "no",
            "volumes": volumes_spec[:2] if not spec.models_is_dir else volumes_spec[1:2],
        }
        depends[INIT_SERVICE] = {"condition": "service_completed_successfully"}
    services[WORKER_SERVICE] = worker
    volumes: dict[str, Any] = {HOME_VOLUME: {"name": HOME_VOLUME}}
    if not spec.models_is_dir:
        volumes[spec.models] = {"name": spec.models}
    if spec.with_ollama:
        ollama: dict[str, Any] = {
            "image": OLLAMA_IMAGE,
            "restart": "unless-stopped",
            "volumes": [f"{OLLAMA_VOLUME}:/root/.ollama"],
        }
        if spec.network == "host":
            ollama["network_mode"] = "host"
        services[OLLAMA_SERVICE] = ollama
        depends[OLLAMA_SERVICE] = {"condition": "service_started"}
        volumes[OLLAMA_VOLUME] = {"name": OLLAMA_VOLUME}
    if depends:
        worker["depends_on"] = depends
    if spec.gpu:
        for name in (WORKER_SERVICE, OLLAMA_SERVICE):
            if name in services:
                services[name]["deploy"] = {
                    "resources": {"reservations": {"devices": [dict(GPU_RESERVATION)]}}
                }
    return {
        "name": PROJECT,
        "services": services,
        "secrets": {SECRET_NAME: {"file": str(paths.secret)}},
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
    header = (
        "# The Pendra worker as a Compose project, written by `pendra stack compose`.\n"
        "# Start it with `docker compose -f THIS_FILE up -d` (Docker Compose v2).\n"
    )
    return header + "\n".join(_emit(document, 0)) + "\n"


# --------------------------------------------------------------------------------------------------
# Files on the host


def _private_copy(source: Path, target: Path, owner: tuple[int, int]) -> None:
    """``target`` = ``source``'s bytes, mode 0400, owned by ``owner`` (as root)."""
    _private_write(target, source.read_bytes(), owner)


def _config_without_key(config: Path) -> bytes:
    """The settings file for the container, without ``gpu_worker_private_key``: the key reaches
    the container as its secret file only."""
    from worker.config_file import edit_text, parse_yaml_text, render_flat
    from worker.errors import ConfigError

    text = config.read_text(encoding="utf-8")
    try:
        if "gpu_worker_private_key" not in parse_yaml_text(text, config):
            return text.encode("utf-8")
    except ConfigError:  # not YAML the worker reads: it will say so itself, in the container
        return text.encode("utf-8")
    edited = edit_text(text, {"gpu_worker_private_key": None})
    if edited is None:  # the key sits in a nested section: write the settings out flat
        data = parse_yaml_text(text, config)
        data.pop("gpu_worker_private_key", None)
        edited = render_flat(data)
    return edited.encode("utf-8")


def _private_write(target: Path, data: bytes, owner: tuple[int, int]) -> None:
    """``target`` = ``data``, mode 0400, owned by ``owner`` (as root) — written to a temporary
    name first, so a reader never sees a partial or wrongly owned key."""
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if os.geteuid() == 0:
            os.chown(tmp, *owner)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _own_dir(path: Path, owner: tuple[int, int], mode: int = 0o700) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    if os.geteuid() == 0:
        os.chown(path, *owner)
    os.chmod(path, mode)


def prepare_host_files(spec: StackSpec, paths: StackPaths) -> None:
    """The stack directory, the key and config copies, the admin socket directory, and a host
    models directory — each owned by the container's user."""
    if spec.key_text is None and not spec.key_file.is_file():
        raise StackError(
            f"no worker key at {spec.key_file}",
            hint="store it first: `pendra key set` (paste it) or `pendra key set --file FILE`",
        )
    paths.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(paths.dir, 0o700)
    if spec.key_text is not None:
        _private_write(paths.secret, (spec.key_text + "\n").encode("utf-8"), spec.run_as)
    else:
        _private_copy(spec.key_file, paths.secret, spec.run_as)
    if spec.config_file is not None and spec.config_file.is_file():
        _private_write(
            paths.config_copy(spec.config_file),
            _config_without_key(spec.config_file),
            spec.run_as,
        )
    _own_dir(paths.run_dir, spec.run_as)
    if spec.models_is_dir:
        models = Path(spec.models)
        if not models.exists():
            _own_dir(models, spec.run_as, 0o755)
        info = models.stat()
        if os.geteuid() == 0 and info.st_uid != spec.run_as[0] and not info.st_mode & 0o002:
            raise StackError(
                f"{models} belongs to uid {info.st_uid}; the worker runs as uid {spec.run_as[0]} "
                "and could not write models there",
                hint=f"`chown -R {spec.run_as[0]}:{spec.run_as[1]} {models}`, or choose another "
                "directory",
            )
