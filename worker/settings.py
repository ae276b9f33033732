"""Worker configuration: built-in defaults < ``$PENDRA_HOME/config.toml`` < environment.

The contract (README, Configuration):

* ``PENDRA_HOME`` (default ``~/.pendra``) holds ``config.toml``, ``worker.key``, ``run/``, ``logs/``
  and ``cache/``.
* Backend endpoints (``OLLAMA_ENDPOINT`` … or the same keys under ``[backends]``): empty or unset
  means auto-discover; ``off``/``0``/``false``/``none``/``no`` in any case means disabled and never
  probed; anything else is that URL, verified before use.
* A value the worker cannot use raises :class:`~worker.errors.ConfigError` naming the key and the
  file or variable it came from.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from worker.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_API_URL = "https://api.pendra.ai"
DISABLE_WORDS = frozenset({"off", "0", "false", "none", "no"})
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
class Settings:
    """Resolved configuration. Immutable: reload to pick up changes."""

    home: Path
    models_dir: Path
    api_url: str = DEFAULT_API_URL
    key_file: Path | None = None
    log_level: str = "info"
    backends: Mapping[str, BackendSetting] = field(default_factory=dict)
    openai_api_key_env: str | None = None
    builtin_enabled: bool = True
    max_context: int = 8192
    max_loaded_models: int = 2
    idle_unload_s: float = 900.0
    gpu_layers: int | None = None
    threads: int | None = None
    parallel: int = 8
    discovery_interval_s: float = 30.0
    gpu_interval_s: float = 2.0
    heartbeat_interval_s: float = 15.0
    drain_timeout_s: float = 30.0
    allow_insecure_link: bool = False
    ca_file: Path | None = None
    private_inference: bool = True
    sources: Mapping[str, str] = field(default_factory=dict)

    # -- derived paths -------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
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
    def ws_url(self) -> str:
        """The control plane's worker endpoint, derived from ``api_url``."""
        return derive_ws_url(self.api_url)

    def backend(self, kind: str) -> BackendSetting:
        return self.backends.get(kind, BackendSetting(kind))


# --------------------------------------------------------------------------------------------------
# Value parsers: each takes the raw value and returns the typed one or raises ValueError with a
# short reason; the loader adds the key and the source.


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
        if minimum is not None and value < minimum:
            raise ValueError(f"{value} is below the minimum of {minimum}")
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


def parse_endpoint(kind: str, raw: Any, source: str) -> BackendSetting:
    """Apply the endpoint contract: empty = auto, a disable word = disabled, else a URL."""
    text = "" if raw is None else str(raw).strip()
    if not text:
        return BackendSetting(kind, EndpointMode.AUTO, None, source)
    if text.lower() in DISABLE_WORDS:
        return BackendSetting(kind, EndpointMode.DISABLED, None, source)
    return BackendSetting(kind, EndpointMode.EXPLICIT, parse_http_url(text), source)


def derive_ws_url(api_url: str) -> str:
    parts = urlsplit(api_url.rstrip("/"))
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}{parts.path}/api/v1/worker/connect"


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    return host in {"localhost", "::1"} or host.startswith("127.")


# --------------------------------------------------------------------------------------------------
# The table of scalar settings: attribute, config.toml key (dotted = in a table), env var, parser.


@dataclass(frozen=True)
class _Field:
    attr: str
    toml_key: str
    env: str | None
    parse: Callable[[Any], Any]


_FIELDS: tuple[_Field, ...] = (
    _Field("models_dir", "models_dir", "PENDRA_MODELS_DIR", parse_path),
    _Field("api_url", "api_url", "PENDRA_API_URL", parse_http_url),
    _Field("key_file", "key_file", "PENDRA_WORKER_KEY_FILE", parse_path),
    _Field("log_level", "log_level", "PENDRA_LOG_LEVEL", parse_log_level),
    _Field("builtin_enabled", "builtin.enabled", "PENDRA_BUILTIN", parse_bool),
    _Field("max_context", "builtin.max_context", "PENDRA_MAX_CONTEXT", parse_int(minimum=128)),
    _Field(
        "max_loaded_models",
        "builtin.max_loaded_models",
        "PENDRA_MAX_LOADED_MODELS",
        parse_int(minimum=1),
    ),
    _Field("idle_unload_s", "builtin.idle_unload_s", "PENDRA_IDLE_UNLOAD_S", parse_float(0)),
    _Field("gpu_layers", "builtin.gpu_layers", "PENDRA_GPU_LAYERS", parse_gpu_layers),
    _Field("threads", "builtin.threads", "PENDRA_THREADS", parse_int(minimum=1)),
    _Field("parallel", "builtin.parallel", "PENDRA_PARALLEL", parse_int(minimum=1)),
    _Field(
        "discovery_interval_s",
        "backends.discovery_interval_s",
        "PENDRA_DISCOVERY_INTERVAL",
        parse_float(1.0),
    ),
    _Field("gpu_interval_s", "gpu_interval_s", "PENDRA_GPU_INTERVAL", parse_float(0.1)),
    _Field(
        "heartbeat_interval_s",
        "link.heartbeat_interval_s",
        "PENDRA_HEARTBEAT_INTERVAL",
        parse_float(0.5),
    ),
    _Field("drain_timeout_s", "drain_timeout_s", "PENDRA_DRAIN_TIMEOUT", parse_float(0)),
    _Field(
        "allow_insecure_link",
        "link.allow_insecure",
        "PENDRA_ALLOW_INSECURE_LINK",
        parse_bool,
    ),
    _Field("ca_file", "link.ca_file", "PENDRA_CA_FILE", parse_path),
    _Field(
        "private_inference",
        "private_inference.enabled",
        "PENDRA_PRIVATE_INFERENCE",
        parse_bool,
    ),
)


