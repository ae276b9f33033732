"""Worker configuration: built-in defaults < ``$PENDRA_HOME/config.yaml`` < environment.

The contract (README, Configuration):

* ``PENDRA_HOME`` (default ``~/.pendra``) holds ``config.yaml``, ``worker.key`` (when the key is
  kept in a file), ``run/``, ``logs/`` and ``cache/``.
* The keys and variables Pendra documents for its worker — ``app_server_ws_url`` /
  ``APP_SERVER_WS_URL``, ``gpu_worker_private_key`` / ``GPU_WORKER_PRIVATE_KEY``, ``worker_id``,
  ``worker_name``, ``models``, ``max_concurrent``, ``models_dir`` / ``PENDRA_MODELS_DIR``,
  ``ollama_endpoint`` … — plus this worker's own (``builtin.*``, ``link.*``, ``log_level`` …).
  The names this worker used before (``PENDRA_API_URL`` / ``api_url``, ``PENDRA_WORKER_KEY``) stay
  as aliases; a ``config.toml`` from an earlier install is migrated once (see
  :mod:`worker.config_migration`).
* The environment is read on every call, so every CLI command and each daemon start sees it.
* Backend endpoints: empty or unset means auto-discover; ``off``/``0``/``false``/``none``/``no`` in
  any case means disabled and never probed; anything else is that URL, verified before use.
* A value the worker cannot use raises :class:`~worker.errors.ConfigError` naming the key and the
  file or variable it came from. Things worth knowing that do not stop the worker (an unknown key
  and its nearest valid name, a clamped value, a file others can read, an alias shadowed by the
  documented name) are collected in :attr:`Settings.warnings`; the CLI prints them, the daemon
  logs them.

:func:`load_settings` is the one loader: the CLI, the daemon, the app and get.sh all use it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from worker.errors import ConfigError

DEFAULT_SERVER_URL = "wss://api.pendra.ai"
DEFAULT_API_URL = "https://api.pendra.ai"
WORKER_WS_PATH = "/ws/gpu"
DISABLE_WORDS = frozenset({"off", "0", "false", "none", "no"})
MAX_CONCURRENT_RANGE = (1, 64)
BACKEND_KINDS = (
    "ollama",
    "lmstudio",
    "speaches",
    "vllm",
    "llamacpp",
    "tgi",
    "sglang",
    "localai",
    "openai",
)
_WORKER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


class EndpointMode(str, Enum):
    """How the worker finds one external backend."""

    AUTO = "auto"
    DISABLED = "disabled"
    EXPLICIT = "explicit"


@dataclass(frozen=True)
class BackendSetting:
    """The configured endpoint of one backend kind and where that came from."""

    kind: str
    mode: EndpointMode = EndpointMode.AUTO
    url: str | None = None
    source: str = "default"


@dataclass(frozen=True)
class KeyLocation:
    """Where the worker key comes from: inline (a setting) or a file.

    See :meth:`Settings.key_location`."""

    kind: Literal["inline", "file"]
    source: str
    """A phrase for people: "environment variable GPU_WORKER_PRIVATE_KEY", "gpu_worker_private_key
    in ~/.pendra/config.yaml", "the key file ~/.pendra/worker.key"."""
    path: Path | None = None
    """The file holding the key: the key file, or config.yaml for an inline key from there."""
    from_environment: bool = False

    @property
    def present(self) -> bool:
        """Whether a key is configured at all (a key file that does not exist is not a key)."""
        if self.kind == "inline":
            return True
        try:
            return self.path is not None and self.path.is_file() and self.path.stat().st_size > 0
        except OSError:
            return False


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Immutable: reload to pick up changes."""

    home: Path
    models_dir: Path
    api_url: str = DEFAULT_API_URL
    """The control plane's HTTP base (catalogue, key check), derived from ``app_server_ws_url``."""
    private_key: str | None = field(default=None, repr=False)
    """``gpu_worker_private_key``: the key text when it is configured inline (a secret)."""
    key_file: Path | None = None
    worker_id: str | None = None
    """``worker_id``; None until the worker persists a generated one (:mod:`worker.identity`)."""
    worker_name: str = ""
    models_filter: tuple[str, ...] | None = None
    """``models``: serve only these ids (None: serve every model found)."""
    max_concurrent: int = 1
    log_level: str = "info"
    backends: Mapping[str, BackendSetting] = field(default_factory=dict)
    openai_api_key_env: str | None = None
    builtin_enabled: bool = True
    max_context: int = 8192
    max_loaded_models: int = 2
    idle_unload_s: float = 900.0
    gpu_layers: int | None = None
    threads: int | None = None
    parallel: int = 4
    memory_fraction: float = 0.9
    memory_limit: int | None = None
    kv_type: str = "f16"
    max_queued: int = 64
    load_wait_s: float = 60.0
    isolation: str = "process"
    prefix_cache: bool = True
    discovery_interval_s: float = 30.0
    gpu_interval_s: float = 2.0
    heartbeat_interval_s: float = 15.0
    drain_timeout_s: float = 30.0
    allow_insecure_link: bool = False
    ca_file: Path | None = None
    private_inference: bool = True
    sources: Mapping[str, str] = field(default_factory=dict)
    """Per attribute, where its value came from ("default" when absent)."""
    warnings: tuple[str, ...] = ()

    # -- derived paths -------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.home / "config.yaml"

    @property
    def legacy_config_file(self) -> Path:
        return self.home / "config.toml"

    @property
    def default_key_file(self) -> Path:
        return self.home / "worker.key"

    @property
    def resolved_key_file(self) -> Path:
        """The key file to read: ``PENDRA_WORKER_KEY_FILE``/``key_file``, else the stored one."""
        return self.key_file or self.default_key_file

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def admin_socket(self) -> Path:
        return self.run_dir / "admin.sock"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def server_url(self) -> str:
        """``app_server_ws_url``: the WebSocket base of the control plane."""
        return ws_base(self.api_url)

    @property
    def ws_url(self) -> str:
        """The control plane's worker endpoint: ``app_server_ws_url`` + ``/ws/gpu``."""
        return derive_ws_url(self.api_url)

    def backend(self, kind: str) -> BackendSetting:
        return self.backends.get(kind, BackendSetting(kind))

    def key_location(self) -> KeyLocation:
        """Where the key comes from. The highest layer that names one wins: the environment
        (``GPU_WORKER_PRIVATE_KEY``, then ``PENDRA_WORKER_KEY_FILE``) over config.yaml
        (``gpu_worker_private_key``, then ``key_file``) over the default key file."""
        inline = _layer(self.sources.get("private_key"))
        from_file = _layer(self.sources.get("key_file"))
        if self.private_key and inline >= from_file:
            source = self.sources.get("private_key", "gpu_worker_private_key")
            return KeyLocation(
                "inline",
                source,
                None if inline == 2 else self.config_file,
                from_environment=inline == 2,
            )
        path = self.resolved_key_file
        return KeyLocation("file", f"the key file {path}", path, from_environment=from_file == 2)


