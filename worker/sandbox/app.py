"""``pendra sandbox``: a local control plane (docs/protocol.md) in one aiohttp application."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from worker.errors import ConfigError
from worker.keys import WorkerKey, generate_key, read_key_file, write_key_file
from worker.protocol import (
    LEGACY_WORKER_PATH,
    MAX_FRAME_BYTES,
    SUPPORTED_VERSIONS,
    VERIFY_PATH,
    WORKER_PATH,
)
from worker.sandbox import commands, ingress
from worker.sandbox.catalogue import api_document, default_files, model_ids
from worker.sandbox.hub import WorkerHub

log = logging.getLogger(__name__)

HUB_KEY = ingress.HUB_KEY


@dataclass
class SandboxConfig:
    api_key: str
    accepted_keys: set[str]
    catalogue: dict[str, Any]
    files_dir: Path | None = None
    versions: tuple[int, ...] = SUPPORTED_VERSIONS
    heartbeat_interval_s: float | None = None
    extra_files: dict[str, Path] = field(default_factory=default_files)
    public_urls: tuple[str, ...] = ()
    """The URLs workers dial (their ``APP_SERVER_WS_URL``); empty: what :func:`serve` listens on."""


def worker_key_for(key_out: Path) -> WorkerKey:
    """The key the sandbox accepts: reuse a valid one at ``key_out``, else create it (0600) in
    the console's form (base64 of the 64-byte Ed25519 private key), as Pendra issues keys."""
    if key_out.exists():
        return read_key_file(key_out)  # a bad or unsafe file is an error, never overwritten
    key = generate_key(console_form=True)
    write_key_file(key_out, key)
    return key


def build_app(config: SandboxConfig) -> web.Application:
    app = web.Application(client_max_size=MAX_FRAME_BYTES, middlewares=[ingress.require_api_key])
    hub = WorkerHub(
        config.accepted_keys,
        versions=config.versions,
        heartbeat_interval_s=config.heartbeat_interval_s,
        public_urls=config.public_urls,
    )
    app[HUB_KEY] = hub
    app[ingress.API_KEY] = config.api_key
    app[ingress.KNOWN_MODELS] = model_ids(config.catalogue)
    catalogue_body = api_document(config.catalogue)

    async def catalogue(_request: web.Request) -> web.Response:
        return web.json_response(catalogue_body)

    async def files(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = config.extra_files.get(name)
        if path is None and config.files_dir is not None:
            candidate = (config.files_dir / name).resolve()
            if candidate.parent == config.files_dir.resolve() and candidate.is_file():
                path = candidate
        if path is None:
            raise web.HTTPNotFound(text=f"no file {name!r} here\n")
        return web.FileResponse(path)  # supports Range, so installs can resume

    async def workers(_request: web.Request) -> web.Response:
        return web.json_response({"workers": [w.describe() for w in hub.workers.values()]})

    async def on_shutdown(_app: web.Application) -> None:
        await hub.close()

    app.router.add_get("/api/v1/catalogue", catalogue)
    app.router.add_get(WORKER_PATH, hub.handle_connect)
    app.router.add_get(LEGACY_WORKER_PATH, hub.handle_connect)  # workers of earlier versions
    app.router.add_post(VERIFY_PATH, hub.handle_verify)
    app.router.add_get("/api/v1/workers", workers)
    app.router.add_get("/files/{name}", files)
    ingress.add_routes(app)
    commands.add_routes(app)
    app.on_shutdown.append(on_shutdown)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start ``app`` on host:port; the caller cleans up the returned runner.

    A hub configured without public URLs is bound to the address it now listens on.
    """
    # A client that hangs up cancels its handler (aiohttp stopped doing so by default in 3.9):
    # the ingress then cancels the request on the worker, which would otherwise go on generating
    # for nobody in one of its max_concurrent slots, and the next request would wait for it.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    hub = app.get(HUB_KEY)
    if hub is not None and not hub.public_urls:
        hub.public_urls = default_public_urls(host, bound_port(runner))
    return runner


def default_public_urls(host: str, port: int) -> tuple[str, ...]:
    """The URLs a sandbox listening on ``host:port`` is reached at: that address, and for
    loopback also its ``localhost`` spelling. A wildcard address names no URL (see
    :func:`is_wildcard`): the operator must say which one workers dial."""
    if is_wildcard(host):
        return ()
    bracketed = f"[{host}]" if ":" in host else host
    urls = [f"http://{bracketed}:{port}"]
    if host in ("127.0.0.1", "::1"):
        urls.append(f"http://localhost:{port}")
    elif host == "localhost":
        urls.append(f"http://127.0.0.1:{port}")
    return tuple(urls)


def is_wildcard(host: str) -> bool:
    """Whether ``host`` listens on every address (so it names no single URL)."""
    return host in ("", "0.0.0.0", "::", "[::]")


def check_public_url(url: str) -> str:
    """``url`` if it is a ws(s) or http(s) URL with a host, else a :class:`ConfigError`. The
    scheme is not part of a signature's audience, so either spelling of an address names it."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in _WEBSOCKET_SCHEMES and parts.scheme not in ("http", "https"):
        parts = parts._replace(netloc="")
    if not parts.hostname:
        raise ConfigError(
            f"--public-url {url!r} is not a ws(s) or http(s) URL.",
            hint="give the URL workers dial, e.g. wss://pendra.example.com or ws://10.0.0.5:8787",
        )
    return url.rstrip("/")


_WEBSOCKET_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def websocket_url(url: str) -> str:
    """``url`` in the ws(s) spelling a worker's ``APP_SERVER_WS_URL`` takes (pure)."""
    scheme, sep, rest = url.partition("://")
    return f"{_WEBSOCKET_SCHEMES.get(scheme, scheme)}{sep}{rest}"


def bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("the sandbox is not listening")


def new_api_key() -> str:
    return "sk-sandbox-" + secrets.token_urlsafe(18)
