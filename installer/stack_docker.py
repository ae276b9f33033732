"""The stack through the Docker API (the ``docker`` SDK): up, down, status, logs.

It runs exactly the project :func:`installer.stack.render_compose` describes — same container,
volume and network names, Compose's labels — so ``docker compose`` (v2, where installed) and this
driver see each other's containers. Containers are made with the low-level API because only it
sets a stop timeout, which the worker's drain needs.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from installer.stack import (
    CONTAINER_HOME,
    CONTAINER_MODELS,
    CONTAINER_RUN,
    GPU_RESERVATION,
    HOME_VOLUME,
    HOST_ALIAS,
    INIT_SERVICE,
    LABEL_PROJECT,
    LABEL_SERVICE,
    LABEL_STACK,
    OLLAMA_IMAGE,
    OLLAMA_SERVICE,
    OLLAMA_VOLUME,
    PROJECT,
    SECRET_TARGET,
    STOP_GRACE_S,
    WORKER_SERVICE,
    StackError,
    StackPaths,
    StackSpec,
    container_environment,
    volume_init_command,
)

NETWORK_NAME = f"{PROJECT}_default"
Progress = Callable[[str], None]


def container_name(service: str) -> str:
    return f"{PROJECT}-{service}-1"


DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def connect(timeout_s: float = 60.0) -> Any:
    """A client of the Docker daemon ``DOCKER_HOST`` (or the default socket) names; a clear
    :class:`StackError` when there is none or it may not be used. Without the ``docker`` extra
    (the Docker SDK, packaging) it raises ModuleNotFoundError, which the CLI turns into the
    install command."""
    import docker
    import packaging  # noqa: F401  (the wheelhouse needs it; same extra, so say it now)

    where = os.environ.get("DOCKER_HOST", "").strip() or DEFAULT_SOCKET
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except docker.errors.DockerException as exc:
        text = str(exc)
        if "Permission denied" in text:
            raise StackError(
                f"this user may not use the Docker daemon at {where} (permission denied)",
                hint="add yourself to the docker group (`sudo usermod -aG docker $USER`, then log "
                "in again), or run `pendra doctor` for the details",
            ) from None
        if "No such file" in text or "Connection refused" in text:
            reason = "nothing listens there: Docker is not installed or not running"
        else:
            reason = text
        raise StackError(
            f"cannot talk to the Docker daemon at {where}: {reason}",
            hint="install Docker Engine (https://docs.docker.com/engine/install/) or start it "
            "(`sudo systemctl start docker`); `pendra doctor` checks it",
        ) from None
    return client


@contextlib.contextmanager
def api_errors(action: str) -> Iterator[None]:
    """Docker API failures as a :class:`StackError` saying what was being done."""
    import docker

    try:
        yield
    except docker.errors.ContainerError as exc:
        output = exc.stderr.decode("utf-8", "replace").strip() if exc.stderr else ""
        raise StackError(
            f"{action} failed: the container exited with {exc.exit_status}"
            + (f": {output.splitlines()[-1]}" if output else ""),
        ) from None
    except docker.errors.DockerException as exc:
        detail = getattr(exc, "explanation", None) or str(exc)
        raise StackError(
            f"{action} failed: {detail}", hint="`pendra doctor` checks Docker"
        ) from None


class DockerStack:
    """The ``pendra`` project's containers on one Docker daemon."""

    def __init__(self, client: Any, progress: Progress = print) -> None:
        self.client = client
        self.progress = progress

    # -- reading ------------------------------------------------------------------------------
    def containers(self) -> list[Any]:
        return list(
            self.client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={PROJECT}"})
        )

    def container(self, service: str) -> Any | None:
        import docker

        try:
            return self.client.containers.get(container_name(service))
        except docker.errors.NotFound:
            return None

    def volume_exists(self, name: str) -> bool:
        import docker

        try:
            self.client.volumes.get(name)
        except docker.errors.NotFound:
            return False
        return True

    def describe(self) -> list[dict[str, Any]]:
        """One entry per container: state, health, image, exit code, when it started."""
        with api_errors("reading the containers"):
            return self._describe()

    def _describe(self) -> list[dict[str, Any]]:
        rows = []
        for container in sorted(self.containers(), key=lambda c: c.name):
            container.reload()
            state = container.attrs.get("State", {})
            health = state.get("Health") or {}
            last = (health.get("Log") or [{}])[-1] if health else {}
            rows.append(
                {
                    "name": container.name,
                    "service": container.labels.get(LABEL_SERVICE),
                    "state": state.get("Status"),
                    "health": health.get("Status"),
                    "health_detail": str(last.get("Output") or "").strip() or None,
                    "image": container.attrs.get("Config", {}).get("Image"),
                    "image_id": container.attrs.get("Image"),
                    "started_at": state.get("StartedAt"),
                    "exit_code": state.get("ExitCode") if state.get("Status") == "exited" else None,
                    "restarts": container.attrs.get("RestartCount"),
                }
            )
        return rows

    def logs(self, service: str, *, follow: bool, tail: int) -> Iterator[bytes]:
        container = self.container(service)
        if container is None:
            raise StackError(
                f"there is no {service} container", hint="start the stack: `pendra stack up`"
            )
        with api_errors("reading the log"):
            yield from container.logs(stream=True, follow=follow, tail=tail if tail >= 0 else "all")

    # -- changing -----------------------------------------------------------------------------
    def _labels(self, service: str) -> dict[str, str]:
        return {
            LABEL_PROJECT: PROJECT,
            LABEL_SERVICE: service,
            "com.docker.compose.oneoff": "False",
            "com.docker.compose.container-number": "1",
            LABEL_STACK: "1",
        }

    def _ensure_volume(self, name: str) -> None:
        if not self.volume_exists(name):
            self.client.volumes.create(
                name, labels={LABEL_PROJECT: PROJECT, "com.docker.compose.volume": name}
            )

    def _ensure_network(self) -> None:
        if not self.client.networks.list(names=[NETWORK_NAME]):
            self.client.networks.create(
                NETWORK_NAME,
                labels={LABEL_PROJECT: PROJECT, "com.docker.compose.network": "default"},
            )

    def _remove(self, service: str, timeout_s: int = STOP_GRACE_S) -> bool:
        """Stop (SIGTERM: the worker drains) and remove one service's container."""
        container = self.container(service)
        if container is None:
            return False
        if container.status in {"running", "restarting", "paused"}:
            self.progress(f"stopping {container.name} (it drains in-flight requests first)")
            container.stop(timeout=timeout_s)
        container.remove()
        return True

    def _mounts(self, spec: StackSpec, paths: StackPaths) -> list[Any]:
        from docker.types import Mount

        # A volume handed to another user must not be "populated from the image" again: Docker
        # does that to an empty volume at every mount, resetting its owner to the image's user.
        nocopy = spec.needs_volume_init
        models = (
            Mount(CONTAINER_MODELS, spec.models, type="bind")
            if spec.models_is_dir
            else Mount(CONTAINER_MODELS, spec.models, type="volume", no_copy=nocopy)
        )
        mounts = [
            models,
            Mount(CONTAINER_HOME, HOME_VOLUME, type="volume", no_copy=nocopy),
            Mount(CONTAINER_RUN, str(paths.run_dir), type="bind"),
            Mount(SECRET_TARGET, str(paths.secret), type="bind", read_only=True),
        ]
        if spec.config_file is not None and paths.config_copy(spec.config_file).is_file():
            mounts.append(
                Mount(
                    f"{CONTAINER_HOME}/{spec.config_file.name}",
                    str(paths.config_copy(spec.config_file)),
                    type="bind",
                    read_only=True,
                )
            )
        return mounts

    def _network_mode(self, spec: StackSpec) -> str:
        if spec.network == "host":
            return "host"
        self._ensure_network()
        return NETWORK_NAME

    def _init_volumes(self, spec: StackSpec, paths: StackPaths) -> None:
        if not spec.needs_volume_init:
            return
        mounts = [m for m in self._mounts(spec, paths) if m["Type"] == "volume"]
        self.client.containers.run(
            spec.image,
            entrypoint=["/bin/sh", "-c"],
            command=[volume_init_command(spec)],
            user="0:0",
            network_mode="none",
            mounts=mounts,
            labels={**self._labels(INIT_SERVICE), "com.docker.compose.oneoff": "True"},
            remove=True,
        )

    def _start_ollama(self, spec: StackSpec) -> None:
        import docker

        self._remove(OLLAMA_SERVICE)
        try:
            self.client.images.get(OLLAMA_IMAGE)
        except docker.errors.ImageNotFound:
            self.progress(f"pulling {OLLAMA_IMAGE}")
            try:
                self.client.images.pull(OLLAMA_IMAGE)
            except docker.errors.APIError as exc:
                raise StackError(
                    f"could not pull {OLLAMA_IMAGE}: {exc.explanation or exc}",
                    hint="without registry access, run the stack without --with-ollama",
                ) from None
        self._ensure_volume(OLLAMA_VOLUME)
        from docker.types import DeviceRequest, Mount

        self.client.containers.run(
            OLLAMA_IMAGE,
            name=container_name(OLLAMA_SERVICE),
            detach=True,
            mounts=[Mount("/root/.ollama", OLLAMA_VOLUME, type="volume")],
            network_mode=self._network_mode(spec),
            restart_policy={"Name": "unless-stopped"},
            labels=self._labels(OLLAMA_SERVICE),
            hostname=OLLAMA_SERVICE,
            device_requests=[DeviceRequest(count=-1, capabilities=[["gpu"]], driver="nvidia")]
            if spec.gpu
            else None,
        )
        self.progress(f"started {container_name(OLLAMA_SERVICE)}")

    def up(self, spec: StackSpec, paths: StackPaths) -> Any:
        """(Re)create the containers of ``spec``; returns the worker container."""
        with api_errors("starting the stack"):
            return self._up(spec, paths)

    def _up(self, spec: StackSpec, paths: StackPaths) -> Any:
        import docker
        from docker.types import DeviceRequest, LogConfig

        self._ensure_volume(HOME_VOLUME)
        if not spec.models_is_dir:
            self._ensure_volume(spec.models)
        self._remove(WORKER_SERVICE)
        self._init_volumes(spec, paths)
        if spec.with_ollama:
            self._start_ollama(spec)
        else:
            self._remove(OLLAMA_SERVICE)
        network_mode = self._network_mode(spec)
        api = self.client.api
        host_config = api.create_host_config(
            mounts=self._mounts(spec, paths),
            network_mode=network_mode,
            extra_hosts={HOST_ALIAS: spec.host_gateway},
            init=True,
            restart_policy={"Name": "unless-stopped"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            read_only=True,
            tmpfs={"/tmp": "rw,nosuid,nodev"},
            log_config=LogConfig(type="json-file", config={"max-size": "10m", "max-file": "3"}),
            device_requests=[
                DeviceRequest(count=-1, capabilities=[["gpu"]], driver=GPU_RESERVATION["driver"])
            ]
            if spec.gpu
            else None,
        )
        networking = None
        if network_mode == NETWORK_NAME:
            networking = api.create_networking_config(
                {NETWORK_NAME: api.create_endpoint_config(aliases=[WORKER_SERVICE])}
            )
        try:
            created = api.create_container(
                spec.image,
                command=["--no-ui"],
                name=container_name(WORKER_SERVICE),
                user=spec.user,
                environment=container_environment(spec),
                labels=self._labels(WORKER_SERVICE),
                hostname=None if network_mode == "host" else WORKER_SERVICE,
                host_config=host_config,
                networking_config=networking,
                stop_signal="SIGTERM",
                stop_timeout=STOP_GRACE_S,
                detach=True,
            )
            api.start(created["Id"])
        except docker.errors.APIError as exc:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(container_name(WORKER_SERVICE), force=True)
            raise StackError(
                f"the worker container did not start: {exc.explanation or exc}",
                hint="`pendra doctor` checks Docker (and the NVIDIA Container Toolkit for --gpu)",
            ) from None
        self.progress(f"started {container_name(WORKER_SERVICE)}")
        return self.client.containers.get(created["Id"])

    def down(self) -> list[str]:
        """Stop and remove the containers (the worker drains first) and the network. Volumes,
        the key and the models stay."""
        with api_errors("removing the stack"):
            return self._down()

    def _down(self) -> list[str]:
        import docker

        removed = []
        for service in (WORKER_SERVICE, OLLAMA_SERVICE):
            if self._remove(service):
                removed.append(container_name(service))
        for container in self.containers():  # anything else of the project (Compose's one-offs)
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
                removed.append(container.name)
        for network in self.client.networks.list(names=[NETWORK_NAME]):
            with contextlib.suppress(docker.errors.APIError):
                network.remove()
        return removed

    def wait_until_connected(
        self,
        container: Any,
        status: Callable[[], dict[str, Any] | None],
        timeout_s: float,
    ) -> dict[str, Any] | None:
        """Wait until the worker reports itself connected (its status document), or says why not:
        a container that exits or restarts is an error quoting the end of its log. A worker that
        answers but is still connecting when time runs out is returned as it is."""
        deadline = time.monotonic() + timeout_s
        document: dict[str, Any] | None = None
        while True:
            container.reload()
            state = container.attrs.get("State", {})
            if container.status in {"exited", "dead"} or container.attrs.get("RestartCount", 0):
                tail = container.logs(tail=6).decode("utf-8", "replace").strip()
                raise StackError(
                    f"the worker container stopped at start (exit code {state.get('ExitCode')})"
                    + (f":\n{tail}" if tail else ""),
                    hint="`pendra stack logs` shows its whole log; `pendra stack down` removes it",
                )
            document = status()
            worker = (document or {}).get("worker") or {}
            if worker.get("state") == "connected" or time.monotonic() >= deadline:
                break
            time.sleep(0.3)
        if document is None:
            raise StackError(
                f"the worker did not answer within {timeout_s:.0f} s",
                hint="`pendra stack logs -f` shows what it is doing",
            )
        return document
