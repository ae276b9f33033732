"""Starting the Docker stack for a ``PENDRA_HOME``: what ``pendra stack up`` and the app's "run the
worker in Docker" choice both do.

:func:`resolve` merges the options given now with those remembered from the last ``up`` and picks
the network; :func:`stack_up` builds (or reuses) the image, writes the host files, (re)creates the
containers and waits until the worker reports itself connected; :func:`stack_document` is what
``pendra stack status`` shows.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer.stack import (
    StackError,
    StackOptions,
    StackPaths,
    StackSpec,
    api_url_is_loopback,
    backend_environment,
    default_run_as,
    load_options,
    passthrough_environment,
    prepare_host_files,
    save_options,
)
from worker.errors import ConfigError

DEFAULT_WAIT_S = 120.0
Progress = Callable[[str], None]


def _quiet(_line: str) -> None:
    return None


@dataclass(frozen=True)
class Resolved:
    paths: StackPaths
    options: StackOptions
    network: str
    notes: list[str] = field(default_factory=list)


def _volume_name_ok(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) is not None


def resolve(settings: Any, given: Mapping[str, Any] | None = None) -> Resolved:
    """The options for this run: given now (None = not given) over remembered ones, and the
    network — the host's when the control plane is on its loopback (a bridged container could
    not reach it), else bridge unless chosen."""
    given = dict(given or {})
    paths = StackPaths(settings.home)
    models = given.get("models")
    if models is not None and "/" in models and not models.startswith("/"):
        given["models"] = models = str(Path(models).resolve())
    if models is not None and not models.startswith("/") and not _volume_name_ok(models):
        raise ConfigError(
            f"--models {models!r} is neither an absolute directory nor a volume name",
            hint="a volume name uses letters, digits, '.', '_' and '-'",
        )
    options = load_options(paths).merged(**given)
    loopback = api_url_is_loopback(settings.api_url)
    network = options.network or ("host" if loopback else "bridge")
    notes: list[str] = []
    if network == "bridge" and loopback:
        raise StackError(
            f"the control plane is at {settings.api_url}, on this host's loopback, which a "
            "container on a bridge network cannot reach",
            hint="use --network host (the container shares the host's network)",
        )
    if loopback and options.network is None:
        notes.append(
            f"the control plane ({settings.api_url}) is on this host's loopback: the container "
            "shares the host's network to reach it"
        )
    return Resolved(paths, options, network, notes)


def build_spec(settings: Any, resolved: Resolved, image: str) -> StackSpec:
    from worker.identity import ensure_worker_id
    from worker.keys import load_configured_key

    # The container gets a copy of config.yaml: give it the worker's id first, so a container
    # that is re-created keeps it. The key travels as the secret file, wherever it is kept.
    settings, _note = ensure_worker_id(settings)
    location = settings.key_location()
    key_text = load_configured_key(settings).text if location.kind == "inline" else None
    extra = {
        **passthrough_environment(settings, os.environ),
        **backend_environment(settings, resolved.network),
    }
    config = settings.config_file
    options = resolved.options
    return StackSpec(
        home=settings.home,
        key_file=settings.resolved_key_file,
        key_text=key_text,
        image=image,
        api_url=settings.api_url,
        gpu=options.gpu,
        with_ollama=options.with_ollama,
        models=options.models,
        network=resolved.network,
        host_address=options.host_address,
        run_as=default_run_as(),
        config_file=config if config.is_file() else None,
        extra_env=extra,
    )


def refuse_second_worker(settings: Any) -> None:
    from worker.admin.socket_file import socket_answers

    if socket_answers(settings.admin_socket, timeout_s=1.0):
        raise StackError(
            "a worker already runs for this PENDRA_HOME as a process or service",
            hint="stop it first (`pendra service uninstall`, or stop the `pendra --no-ui` "
            "process); two workers with one key would compete",
        )


def image_for(client: Any, options: StackOptions, rebuild: bool, progress: Progress) -> str:
    if options.image:
        from installer.stack_image import ensure_base_image

        ensure_base_image(client, options.image, progress)
        return str(options.image)
    from installer.stack_image import ensure_image

    result = ensure_image(
        client,
        base_image=options.base_image,
        gpu=options.gpu,
        rebuild=rebuild,
        progress=progress,
    )
    return result.tag


def worker_status(settings: Any, timeout_s: float = 5) -> dict[str, Any] | None:
    """The stack worker's status document, or None when it does not answer."""
    from worker.admin.client import AdminClient
    from worker.admin.locate import stack_socket
    from worker.errors import PendraError

    try:
        return asyncio.run(AdminClient(stack_socket(settings.home), timeout_s=timeout_s).status())
    except PendraError:
        return None


def stack_document(stack: Any, settings: Any) -> dict[str, Any]:
    """Containers, the admin socket and the worker's own status (``pendra stack status``)."""
    from worker.admin.locate import stack_socket

    return {
        "containers": stack.describe(),
        "admin_socket": str(stack_socket(settings.home)),
        "worker": worker_status(settings),
    }


def stack_up(
    settings: Any,
    given: Mapping[str, Any] | None = None,
    *,
    rebuild: bool = False,
    wait_s: float = DEFAULT_WAIT_S,
    progress: Progress = _quiet,
    client: Any = None,
) -> dict[str, Any]:
    """Build or reuse the image, (re)create the containers, wait for the worker; returns the
    stack document. Options are remembered only once the containers exist."""
    from installer.stack_docker import DockerStack, api_errors, connect

    resolved = resolve(settings, given)
    for note in resolved.notes:
        progress(note)
    refuse_second_worker(settings)
    client = client or connect()
    image = image_for(client, resolved.options, rebuild, progress)
    spec = build_spec(settings, resolved, image)
    prepare_host_files(spec, resolved.paths)
    stack = DockerStack(client, progress)
    container = stack.up(spec, resolved.paths)
    save_options(resolved.paths, resolved.options)
    with api_errors("waiting for the worker"):
        document = stack.wait_until_connected(container, lambda: worker_status(settings), wait_s)
    state = ((document or {}).get("worker") or {}).get("state")
    if state == "connected":
        progress("the worker is connected; `pendra status` and `pendra stack logs -f` show it")
    else:
        progress(
            f"the worker runs but is {state}, not connected yet; `pendra stack logs -f` shows why"
        )
    return stack_document(stack, settings)
