"""``pendra stack up|down|status|logs|compose``: the worker as a Docker container.

``up`` builds the worker image from this installation (or reuses it), starts the container and
waits until the worker answers; ``pendra status``, ``logs``, ``attach`` and the dashboard then reach
it through its admin socket on a bind mount. ``down`` removes the containers and never the models
volume or the key. ``compose`` writes the same project as a ``compose.yaml`` for ``docker
compose`` (v2). Options given to ``up`` are remembered for the next ``up``
(``$PENDRA_HOME/stack/stack.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ORDER = 85
DEFAULT_WAIT_S = 120.0
EXIT_NOT_RUNNING = 3


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stack",
        help="run the worker as a Docker container (up, down, status, logs, compose)",
        description=(
            "Run the worker in Docker. The image is assembled from this installation's own "
            "packages (no compiler, no network while building) on a base image with this Python "
            "(PENDRA_BASE_IMAGE or --base-image to choose it). The key is mounted as a 0400 file, "
            "never passed in the environment."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    up = actions.add_parser("up", help="build (or reuse) the image and start the worker")
    _add_run_options(up)
    up.add_argument("--rebuild", action="store_true", help="build the image even if it is current")
    up.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help=f"how long to wait for the worker to answer (default {DEFAULT_WAIT_S:.0f})",
    )
    up.add_argument("--json", action="store_true", help="print the stack status as JSON")
    up.set_defaults(handler=run_up)

    down = actions.add_parser(
        "down", help="stop (draining) and remove the containers; models and key stay"
    )
    down.set_defaults(handler=run_down)

    status = actions.add_parser("status", help="containers, image, health and the worker's state")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=run_status)

    logs = actions.add_parser("logs", help="the container's log (docker logs)")
    logs.add_argument("-f", "--follow", action="store_true", help="follow new lines")
    logs.add_argument(
        "-n", "--lines", type=int, default=200, metavar="N", help="how many lines (default 200)"
    )
    logs.add_argument(
        "--service", choices=("worker", "ollama"), default="worker", help="whose log (worker)"
    )
    logs.set_defaults(handler=run_logs)

    compose = actions.add_parser(
        "compose", help="write the stack as a compose.yaml for `docker compose` (v2)"
    )
    _add_run_options(compose)
    compose.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="where to write it (default $PENDRA_HOME/stack/compose.yaml; - for stdout)",
    )
    compose.set_defaults(handler=run_compose)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gpu",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="give the container the NVIDIA GPUs (NVIDIA Container Toolkit; a CUDA build)",
    )
    parser.add_argument(
        "--with-ollama",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run Ollama in a container next to the worker",
    )
    parser.add_argument(
        "--base-image",
        metavar="IMAGE",
        help="base image with this Python (default: $PENDRA_BASE_IMAGE, else python:X.Y-slim)",
    )
    parser.add_argument(
        "--image", metavar="IMAGE", help="run this prebuilt worker image instead of building one"
    )
    parser.add_argument(
        "--models",
        metavar="VOLUME|DIR",
        help="named volume (default pendra-models) or absolute host directory for models",
    )
    parser.add_argument(
        "--network",
        choices=("bridge", "host"),
        help="bridge (default) or the host's network (reaches services on its 127.0.0.1); "
        "chosen automatically when the control plane is on this host's loopback",
    )
    parser.add_argument(
        "--host-address",
        metavar="ADDR",
        help="what host.docker.internal resolves to in the container (default: the host "
        "gateway; 127.0.0.1 with --network host)",
    )


# --------------------------------------------------------------------------------------------------


def _progress(line: str) -> None:
    print(f"pendra stack: {line}", file=sys.stderr, flush=True)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "gpu": args.gpu,
        "with_ollama": args.with_ollama,
        "models": args.models,
        "network": args.network,
        "host_address": args.host_address,
        "base_image": args.base_image,
        "image": args.image,
    }


def run_up(args: argparse.Namespace) -> int:
    from installer.stack_run import stack_up
    from worker.settings import load_settings

    document = stack_up(
        load_settings(),
        _given(args),
        rebuild=args.rebuild,
        wait_s=args.wait,
        progress=_progress,
    )
    return _print(document, as_json=args.json)


def run_down(_args: argparse.Namespace) -> int:
    from installer.stack import HOME_VOLUME, StackPaths, load_options
    from installer.stack_docker import DockerStack, connect
    from worker.settings import load_settings

    settings = load_settings()
    paths = StackPaths(settings.home)
    stack = DockerStack(connect(), _progress)
    removed = stack.down()
    if not removed:
        print("pendra stack: no containers to remove")
    for name in removed:
        print(f"pendra stack: removed {name}")
    models = load_options(paths).models
    where = "directory" if models.startswith("/") else "volume"
    print(
        f"pendra stack: kept the models ({where} {models}), the volume {HOME_VOLUME} and the key "
        f"({settings.key_location().source})"
    )
    return 0


def _print(document: dict[str, Any], *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(document, indent=2))
    else:
        print(render_stack_status(document))
    has_worker = any(c.get("service") == "worker" for c in document.get("containers") or [])
    return 0 if has_worker else EXIT_NOT_RUNNING


def render_stack_status(document: dict[str, Any]) -> str:
    """The human form of ``pendra stack status`` (pure)."""
    containers = document.get("containers") or []
    if not containers:
        return "pendra stack: not running (start it with `pendra stack up`)"
    lines = []
    for c in containers:
        health = f", {c['health']}" if c.get("health") else ""
        exit_code = f", exit code {c['exit_code']}" if c.get("exit_code") is not None else ""
        lines.append(f"{c['name']}: {c['state']}{health}{exit_code}  ({c.get('image')})")
        if c.get("health") == "unhealthy" and c.get("health_detail"):
            lines.append(f"  health: {c['health_detail']}")
    worker = document.get("worker")
    if worker:
        from worker.cli._status_text import render_status

        lines.append("")
        lines.append(render_status(worker))
    elif any(c.get("service") == "worker" for c in containers):
        lines.append(f"the worker does not answer on {document.get('admin_socket')} (yet)")
    return "\n".join(lines)


def run_status(args: argparse.Namespace) -> int:
    from installer.stack_docker import DockerStack, connect
    from installer.stack_run import stack_document
    from worker.settings import load_settings

    document = stack_document(DockerStack(connect(), _progress), load_settings())
    return _print(document, as_json=args.json)


def run_logs(args: argparse.Namespace) -> int:
    from installer.stack_docker import DockerStack, connect

    stack = DockerStack(connect(), _progress)
    out = sys.stdout.buffer
    try:
        for chunk in stack.logs(args.service, follow=args.follow, tail=args.lines):
            out.write(chunk)
            out.flush()
    except KeyboardInterrupt:
        if not args.follow:
            raise
    return 0


def run_compose(args: argparse.Namespace) -> int:
    from installer.stack import prepare_host_files, render_compose, to_yaml
    from installer.stack_docker import connect
    from installer.stack_run import build_spec, resolve
    from worker.atomic_files import write_atomic
    from worker.settings import load_settings

    settings = load_settings()
    resolved = resolve(settings, _given(args))
    for note in resolved.notes:
        _progress(note)
    paths, options = resolved.paths, resolved.options
    build = None
    if options.image:
        image = options.image
    else:
        client = connect()
        from installer.stack_image import plan_image, prepare_build_context

        plan = plan_image(client, options.base_image, options.gpu, _progress)
        image = plan.tag
        import shutil

        shutil.rmtree(paths.build_dir, ignore_errors=True)
        prepare_build_context(client, plan, paths.build_dir, _progress)
        build = {
            "context": str(paths.build_dir),
            "dockerfile": "Dockerfile",
            "args": {"BASE_IMAGE": plan.base_image},
            "network": "none",
        }
    spec = build_spec(settings, resolved, image)
    prepare_host_files(spec, paths)
    text = to_yaml(render_compose(spec, paths, build))
    if args.output is not None and str(args.output) == "-":
        sys.stdout.write(text)
        return 0
    target = args.output or paths.compose_file
    write_atomic(target, text.encode(), mode=0o600)
    print(f"pendra stack: wrote {target}")
    if build:
        print(f"pendra stack: the {image} image builds from {paths.build_dir}")
    print(f"  start it with:  docker compose -f {target} up -d")
    print(f"  stop it with:   docker compose -f {target} down   (volumes and key stay)")
    return 0