def _layer(source: str | None) -> int:
    if source is None or source == "default":
        return 0
    return 2 if source.startswith("environment variable") else 1


# --------------------------------------------------------------------------------------------------
# Value parsers: each takes the raw value and returns the typed one or raises ValueError with a
# short reason; the loader adds the key and the source. A parser may return ``Noted`` to pass on a
# remark (a clamped value) that the loader turns into a warning.


@dataclass(frozen=True)
class Noted:
    value: Any
    note: str


def parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"{raw!r} is not a boolean (use true/false)")


def parse_int(minimum: int | None = None) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool):
            raise ValueError(f"{raw!r} is not an integer")
        try:
            value = int(str(raw).strip()) if not isinstance(raw, int) else raw
        except ValueError:
            raise ValueError(f"{raw!r} is not an integer") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"{value} is below the minimum of {minimum}")
        return value

    return parse


def parse_float(minimum: float | None = None) -> Callable[[Any], float]:
    def parse(raw: Any) -> float:
        if isinstance(raw, bool):
            raise ValueError(f"{raw!r} is not a number")
        try:
            value = float(str(raw).strip()) if not isinstance(raw, (int, float)) else float(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{raw!r} is not a finite number")
        if minimum is not None and value < minimum:
            raise ValueError(f"{value} is below the minimum of {minimum}")
        return value

    return parse


def parse_clamped_int(low: int, high: int) -> Callable[[Any], int | Noted]:
    """An integer clamped into ``[low, high]``; a value outside is used clamped, with a note."""

    def parse(raw: Any) -> int | Noted:
        value = parse_int()(raw)
        clamped = min(max(value, low), high)
        if clamped != value:
            bound = "maximum" if value > high else "minimum"
            return Noted(
                clamped, f"{value} is outside {low}–{high}; clamped to the {bound}, {clamped}"
            )
        return value

    return parse


def parse_path(raw: Any) -> Path:
    text = str(raw).strip()
    if not text:
        raise ValueError("the path is empty")
    if "\x00" in text:
        raise ValueError("the path contains a NUL byte")
    return Path(os.path.expandvars(text)).expanduser()


def parse_http_url(raw: Any) -> str:
    text = str(raw).strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{raw!r} is not an http(s) URL like http://localhost:11434")
    return text


def parse_control_plane_url(raw: Any) -> str:
    """``wss://host[/prefix]`` (or ``https://…``, ``ws://…``, ``http://…``) → the HTTP base.

    The WebSocket and HTTP sides of the control plane share host and path prefix, so one URL
    names both: the link dials ``wss://host/prefix/ws/gpu``, the catalogue is fetched from
    ``https://host/prefix/api/v1/catalogue``. A URL that already ends in ``/ws/gpu`` is taken
    as the base it was meant to be.
    """
    text = str(raw).strip().rstrip("/")
    parts = urlsplit(text)
    scheme = {"wss": "https", "ws": "http", "https": "https", "http": "http"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise ValueError(
            f"{raw!r} is not a control plane URL like wss://api.pendra.ai (ws, wss, http or https)"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"{raw!r} has a query or fragment; give just the base URL")
    path = parts.path.rstrip("/")
    if path.endswith(WORKER_WS_PATH):
        path = path[: -len(WORKER_WS_PATH)]
    return f"{scheme}://{parts.netloc}{path}"


def parse_log_level(raw: Any) -> str:
    text = str(raw).strip().lower()
    if text not in {"debug", "info", "warning", "error"}:
        raise ValueError(f"{raw!r} is not one of debug, info, warning, error")
    return text


def parse_gpu_layers(raw: Any) -> int | None:
    text = str(raw).strip().lower()
    if text in {"", "auto"}:
        return None
    return parse_int(minimum=-1)(text)


def parse_fraction(raw: Any) -> float:
    value = parse_float()(raw)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{value} is not a fraction between 0 (exclusive) and 1")
    return value


_BYTE_UNITS = {
    "": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
    "gb": 1000**3, "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3,
    "tib": 1024**4,
}  # fmt: skip


def parse_byte_size(raw: Any) -> int | None:
    """Bytes, as a plain integer or with a unit: ``8GiB``, ``512 MiB``, ``16GB``; empty = unset."""
    text = str(raw).strip().lower().replace(" ", "")
    if not text:
        return None
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number) :]
    if unit not in _BYTE_UNITS or not number:
        raise ValueError(f"{raw!r} is not a size like 8GiB, 512MiB or 16000000000")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{raw!r} is not a size like 8GiB, 512MiB or 16000000000") from None
    if value <= 0:
        raise ValueError(f"{raw!r} must be more than zero")
    return int(value * _BYTE_UNITS[unit])


