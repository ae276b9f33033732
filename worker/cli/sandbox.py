"""``pendra sandbox``: run a local control plane on this machine (docs/protocol.md)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from worker.errors import ConfigError

if TYPE_CHECKING:
    from aiohttp import web

ORDER = 90
API_KEY_ENV = "PENDRA_SANDBOX_API_KEY"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="run a local control plane (catalogue, worker hub, OpenAI API) for trying things out",
        description=(
            "A local stand-in for the Pendra control plane: serves the catalogue, accepts workers "
            "over WebSocket and routes an OpenAI-compatible API to them. Prompts and completions "
            "are relayed, never stored or logged."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="port to listen on (8787)")
    parser.add_argument(
        "--catalogue", type=Path, metavar="FILE", help="serve this catalogue JSON instead"
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"bearer key clients must send (default: ${API_KEY_ENV}, else a new random one)",
    )
    parser.add_argument(
        "--key-out",
        type=Path,
        metavar="FILE",
        help="worker key file the sandbox accepts; created 0600 if missing, reused if valid "
        "(default: $PENDRA_HOME/sandbox/worker.key)",
    )
    parser.add_argument(
        "--accept-key",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="also accept the worker key in FILE (repeatable): several workers, each with its "
        "own key, as an organisation has them",
    )
    parser.add_argument(
        "--files", type=Path, metavar="DIR", help="serve model files from DIR at /files/NAME"
    )
    parser.add_argument(
        "--public-url",
        action="append",
        metavar="URL",
        help="the URL workers dial (their APP_SERVER_WS_URL; ws://, wss://, http:// or https://), "
        "when it is not the address listened on, e.g. behind a proxy; worker signatures must name "
        "it. Repeat for several. Default: ws://HOST:PORT (and its localhost spelling on "
        "loopback); required with --host 0.0.0.0",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from worker.logs import configure_logging
    from worker.sandbox import SandboxConfig, build_app, worker_key_for
    from worker.sandbox.catalogue import load_catalogue
    from worker.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a port number (1-65535)")
    if args.files is not None and not args.files.is_dir():
        raise ConfigError(f"--files {args.files} is not a directory")
    from worker.sandbox.app import check_public_url, is_wildcard

    public_urls = tuple(check_public_url(url) for url in args.public_url or ())
    if not public_urls and is_wildcard(args.host):
        raise ConfigError(
            f"--host {args.host} listens on every address, so it does not say which URL workers "
            "dial, and their signed handshakes name that URL.",
            hint=f"add --public-url ws://<this machine's address>:{args.port} (the "
            "APP_SERVER_WS_URL the workers use)",
        )
    key_out: Path = args.key_out or settings.home / "sandbox" / "worker.key"
    key = worker_key_for(key_out)
    accepted = {key.public_key}
    for path in args.accept_key:
        from worker.keys import read_key_file

        accepted.add(read_key_file(path).public_key)  # a bad or unsafe file is an error
    api_key = args.api_key or os.environ.get(API_KEY_ENV, "").strip()
    generated = not api_key
    if generated:
        from worker.sandbox.app import new_api_key

        api_key = new_api_key()
    config = SandboxConfig(
        api_key=api_key,
        accepted_keys=accepted,
        catalogue=load_catalogue(args.catalogue),
        files_dir=args.files,
        public_urls=public_urls,
    )
    app = build_app(config)
    return asyncio.run(_serve(app, args.host, args.port, key_out, api_key, generated))


async def _serve(
    app: web.Application, host: str, port: int, key_out: Path, api_key: str, generated: bool
) -> int:
    from worker.sandbox.app import HUB_KEY, bound_port, serve, websocket_url

    try:
        runner = await serve(app, host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"Port {port} on {host} is already in use.",
                hint="stop what uses it, or pass --port with a free port",
            ) from None
        raise ConfigError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    url = f"http://{host}:{bound_port(runner)}"
    ws_url = websocket_url(app[HUB_KEY].public_urls[0])  # what workers dial, and sign for
    key_line = (
        f"  API key:      {api_key}   (generated; pass --api-key to choose one)"
        if generated
        else "  API key:      the one given (--api-key or PENDRA_SANDBOX_API_KEY)"
    )
    print(
        "Pendra sandbox ready\n"
        f"  OpenAI API:   {url}/v1\n"
        f"{key_line}\n"
        f"  Catalogue:    {url}/api/v1/catalogue\n"
        f"  Workers:      {ws_url}/ws/gpu\n"
        f"  Worker key:   {key_out}\n"
        f"  Start a worker:\n"
        f"    APP_SERVER_WS_URL={ws_url} PENDRA_WORKER_KEY_FILE={key_out} pendra --no-ui",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        print("pendra sandbox: stopping", file=sys.stderr, flush=True)
        await runner.cleanup()
    return 0
