"""Settings precedence (defaults < config.toml < environment) and the endpoint contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.settings import (
    DEFAULT_API_URL,
    EndpointMode,
    default_models_dir,
    derive_ws_url,
    load_settings,
)


def write_config(home: Path, text: str) -> Path:
    path = home / "config.toml"
    path.write_text(text)
    return path


def test_defaults(pendra_home: Path) -> None:
    settings = load_settings({"PENDRA_HOME": str(pendra_home)})
    assert settings.home == pendra_home
    assert settings.models_dir == pendra_home / "models"
    assert settings.api_url == DEFAULT_API_URL
    assert settings.ws_url == "wss://api.pendra.ai/api/v1/worker/connect"
    assert settings.admin_socket == pendra_home / "run" / "admin.sock"
    assert settings.resolved_key_file == pendra_home / "worker.key"
    assert all(b.mode is EndpointMode.AUTO for b in settings.backends.values())


def test_home_defaults_to_dot_pendra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = load_settings({})
    assert settings.home == tmp_path / ".pendra"


def test_windows_models_dir() -> None:
    assert default_models_dir(Path("/h"), "win32").parts[-2:] == ("Pendra", "models")


def test_config_file_overrides_defaults_and_env_overrides_file(pendra_home: Path) -> None:
    write_config(
        pendra_home,
        'models_dir = "/srv/models"\napi_url = "https://cp.example"\n'
        "[builtin]\nmax_context = 4096\n",
    )
    from_file = load_settings({"PENDRA_HOME": str(pendra_home)})
    assert from_file.models_dir == Path("/srv/models")
    assert from_file.max_context == 4096
    assert from_file.api_url == "https://cp.example"
    assert "config.toml" in from_file.sources["max_context"]

    from_env = load_settings(
        {
            "PENDRA_HOME": str(pendra_home),
            "PENDRA_MODELS_DIR": "/data/gguf",
            "PENDRA_MAX_CONTEXT": "2048",
        }
    )
    assert from_env.models_dir == Path("/data/gguf")
    assert from_env.max_context == 2048
    assert from_env.sources["max_context"] == "environment variable PENDRA_MAX_CONTEXT"
    assert from_env.api_url == "https://cp.example"


@pytest.mark.parametrize(
    "word", ["off", "OFF", "0", "false", "False", "none", "NONE", "no", " No "]
)
def test_every_disable_word_disables(pendra_home: Path, word: str) -> None:
    settings = load_settings({"PENDRA_HOME": str(pendra_home), "OLLAMA_ENDPOINT": word})
    assert settings.backend("ollama").mode is EndpointMode.DISABLED
    assert settings.backend("ollama").url is None


def test_empty_means_auto_and_url_means_explicit(pendra_home: Path) -> None:
    settings = load_settings(
        {
            "PENDRA_HOME": str(pendra_home),
            "OLLAMA_ENDPOINT": "",
            "VLLM_ENDPOINT": "http://gpu-box:8000/",
        }
    )
    assert settings.backend("ollama").mode is EndpointMode.AUTO
    vllm = settings.backend("vllm")
    assert vllm.mode is EndpointMode.EXPLICIT
    assert vllm.url == "http://gpu-box:8000"
    assert vllm.source == "environment variable VLLM_ENDPOINT"


def test_backends_table_accepts_env_style_and_short_keys(pendra_home: Path) -> None:
    write_config(
        pendra_home,
        '[backends]\nOLLAMA_ENDPOINT = "off"\nlmstudio = "http://127.0.0.1:1234"\n'
        'speaches_endpoint = ""\n',
    )
    settings = load_settings({"PENDRA_HOME": str(pendra_home)})
    assert settings.backend("ollama").mode is EndpointMode.DISABLED
    assert settings.backend("lmstudio").url == "http://127.0.0.1:1234"
    assert settings.backend("speaches").mode is EndpointMode.AUTO
    # the environment wins over the file, an empty value there meaning auto-discover
    env = load_settings({"PENDRA_HOME": str(pendra_home), "OLLAMA_ENDPOINT": ""})
    assert env.backend("ollama").mode is EndpointMode.AUTO


def test_bad_value_names_key_and_variable(pendra_home: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"PENDRA_HOME": str(pendra_home), "PENDRA_MAX_CONTEXT": "lots"})
    assert "PENDRA_MAX_CONTEXT" in str(err.value)
    assert "lots" in str(err.value)


def test_bad_value_names_key_and_file(pendra_home: Path) -> None:
    path = write_config(pendra_home, "[builtin]\nmax_loaded_models = 0\n")
    with pytest.raises(ConfigError) as err:
        load_settings({"PENDRA_HOME": str(pendra_home)})
    assert "builtin.max_loaded_models" in str(err.value)
    assert str(path) in str(err.value)


def test_bad_endpoint_url(pendra_home: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"PENDRA_HOME": str(pendra_home), "LMSTUDIO_ENDPOINT": "localhost:1234"})
    assert "LMSTUDIO_ENDPOINT" in str(err.value)


def test_invalid_toml_names_the_file(pendra_home: Path) -> None:
    path = write_config(pendra_home, "models_dir = \n")
    with pytest.raises(ConfigError) as err:
        load_settings({"PENDRA_HOME": str(pendra_home)})
    assert str(path) in str(err.value)


def test_plain_http_to_remote_control_plane_is_refused(pendra_home: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"PENDRA_HOME": str(pendra_home), "PENDRA_API_URL": "http://cp.example"})
    assert "PENDRA_ALLOW_INSECURE_LINK" in str(err.value)
    ok = load_settings({"PENDRA_HOME": str(pendra_home), "PENDRA_API_URL": "http://127.0.0.1:8787"})
    assert ok.ws_url == "ws://127.0.0.1:8787/api/v1/worker/connect"


def test_ws_url_keeps_path_prefix() -> None:
    assert (
        derive_ws_url("https://h.example/pendra/") == "wss://h.example/pendra/api/v1/worker/connect"
    )