def parse_choice(*choices: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        text = str(raw).strip().lower()
        if text not in choices:
            raise ValueError(f"{raw!r} is not one of {', '.join(choices)}")
        return text

    return parse


def parse_private_key(raw: Any) -> str:
    """The key text (whitespace removed). Its form is checked where the key is used
    (:func:`worker.keys.load_configured_key`, exit 4) rather than here, so a damaged key in
    config.yaml never stops ``pendra key set`` or ``pendra setup`` from replacing it."""
    if not isinstance(raw, str):
        raise ValueError("it must be the key text (base64), not a list or mapping")
    text = "".join(raw.split())
    if not text:
        raise ValueError("the key is empty")
    return text


def check_private_key(text: str) -> str:
    """The key text in the form it will be stored; ``ValueError`` saying which forms a key has
    (never echoing it)."""
    from worker.keys import KeyProblem, parse_key

    try:
        return parse_key(text).text
    except KeyProblem as exc:
        raise ValueError(f"{exc.message} ({exc.hint})" if exc.hint else exc.message) from None


def parse_worker_id(raw: Any) -> str:
    text = str(raw).strip()
    if not _WORKER_ID.match(text):
        raise ValueError(
            f"{raw!r} is not a worker id: 1-64 letters, digits, '.', '_', ':' or '-' "
            "(e.g. wrk-a1b2c3d4)"
        )
    return text


def parse_worker_name(raw: Any) -> str:
    text = str(raw).strip()
    if not text:
        raise ValueError("the name is empty")
    if len(text) > 128:
        raise ValueError(f"the name has {len(text)} characters; at most 128")
    if any(not ch.isprintable() for ch in text):
        raise ValueError("the name contains control characters")
    return text


def parse_models_filter(raw: Any) -> tuple[str, ...] | None:
    """``models``: a JSON array of ids or ``{"id": …}`` objects (a YAML list works too, and a
    comma-separated list in the environment). Empty means no filter: serve every model."""
    items: Any = raw
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None
        if text.startswith("["):
            try:
                items = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"{raw!r} is not a JSON array ({exc.msg})") from None
        else:
            items = [part for part in text.split(",") if part.strip()]
    if isinstance(items, Mapping):
        items = [items]
    if not isinstance(items, list):
        raise ValueError('expected a JSON array of model ids, e.g. ["gemma3:270m"]')
    ids: list[str] = []
    for item in items:
        if isinstance(item, Mapping):
            item = item.get("id")
        if not isinstance(item, str) or not item.strip():
            raise ValueError(
                'each entry must be a model id or an object with an "id", e.g. '
                '["gemma3:270m", {"id": "qwen3:8b"}]'
            )
        if item.strip() not in ids:
            ids.append(item.strip())
    return tuple(ids) or None


