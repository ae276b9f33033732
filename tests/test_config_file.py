"""config.yaml writes: only the changed keys' lines move; comments, order and the rest stay."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.config_file import edit_text, parse_yaml_text, render_value, update_config

DOC = """# my worker
app_server_ws_url: wss://api.pendra.ai   # the real one
worker_name: tom-mac

# models I serve
models:
  - gemma3:270m
  - qwen3:8b
max_concurrent: 1
"""


def test_set_replaces_one_line_and_keeps_comments() -> None:
    out = edit_text(DOC, {"max_concurrent": 4, "worker_name": "lab box"})
    assert out is not None
    assert out.splitlines()[0] == "# my worker"
    assert "# models I serve" in out and "  - qwen3:8b" in out
    assert "worker_name: lab box" in out and "max_concurrent: 4" in out
    data = parse_yaml_text(out, Path("c"))
    assert data["models"] == ["gemma3:270m", "qwen3:8b"] and data["worker_name"] == "lab box"


def test_set_of_a_block_value_replaces_the_whole_block() -> None:
    out = edit_text(DOC, {"models": ["a:1"]})
    assert out is not None
    assert "qwen3" not in out and '["a:1"]' in out
    assert "max_concurrent: 1" in out and "# models I serve" in out


def test_unset_and_append() -> None:
    out = edit_text(DOC, {"worker_name": None, "worker_id": "wrk-1"})
    assert out is not None
    assert "worker_name" not in out and out.rstrip().endswith("worker_id: wrk-1")


def test_a_nested_key_cannot_be_line_edited() -> None:
    assert edit_text("builtin:\n  parallel: 4\n", {"builtin.parallel": 8}) is None


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_any_text_value_reads_back_the_same(value: str) -> None:
    data = parse_yaml_text(f"k: {render_value(value)}\n", Path("c"))
    assert data["k"] == value


def test_update_config_writes_0600_and_reports_a_tightened_mode(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(DOC)
    path.chmod(0o644)
    notes = update_config(path, {"max_concurrent": 2})
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert any("0600 now" in n for n in notes)
    assert "# the real one" in path.read_text()


def test_update_config_rewrites_nested_files_flat_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("# c\nbuiltin:\n  parallel: 4\n  enabled: true\n")
    notes = update_config(path, {"builtin.parallel": 8})
    assert any("comments were not kept" in n for n in notes)
    data = parse_yaml_text(path.read_text(), path)
    assert data == {"builtin.parallel": "8", "builtin.enabled": "true"}


def test_update_config_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "home" / "config.yaml"
    assert update_config(path, {"worker_id": "wrk-1"}) == []
    assert parse_yaml_text(path.read_text(), path) == {"worker_id": "wrk-1"}
    assert path.read_text().startswith("# Pendra worker settings")


def test_concurrent_updates_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            update_config(path, {f"builtin.k{n}": n})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    data = parse_yaml_text(path.read_text(), path)
    assert {f"builtin.k{n}" for n in range(8)} <= set(data)


@pytest.mark.parametrize("value", ["wss://api.pendra.ai", "http://localhost:11434", "a b", ""])
def test_plain_and_quoted_values(value: str) -> None:
    rendered = render_value(value)
    assert parse_yaml_text(f"k: {rendered}\n", Path("c"))["k"] == value
    if value.startswith(("wss", "http")):
        assert rendered == value  # URLs stay readable, as in the documented example