def default_home(environ: Mapping[str, str]) -> Path:
    raw = environ.get("PENDRA_HOME", "").strip()
    return parse_path(raw) if raw else Path.home() / ".pendra"


def default_models_dir(home: Path, platform: str = sys.platform) -> Path:
    """Per-OS default modelstore: ``%ProgramData%\\Pendra\\models`` on Windows, else under home."""
    if platform.startswith("win"):
        program_data = os.environ.get("PROGRAMDATA", r"C:\ProgramData")
        return Path(program_data) / "Pendra" / "models"
    return home / "models"


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse config.toml; a syntax error names the file and line."""
    if not path.exists():
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}", hint="fix the line named above or remove the file"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _lookup(table: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = table
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _backend_from_toml(section: Mapping[str, Any], kind: str) -> tuple[bool, Any]:
    """``[backends]`` accepts ``ollama = …``, ``ollama_endpoint = …`` or ``OLLAMA_ENDPOINT = …``."""
    wanted = {kind, f"{kind}_endpoint"}
    for key, value in section.items():
        if key.lower() in wanted:
            return True, value
    return False, None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings from defaults, the config file and the environment, in that order."""
    env = dict(os.environ if environ is None else environ)
    home = default_home(env)
    config_path = home / "config.toml"
    data = read_config_file(config_path)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in _FIELDS:
        found, raw = _lookup(data, spec.toml_key)
        source = None
        if found:
            source = f"{spec.toml_key} in {config_path}"
        if spec.env and env.get(spec.env, "").strip():
            raw, found, source = env[spec.env], True, f"environment variable {spec.env}"
        if not found:
            continue
        try:
            values[spec.attr] = spec.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"Invalid {spec.toml_key} from {source}: {exc}") from None
        sources[spec.attr] = source or "default"

    backends_table = data.get("backends", {})
    if not isinstance(backends_table, Mapping):
        raise ConfigError(f"[backends] in {config_path} must be a table")
    backends: dict[str, BackendSetting] = {}
    for kind in BACKEND_KINDS:
        env_name = f"{kind.upper()}_ENDPOINT"
        raw: Any = None
        source = "default"
        found, value = _backend_from_toml(backends_table, kind)
        if found:
            raw, source = value, f"backends.{kind} in {config_path}"
        if env_name in env:
            raw, source = env[env_name], f"environment variable {env_name}"
        try:
            backends[kind] = parse_endpoint(kind, raw, source)
        except ValueError as exc:
            raise ConfigError(f"Invalid {kind} endpoint from {source}: {exc}") from None

    settings = Settings(
        home=home,
        models_dir=values.pop("models_dir", None) or default_models_dir(home),
        backends=backends,
        openai_api_key_env="OPENAI_API_KEY" if env.get("OPENAI_API_KEY") else None,
        sources=sources,
        **values,
    )
    _check_link_security(settings)
    return settings


def _check_link_security(settings: Settings) -> None:
    """Plain ws:// to anything but loopback needs an explicit, logged opt-in."""
    parts = urlsplit(settings.api_url)
    insecure = parts.scheme == "http" and not is_loopback_host(parts.hostname)
    if insecure and not settings.allow_insecure_link:
        raise ConfigError(
            f"api_url {settings.api_url} is plain http to a non-loopback host "
            f"({settings.sources.get('api_url', 'default')}): the worker key proof and all "
            "prompts would cross the network unencrypted",
            hint="use https://, or set PENDRA_ALLOW_INSECURE_LINK=true if you really mean it",
        )