def parse_endpoint(kind: str, raw: Any, source: str) -> BackendSetting:
    """Apply the endpoint contract: empty = auto, a disable word = disabled, else a URL."""
    text = "" if raw is None else str(raw).strip()
    if not text:
        return BackendSetting(kind, EndpointMode.AUTO, None, source)
    if text.lower() in DISABLE_WORDS:
        return BackendSetting(kind, EndpointMode.DISABLED, None, source)
    return BackendSetting(kind, EndpointMode.EXPLICIT, parse_http_url(text), source)


def ws_base(api_url: str) -> str:
    """The WebSocket base for an HTTP base: ``https://h/p`` → ``wss://h/p``."""
    parts = urlsplit(api_url.rstrip("/"))
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}{parts.path}"


def derive_ws_url(api_url: str) -> str:
    """The worker endpoint for a control plane base URL (any of the forms the setting accepts)."""
    return ws_base(parse_control_plane_url(api_url)) + WORKER_WS_PATH


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    return host in {"localhost", "::1"} or host.startswith("127.")


# --------------------------------------------------------------------------------------------------
# The settings table: attribute, config.yaml key, environment variable, parser, aliases.


@dataclass(frozen=True)
class SettingSpec:
    """One setting: its config.yaml key, its variable, the older names it also answers to."""

    attr: str
    key: str
    env: str | None
    parse: Callable[[Any], Any]
    help: str
    default: str = ""
    """The default as ``pendra config list`` shows it."""
    aliases: tuple[str, ...] = ()
    env_aliases: tuple[str, ...] = ()
    secret: bool = False
    documented: bool = False
    """One of the keys Pendra's worker documentation names."""
    env_empty_counts: bool = False
    """An empty variable overrides the file (endpoints: empty = auto-discover)."""


def _endpoint_parser(kind: str) -> Callable[[Any], BackendSetting]:
    return lambda raw: parse_endpoint(kind, raw, "")


