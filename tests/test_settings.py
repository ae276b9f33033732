"""Settings: defaults < config.yaml < environment, the documented names and their aliases."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.keys import generate_key
from worker.settings import (
    DEFAULT_API_URL,
    EndpointMode,
    default_models_dir,
    derive_ws_url,
    find_spec,
    load_settings,
)


def write_yaml(home: Path, text: str, mode: int = 0o600) -> Path:
    path = home / "config.yaml"
    path.write_text(text)
    path.chmod(mode)
    return path


def env(home: Path, **values: str) -> dict[str, str]:
    return {"PENDRA_HOME": str(home), **values}


def test_defaults(pendra_home: Path) -> None:
    settings = load_settings(env(pendra_home))
    assert settings.home == pendra_home
    assert settings.config_file == pendra_home / "config.yaml"
    assert settings.models_dir == pendra_home / "models"
    assert settings.api_url == DEFAULT_API_URL
    assert settings.server_url == "wss://api.pendra.ai"
    assert settings.ws_url == "wss://api.pendra.ai/ws/gpu"
    assert settings.admin_socket == pendra_home / "run" / "admin.sock"
    assert settings.resolved_key_file == pendra_home / "worker.key"
    assert settings.worker_name == socket.gethostname()
    assert settings.worker_id is None and settings.private_key is None
    assert settings.max_concurrent == 1 and settings.models_filter is None
    assert all(b.mode is EndpointMode.AUTO for b in settings.backends.values())
    assert settings.warnings == ()


def test_home_defaults_to_dot_pendra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = load_settings({})
    assert settings.home == tmp_path / ".pendra"


def test_windows_models_dir() -> None:
    assert default_models_dir(Path("/h"), "win32").parts[-2:] == ("Pendra", "models")


def test_the_documented_config_yaml(pendra_home: Path) -> None:
    key = generate_key(console_form=True)
    path = write_yaml(
        pendra_home,
        "# ~/.pendra/config.yaml\n"
        "app_server_ws_url: wss://cp.example\n"
        f"gpu_worker_private_key: {key.text}\n"
        "worker_id: wrk-a1b2c3d4\n"
        "worker_name: tom-mac\n"
        "max_concurrent: 3\n"
        "models_dir: /srv/models\n"
        "models: ['gemma3:270m', {id: 'qwen3:8b'}]\n"
        "ollama_endpoint: http://localhost:11434\n"
        'vllm_endpoint: ""\n'
        "lmstudio_endpoint: off\n"
        "speaches_endpoint:\n",
    )
    settings = load_settings(env(pendra_home))
    assert settings.server_url == "wss://cp.example"
    assert settings.ws_url == "wss://cp.example/ws/gpu"
    assert settings.api_url == "https://cp.example"
    assert settings.private_key == key.text
    assert settings.worker_id == "wrk-a1b2c3d4" and settings.worker_name == "tom-mac"
    assert settings.max_concurrent == 3
    assert settings.models_dir == Path("/srv/models")
    assert settings.models_filter == ("gemma3:270m", "qwen3:8b")
    assert settings.backend("ollama").url == "http://localhost:11434"
    assert settings.backend("vllm").mode is EndpointMode.AUTO
    assert settings.backend("lmstudio").mode is EndpointMode.DISABLED
    assert settings.backend("speaches").mode is EndpointMode.AUTO
    assert settings.sources["worker_name"] == f"worker_name in {path}"
    assert settings.warnings == ()
    assert key.text not in repr(settings)


def test_the_documented_environment_overrides_the_file(pendra_home: Path) -> None:
    write_yaml(pendra_home, "worker_name: from-file\nmax_concurrent: 2\n")
    settings = load_settings(
        env(
            pendra_home,
            APP_SERVER_WS_URL="ws://127.0.0.1:9999",
            WORKER_ID="wrk-env",
            WORKER_NAME="from-env",
            MODELS='["gemma3:270m"]',
            MAX_CONCURRENT="5",
            PENDRA_MODELS_DIR="/data/gguf",
            OLLAMA_ENDPOINT="off",
        )
    )
    assert settings.ws_url == "ws://127.0.0.1:9999/ws/gpu"
    assert settings.api_url == "http://127.0.0.1:9999"
    assert (settings.worker_id, settings.worker_name) == ("wrk-env", "from-env")
    assert settings.models_filter == ("gemma3:270m",)
    assert settings.max_concurrent == 5
    assert settings.models_dir == Path("/data/gguf")
    assert settings.backend("ollama").mode is EndpointMode.DISABLED
    assert settings.sources["max_concurrent"] == "environment variable MAX_CONCURRENT"


def test_yaml_values_stay_text(pendra_home: Path) -> None:
    """``off`` is not a YAML boolean here and ``007`` keeps its zeros: the table types values."""
    write_yaml(pendra_home, "worker_name: 007\nollama_endpoint: Off\nworker_id: 0123\n")
    settings = load_settings(env(pendra_home))
    assert settings.worker_name == "007" and settings.worker_id == "0123"
    assert settings.backend("ollama").mode is EndpointMode.DISABLED


def test_nested_sections_mean_dotted_keys(pendra_home: Path) -> None:
    write_yaml(pendra_home, "builtin:\n  parallel: 4\n  enabled: false\nbackends:\n  ollama: off\n")
    settings = load_settings(env(pendra_home))
    assert settings.parallel == 4 and settings.builtin_enabled is False
    assert settings.backend("ollama").mode is EndpointMode.DISABLED
    flat = write_yaml(pendra_home, "builtin.parallel: 6\n")
    assert load_settings(env(pendra_home)).parallel == 6
    assert "builtin.parallel in" in load_settings(env(pendra_home)).sources["parallel"]
    assert flat.exists()


@pytest.mark.parametrize(
    ("raw", "ws", "api"),
    [
        ("wss://h.example", "wss://h.example/ws/gpu", "https://h.example"),
        ("wss://h.example/ws/gpu", "wss://h.example/ws/gpu", "https://h.example"),
        ("wss://h.example/pendra/", "wss://h.example/pendra/ws/gpu", "https://h.example/pendra"),
        ("https://h.example", "wss://h.example/ws/gpu", "https://h.example"),
        ("ws://127.0.0.1:8787", "ws://127.0.0.1:8787/ws/gpu", "http://127.0.0.1:8787"),
        ("http://localhost:8787", "ws://localhost:8787/ws/gpu", "http://localhost:8787"),
    ],
)
def test_one_url_names_link_and_http_side(pendra_home: Path, raw: str, ws: str, api: str) -> None:
    settings = load_settings(env(pendra_home, APP_SERVER_WS_URL=raw))
    assert (settings.ws_url, settings.api_url) == (ws, api)
    assert derive_ws_url(raw) == ws


def test_pendra_api_url_is_an_alias(pendra_home: Path) -> None:
    old = load_settings(env(pendra_home, PENDRA_API_URL="https://cp.example"))
    assert old.ws_url == "wss://cp.example/ws/gpu" and old.warnings == ()
    both = load_settings(
        env(
            pendra_home, PENDRA_API_URL="https://old.example", APP_SERVER_WS_URL="wss://new.example"
        )
    )
    assert both.api_url == "https://new.example"
    assert any("PENDRA_API_URL is ignored" in w for w in both.warnings)
    write_yaml(pendra_home, "api_url: https://file.example\n")
    assert load_settings(env(pendra_home)).server_url == "wss://file.example"


def test_bad_control_plane_url(pendra_home: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env(pendra_home, APP_SERVER_WS_URL="ftp://h.example"))
    assert "APP_SERVER_WS_URL" in str(err.value) and "wss://api.pendra.ai" in str(err.value)


def test_plain_ws_to_remote_control_plane_is_refused(pendra_home: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env(pendra_home, APP_SERVER_WS_URL="ws://cp.example"))
    assert "PENDRA_ALLOW_INSECURE_LINK" in str(err.value)
    allowed = load_settings(
        env(pendra_home, APP_SERVER_WS_URL="ws://cp.example", PENDRA_ALLOW_INSECURE_LINK="true")
    )
    assert allowed.ws_url == "ws://cp.example/ws/gpu"


@pytest.mark.parametrize(("raw", "used"), [("100", 64), ("64", 64), ("0", 1), ("-3", 1)])
def test_max_concurrent_is_clamped_with_a_warning(pendra_home: Path, raw: str, used: int) -> None:
    settings = load_settings(env(pendra_home, MAX_CONCURRENT=raw))
    assert settings.max_concurrent == used
    assert bool(settings.warnings) == (raw not in ("64",))
    if settings.warnings:
        assert "MAX_CONCURRENT" in settings.warnings[0] and str(used) in settings.warnings[0]


def test_models_filter_forms(pendra_home: Path) -> None:
    def parsed(raw: str) -> tuple[str, ...] | None:
        return load_settings(env(pendra_home, MODELS=raw)).models_filter

    assert parsed('["a:1", {"id": "b"}, "a:1"]') == ("a:1", "b")
    assert parsed("a:1, b") == ("a:1", "b")
    assert parsed("[]") is None
    with pytest.raises(ConfigError, match="MODELS"):
        parsed('["a", 3]')
    with pytest.raises(ConfigError, match="JSON array"):
        parsed("[not json")


def test_unknown_keys_are_reported_with_the_nearest(pendra_home: Path) -> None:
    write_yaml(pendra_home, "max_concurent: 4\nMAX_CONCURRENT: 2\nwhatever_this_is: 1\n")
    warnings = load_settings(env(pendra_home)).warnings
    assert any("'max_concurent'" in w and "did you mean 'max_concurrent'" in w for w in warnings)
    assert any("'MAX_CONCURRENT'" in w and "did you mean 'max_concurrent'" in w for w in warnings)
    assert any("'whatever_this_is'" in w for w in warnings)


def test_config_file_readable_by_others_is_warned_about(pendra_home: Path) -> None:
    write_yaml(pendra_home, "worker_name: x\n", mode=0o644)
    (warning,) = load_settings(env(pendra_home)).warnings
    assert "mode 644" in warning and "chmod 600" in warning


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("worker_name: [unclosed\n", "line"),
        ("- a\n- b\n", "key: value"),
        ("worker_name: a\nworker_name: b\n", "written twice"),
    ],
)
def test_broken_files_name_the_file(pendra_home: Path, text: str, expected: str) -> None:
    path = write_yaml(pendra_home, text)
    with pytest.raises(ConfigError) as err:
        load_settings(env(pendra_home))
    assert str(path) in str(err.value) and expected in str(err.value)


def test_bad_value_names_key_and_source(pendra_home: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env(pendra_home, PENDRA_MAX_CONTEXT="lots"))
    assert "PENDRA_MAX_CONTEXT" in str(err.value) and "lots" in str(err.value)
    path = write_yaml(pendra_home, "builtin:\n  max_loaded_models: 0\n")
    with pytest.raises(ConfigError) as err:
        load_settings(env(pendra_home))
    assert "builtin.max_loaded_models" in str(err.value) and str(path) in str(err.value)


def test_a_malformed_key_is_refused_where_it_is_used_without_echoing_it(
    pendra_home: Path,
) -> None:
    """Loading settings still works (so `pendra key set` can replace a damaged key); the worker,
    loading the key, refuses it with exit 4 and the forms a key has."""
    from worker.keys import KeyProblem, load_configured_key

    text = generate_key(console_form=True).text
    settings = load_settings(env(pendra_home, GPU_WORKER_PRIVATE_KEY=text[:-6]))
    with pytest.raises(KeyProblem) as err:
        load_configured_key(settings)
    assert err.value.exit_code == 4
    assert "GPU_WORKER_PRIVATE_KEY" in str(err.value) and "base64" in str(err.value)
    assert text[:-6] not in str(err.value)


@pytest.mark.parametrize(
    "word", ["off", "OFF", "0", "false", "False", "none", "NONE", "no", " No "]
)
def test_every_disable_word_disables(pendra_home: Path, word: str) -> None:
    settings = load_settings(env(pendra_home, OLLAMA_ENDPOINT=word))
    assert settings.backend("ollama").mode is EndpointMode.DISABLED
    assert settings.backend("ollama").url is None


def test_empty_means_auto_and_url_means_explicit(pendra_home: Path) -> None:
    write_yaml(pendra_home, "ollama_endpoint: off\n")
    settings = load_settings(
        env(pendra_home, OLLAMA_ENDPOINT="", VLLM_ENDPOINT="http://gpu-box:8000/")
    )
    assert settings.backend("ollama").mode is EndpointMode.AUTO  # an empty variable still wins
    vllm = settings.backend("vllm")
    assert vllm.mode is EndpointMode.EXPLICIT
    assert vllm.url == "http://gpu-box:8000"
    assert vllm.source == "environment variable VLLM_ENDPOINT"
    with pytest.raises(ConfigError, match="LMSTUDIO_ENDPOINT"):
        load_settings(env(pendra_home, LMSTUDIO_ENDPOINT="localhost:1234"))


def test_find_spec_takes_keys_aliases_and_variables() -> None:
    assert find_spec("max_concurrent")[0].key == "max_concurrent"  # type: ignore[union-attr]
    assert find_spec("MAX_CONCURRENT")[0].key == "max_concurrent"  # type: ignore[union-attr]
    assert find_spec("api_url")[0].key == "app_server_ws_url"  # type: ignore[union-attr]
    assert find_spec("PENDRA_API_URL")[0].key == "app_server_ws_url"  # type: ignore[union-attr]
    assert find_spec("worker-name") == (None, "worker_name")


# -- where the key comes from ------------------------------------------------------------------


def test_key_location_precedence(pendra_home: Path, tmp_path: Path) -> None:
    key = generate_key(console_form=True).text
    nothing = load_settings(env(pendra_home)).key_location()
    assert nothing.kind == "file" and nothing.path == pendra_home / "worker.key"
    assert not nothing.present

    write_yaml(pendra_home, f"gpu_worker_private_key: {key}\n")
    in_file = load_settings(env(pendra_home)).key_location()
    assert in_file.kind == "inline" and in_file.path == pendra_home / "config.yaml"
    assert in_file.present and not in_file.from_environment

    # an explicit key file in the environment beats the key in the file …
    key_file = tmp_path / "k"
    over = load_settings(env(pendra_home, PENDRA_WORKER_KEY_FILE=str(key_file))).key_location()
    assert over.kind == "file" and over.path == key_file and over.from_environment
    # … and a key in the environment beats both
    top = load_settings(
        env(pendra_home, PENDRA_WORKER_KEY_FILE=str(key_file), GPU_WORKER_PRIVATE_KEY=key)
    ).key_location()
    assert top.kind == "inline" and top.from_environment and top.path is None
    legacy = load_settings(env(pendra_home, PENDRA_WORKER_KEY=key)).key_location()
    assert legacy.source == "environment variable PENDRA_WORKER_KEY"


# -- config.toml from an earlier install ----------------------------------------------------------


def test_config_toml_is_migrated_once(pendra_home: Path) -> None:
    toml = pendra_home / "config.toml"
    toml.write_text(
        'api_url = "https://cp.example"\nmodels_dir = "/srv/models"\n'
        '[backends]\nOLLAMA_ENDPOINT = "off"\nlmstudio = "http://127.0.0.1:1234"\n'
        "discovery_interval_s = 5\n[builtin]\nmax_context = 4096\nenabled = false\n"
    )
    first = load_settings(env(pendra_home))
    assert any("moved the settings" in w for w in first.warnings)
    yaml_path = pendra_home / "config.yaml"
    assert not toml.exists() and (pendra_home / "config.toml.migrated").exists()
    assert os.stat(yaml_path).st_mode & 0o777 == 0o600
    text = yaml_path.read_text()
    assert "app_server_ws_url: wss://cp.example" in text and "ollama_endpoint: off" in text
    assert "Moved here from config.toml" in text
    assert first.server_url == "wss://cp.example" and first.models_dir == Path("/srv/models")
    assert first.backend("ollama").mode is EndpointMode.DISABLED
    assert first.backend("lmstudio").url == "http://127.0.0.1:1234"
    assert first.discovery_interval_s == 5 and first.max_context == 4096
    assert first.builtin_enabled is False

    again = load_settings(env(pendra_home))
    assert again.warnings == () and again.max_context == 4096


def test_a_stray_config_toml_beside_config_yaml_is_reported(pendra_home: Path) -> None:
    write_yaml(pendra_home, "worker_name: a\n")
    (pendra_home / "config.toml").write_text("api_url = 'https://x.example'\n")
    settings = load_settings(env(pendra_home))
    assert settings.server_url == "wss://api.pendra.ai"
    assert any("config.toml is ignored" in w for w in settings.warnings)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_home_reads_config_toml_in_place(pendra_home: Path) -> None:
    (pendra_home / "config.toml").write_text("[builtin]\nmax_context = 2048\n")
    pendra_home.chmod(0o500)
    try:
        settings = load_settings(env(pendra_home))
    finally:
        pendra_home.chmod(0o700)
    assert settings.max_context == 2048
    assert any("could not move" in w for w in settings.warnings)


def test_invalid_toml_names_the_file(pendra_home: Path) -> None:
    path = pendra_home / "config.toml"
    path.write_text("models_dir = \n")
    with pytest.raises(ConfigError) as err:
        load_settings(env(pendra_home))
    assert str(path) in str(err.value) and "not valid TOML" in str(err.value)


def test_a_home_that_cannot_be_written_reads_config_toml_in_place(pendra_home: Path) -> None:
    """Root ignores directory modes, so the lock file is made unopenable instead (a directory)."""
    (pendra_home / "config.toml").write_text("[builtin]\nmax_context = 2048\n")
    (pendra_home / ".config.lock").mkdir()
    settings = load_settings(env(pendra_home))
    assert settings.max_context == 2048
    assert any("could not move" in w and "reading the old file" in w for w in settings.warnings)
    assert (pendra_home / "config.toml").exists() and not (pendra_home / "config.yaml").exists()