_CORE_SPECS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "api_url",
        "app_server_ws_url",
        "APP_SERVER_WS_URL",
        parse_control_plane_url,
        "the control plane; /ws/gpu is appended for the link, the catalogue comes from the same "
        "host over https",
        DEFAULT_SERVER_URL,
        aliases=("api_url",),
        env_aliases=("PENDRA_API_URL",),
        documented=True,
    ),
    SettingSpec(
        "private_key",
        "gpu_worker_private_key",
        "GPU_WORKER_PRIVATE_KEY",
        parse_private_key,
        "the worker's base64 Ed25519 private key from the Pendra console (the file must be 0600)",
        aliases=(),
        env_aliases=("PENDRA_WORKER_KEY",),
        secret=True,
        documented=True,
    ),
    SettingSpec(
        "worker_id",
        "worker_id",
        "WORKER_ID",
        parse_worker_id,
        "stable id of this worker; generated (wrk-<hex>) and saved here on first start",
        "wrk-<hex>, saved on first start",
        documented=True,
    ),
    SettingSpec(
        "worker_name",
        "worker_name",
        "WORKER_NAME",
        parse_worker_name,
        "the name shown in the console and the dashboard",
        "the host name",
        documented=True,
    ),
    SettingSpec(
        "models_filter",
        "models",
        "MODELS",
        parse_models_filter,
        'serve only these models: a JSON array of ids or {"id": …} objects',
        "every model found",
        documented=True,
    ),
    SettingSpec(
        "max_concurrent",
        "max_concurrent",
        "MAX_CONCURRENT",
        parse_clamped_int(*MAX_CONCURRENT_RANGE),
        "inference requests in flight at once across all backends (1–64); more are refused busy",
        "1",
        documented=True,
    ),
    SettingSpec(
        "models_dir",
        "models_dir",
        "PENDRA_MODELS_DIR",
        parse_path,
        "the built-in backend's modelstore",
        "~/.pendra/models",
        documented=True,
    ),
)

_ENDPOINT_SPECS: tuple[SettingSpec, ...] = tuple(
    SettingSpec(
        f"endpoint:{kind}",
        f"{kind}_endpoint",
        f"{kind.upper()}_ENDPOINT",
        _endpoint_parser(kind),
        f"{kind}: empty = auto-discover, off = disabled, a URL = that server",
        "",
        aliases=(f"backends.{kind}", f"backends.{kind}_endpoint"),
        documented=kind in {"ollama", "vllm", "lmstudio", "speaches"},
        env_empty_counts=True,
    )
    for kind in BACKEND_KINDS
)

_EXTRA_SPECS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "key_file",
        "key_file",
        "PENDRA_WORKER_KEY_FILE",
        parse_path,
        "read the worker key from this 0600 file instead",
        "~/.pendra/worker.key",
    ),
    SettingSpec(
        "log_level",
        "log_level",
        "PENDRA_LOG_LEVEL",
        parse_log_level,
        "debug|info|warning|error",
        "info",
    ),
    SettingSpec(
        "builtin_enabled",
        "builtin.enabled",
        "PENDRA_BUILTIN",
        parse_bool,
        "the built-in llama.cpp backend on or off",
        "true",
    ),
    SettingSpec(
        "max_context",
        "builtin.max_context",
        "PENDRA_MAX_CONTEXT",
        parse_int(minimum=128),
        "context cap per sequence of the built-in backend",
        "8192",
    ),
    SettingSpec(
        "max_loaded_models",
        "builtin.max_loaded_models",
        "PENDRA_MAX_LOADED_MODELS",
        parse_int(minimum=1),
        "models the built-in backend keeps loaded at once",
        "2",
    ),
    SettingSpec(
        "idle_unload_s",
        "builtin.idle_unload_s",
        "PENDRA_IDLE_UNLOAD_S",
        parse_float(0),
        "seconds before an idle model is unloaded",
        "900",
    ),
    SettingSpec(
        "gpu_layers",
        "builtin.gpu_layers",
        "PENDRA_GPU_LAYERS",
        parse_gpu_layers,
        "layers offloaded to the GPU (auto, -1 = all, 0 = none)",
        "auto",
    ),
    SettingSpec(
        "threads",
        "builtin.threads",
        "PENDRA_THREADS",
        parse_int(minimum=1),
        "CPU threads of the built-in backend",
        "auto",
    ),
    SettingSpec(
        "parallel",
        "builtin.parallel",
        "PENDRA_PARALLEL",
        parse_int(minimum=1),
        "concurrent sequences per model in the built-in backend",
        "4",
    ),
    SettingSpec(
        "memory_fraction",
        "builtin.memory_fraction",
        "PENDRA_MEMORY_FRACTION",
        parse_fraction,
        "share of the memory free after the weights that the KV cache may take",
        "0.9",
    ),
    SettingSpec(
        "memory_limit",
        "builtin.memory_limit",
        "PENDRA_MEMORY_LIMIT",
        parse_byte_size,
        "memory the built-in backend may use in all (e.g. 8GiB; empty: what is free)",
        "",
    ),
    SettingSpec(
        "kv_type",
        "builtin.kv_type",
        "PENDRA_KV_TYPE",
        parse_choice("f16", "q8_0"),
        "KV cache type (f16 or q8_0)",
        "f16",
    ),
    SettingSpec(
        "max_queued",
        "builtin.max_queued",
        "PENDRA_MAX_QUEUED",
        parse_int(minimum=0),
        "requests a model queues before answering 429",
        "64",
    ),
    SettingSpec(
        "load_wait_s",
        "builtin.load_wait_s",
        "PENDRA_LOAD_WAIT_S",
        parse_float(0),
        "seconds a request waits for room to load its model before a 503",
        "60",
    ),
    SettingSpec(
        "isolation",
        "builtin.isolation",
        "PENDRA_BUILTIN_ISOLATION",
        parse_choice("process", "none"),
        "run each model in its own runner process (process) or in the worker (none)",
        "process",
    ),
    SettingSpec(
        "prefix_cache",
        "builtin.prefix_cache",
        "PENDRA_PREFIX_CACHE",
        parse_bool,
        "keep finished requests' KV cache for prompt caching",
        "true",
    ),
    SettingSpec(
        "discovery_interval_s",
        "backends.discovery_interval_s",
        "PENDRA_DISCOVERY_INTERVAL",
        parse_float(1.0),
        "seconds between backend discovery rounds",
        "30",
    ),
    SettingSpec(
        "gpu_interval_s",
        "gpu_interval_s",
        "PENDRA_GPU_INTERVAL",
        parse_float(0.1),
        "seconds between GPU samples",
        "2",
    ),
    SettingSpec(
        "heartbeat_interval_s",
        "link.heartbeat_interval_s",
        "PENDRA_HEARTBEAT_INTERVAL",
        parse_float(0.5),
        "seconds between heartbeats on the link",
        "15",
    ),
    SettingSpec(
        "drain_timeout_s",
        "drain_timeout_s",
        "PENDRA_DRAIN_TIMEOUT",
        parse_float(0),
        "seconds a stopping worker lets in-flight requests finish",
        "30",
    ),
    SettingSpec(
        "allow_insecure_link",
        "link.allow_insecure",
        "PENDRA_ALLOW_INSECURE_LINK",
        parse_bool,
        "allow plain ws:// to a non-loopback control plane",
        "false",
    ),
    SettingSpec(
        "ca_file",
        "link.ca_file",
        "PENDRA_CA_FILE",
        parse_path,
        "extra CA bundle for a control plane behind a private CA",
    ),
    SettingSpec(
        "private_inference",
        "private_inference.enabled",
        "PENDRA_PRIVATE_INFERENCE",
        parse_bool,
        "private inference: open sealed requests with the workload key beside the worker key",
        "true",
    ),
)

SETTINGS: tuple[SettingSpec, ...] = _CORE_SPECS + _ENDPOINT_SPECS + _EXTRA_SPECS
"""Every setting, in the order ``pendra config list`` shows them."""


def find_spec(name: str) -> tuple[SettingSpec | None, str | None]:
    """The setting a user means by ``name`` (a key, an alias or a variable name, any case), and
    the nearest valid key when there is none."""
    wanted = name.strip()
    lowered = wanted.lower()
    for spec in SETTINGS:
        names = {spec.key, *spec.aliases}
        envs = {spec.env, *spec.env_aliases} - {None}
        if wanted in names or lowered in names or wanted.upper() in envs:
            return spec, None
    return None, nearest_key(wanted)


def nearest_key(name: str) -> str | None:
    keys = [spec.key for spec in SETTINGS]
    lowered = {key.lower(): key for key in keys}
    import difflib  # only when a key is unknown

    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


# --------------------------------------------------------------------------------------------------
# Loading


def default_home(environ: Mapping[str, str]) -> Path:
    raw = environ.get("PENDRA_HOME", "").strip()
    return parse_path(raw) if raw else Path.home() / ".pendra"


def default_models_dir(home: Path, platform: str = sys.platform) -> Path:
    """Per-OS default modelstore: ``%ProgramData%\\Pendra\\models`` on Windows, else under home."""
    if platform.startswith("win"):
        program_data = os.environ.get("PROGRAMDATA", r"C:\ProgramData")
        return Path(program_data) / "Pendra" / "models"
    return home / "models"


def default_worker_name() -> str:
    try:
        return socket.gethostname() or "pendra-worker"
    except OSError:  # pragma: no cover - gethostname does not fail on a sane system
        return "pendra-worker"


def _from_file(
    spec: SettingSpec, data: Mapping[str, Any], path: Path, warnings: list[str]
) -> tuple[bool, Any, str | None]:
    present = [name for name in (spec.key, *spec.aliases) if name in data]
    if not present:
        return False, None, None
    if len(present) > 1:
        warnings.append(
            f"{path}: {', '.join(present[1:])} is ignored because {present[0]} is set too"
        )
    name = present[0]
    return True, data[name], f"{name} in {path}"


def _from_env(
    spec: SettingSpec, env: Mapping[str, str], warnings: list[str]
) -> tuple[bool, Any, str | None]:
    names = [n for n in (spec.env, *spec.env_aliases) if n is not None]
    if spec.env_empty_counts:
        present = [n for n in names if n in env]
    else:
        present = [n for n in names if env.get(n, "").strip()]
    if not present:
        return False, None, None
    if len(present) > 1 and not _same_setting(spec, env[present[0]], env[present[1]]):
        warnings.append(f"{present[1]} is ignored because {present[0]} is set too")
    return True, env[present[0]], f"environment variable {present[0]}"


def _same_setting(spec: SettingSpec, first: Any, second: Any) -> bool:
    """Whether two spellings say the same (``wss://h`` and ``https://h`` do)."""
    try:
        return bool(spec.parse(first) == spec.parse(second))
    except ValueError:
        return str(first).strip() == str(second).strip()


def _unknown_keys(data: Mapping[str, Any], path: Path) -> list[str]:
    known = {name for spec in SETTINGS for name in (spec.key, *spec.aliases)}
    out = []
    for key in data:
        if key in known:
            continue
        spec, nearest = find_spec(key)
        if spec is not None:
            out.append(f"{path}: unknown key {key!r}; did you mean {spec.key!r}? (it is ignored)")
        elif nearest:
            out.append(f"{path}: unknown key {key!r}; did you mean {nearest!r}? (it is ignored)")
        else:
            out.append(
                f"{path}: unknown key {key!r} (it is ignored; `pendra config list` shows the keys)"
            )
    return out


_warning_sink: Callable[[str], None] | None = None
_warned: set[str] = set()


def report_warnings_to(sink: Callable[[str], None] | None) -> None:
    """Send each settings warning, once per process, to ``sink`` as settings are loaded (the CLI
    prints them on stderr; the daemon logs :attr:`Settings.warnings` itself)."""
    global _warning_sink
    _warning_sink = sink


def _report(warnings: Sequence[str]) -> None:
    if _warning_sink is None:
        return
    for warning in warnings:
        if warning not in _warned:
            _warned.add(warning)
            _warning_sink(warning)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings from defaults, the config file and the environment, in that order."""
    from worker.config_file import file_mode
    from worker.config_migration import read_home_config

    env = dict(os.environ if environ is None else environ)
    home = default_home(env)
    warnings: list[str] = []
    config_path = home / "config.yaml"
    data, notes = read_home_config(home)
    warnings.extend(notes)
    warnings.extend(_unknown_keys(data, config_path))

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    backends: dict[str, BackendSetting] = {}
    for spec in SETTINGS:
        found, raw, source = _from_file(spec, data, config_path, warnings)
        env_found, env_raw, env_source = _from_env(spec, env, warnings)
        if env_found:
            found, raw, source = True, env_raw, env_source
        if not found:
            continue
        try:
            value = spec.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"Invalid {spec.key} from {source}: {exc}") from None
        if isinstance(value, Noted):
            warnings.append(f"{spec.key} from {source}: {value.note}")
            value = value.value
        if spec.attr.startswith("endpoint:"):
            kind = spec.attr.partition(":")[2]
            backends[kind] = replace(value, source=source or "default")
            continue
        if value is None and spec.attr == "models_filter":
            continue
        values[spec.attr] = value
        sources[spec.attr] = source or "default"
    for kind in BACKEND_KINDS:
        backends.setdefault(kind, BackendSetting(kind))

    mode = file_mode(config_path)
    if mode is not None and mode & 0o077 and not sys.platform.startswith("win"):
        holds_key = sources.get("private_key", "").endswith(str(config_path))
        warnings.append(
            f"{config_path} is readable by other users (mode {mode:o})"
            + (
                "; it holds the worker key, which the worker refuses to use until"
                if holds_key
                else "; it should be 0600, since it can hold the worker key:"
            )
            + f" chmod 600 {config_path}"
        )

    settings = Settings(
        home=home,
        models_dir=values.pop("models_dir", None) or default_models_dir(home),
        backends=backends,
        worker_name=values.pop("worker_name", None) or default_worker_name(),
        openai_api_key_env="OPENAI_API_KEY" if env.get("OPENAI_API_KEY") else None,
        sources=sources,
        warnings=tuple(warnings),
        **values,
    )
    _report(settings.warnings)
    _check_link_security(settings)
    return settings


def _check_link_security(settings: Settings) -> None:
    """Plain ws:// to anything but loopback needs an explicit, logged opt-in."""
    parts = urlsplit(settings.api_url)
    insecure = parts.scheme == "http" and not is_loopback_host(parts.hostname)
    if insecure and not settings.allow_insecure_link:
        raise ConfigError(
            f"app_server_ws_url {settings.server_url} is plain ws:// to a non-loopback host "
            f"({settings.sources.get('api_url', 'default')}): the worker key proof and all "
            "prompts would cross the network unencrypted",
            hint="use wss://, or set PENDRA_ALLOW_INSECURE_LINK=true if you really mean it",
        )


def display_value(settings: Settings, spec: SettingSpec) -> Any:
    """The effective value of ``spec`` as a user writes it (the key masked)."""
    if spec.attr.startswith("endpoint:"):
        backend = settings.backend(spec.attr.partition(":")[2])
        if backend.mode is EndpointMode.EXPLICIT:
            return backend.url
        return "off" if backend.mode is EndpointMode.DISABLED else ""
    if spec.attr == "api_url":
        return settings.server_url
    value = getattr(settings, spec.attr)
    if spec.secret:
        return None if value is None else "(set)"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def source_of(settings: Settings, spec: SettingSpec) -> str:
    if spec.attr.startswith("endpoint:"):
        return settings.backend(spec.attr.partition(":")[2]).source
    return settings.sources.get(spec.attr, "default")


def with_values(settings: Settings, **changes: Any) -> Settings:
    """A copy with ``changes`` applied (the sources say "set at run time")."""
    sources = dict(settings.sources)
    for name in changes:
        sources[name] = "set at run time"
    return replace(settings, sources=sources, **changes)


def prepare_value(spec: SettingSpec, raw: Any) -> tuple[Any, str | None]:
    """Check ``raw`` for ``spec`` as the loader would and return what to write to config.yaml
    (and a note, e.g. for a clamped value). Raises :class:`ConfigError` naming the key."""
    try:
        value = spec.parse(raw)
        if spec.attr == "private_key":
            value = check_private_key(value)
    except ValueError as exc:
        raise ConfigError(f"Invalid {spec.key}: {exc}") from None
    note = None
    if isinstance(value, Noted):
        note, value = f"{spec.key}: {value.note}", value.value
    if spec.attr.startswith("endpoint:"):
        if value.mode is EndpointMode.EXPLICIT:
            return value.url, note
        return ("off" if value.mode is EndpointMode.DISABLED else ""), note
    if spec.attr == "api_url":
        return ws_base(value), note
    if isinstance(value, tuple):
        return list(value), note
    if value is None:
        return "", note
    if isinstance(value, (bool, int, float)):
        return value, note
    return str(raw).strip() if isinstance(raw, str) else value, note


def file_changes(spec: SettingSpec, value: Any) -> dict[str, Any]:
    """The config.yaml edits that set ``spec`` to ``value`` (``None``: unset), dropping the old
    names of the same setting so two spellings never disagree."""
    changes: dict[str, Any] = {alias: None for alias in spec.aliases}
    changes[spec.key] = value
    return changes
