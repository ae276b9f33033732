"""The environment children of the worker get: secrets removed, everything else kept."""

import ast
from collections.abc import Iterator
from pathlib import Path

from worker.child_env import child_env, is_secret_name


def test_secrets_are_removed_and_the_rest_is_kept() -> None:
    base = {
        "PATH": "/usr/bin",
        "PENDRA_WORKER_KEY": "pdk_secret",
        "GPU_WORKER_PRIVATE_KEY": "c2VjcmV0",
        "HF_TOKEN": "hf_secret",
        "GITHUB_TOKEN": "ghp_secret",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "PENDRA_WORKER_KEY_FILE": "/home/u/.pendra/worker.key",
        "CUDA_VISIBLE_DEVICES": "0",
    }
    env = child_env(base=base)
    assert env == {
        "PATH": "/usr/bin",
        "PENDRA_WORKER_KEY_FILE": "/home/u/.pendra/worker.key",
        "CUDA_VISIBLE_DEVICES": "0",
    }


def test_extra_is_applied_after_scrubbing() -> None:
    env = child_env({"HF_TOKEN": "given-on-purpose"}, base={"HF_TOKEN": "x", "HOME": "/h"})
    assert env == {"HOME": "/h", "HF_TOKEN": "given-on-purpose"}


def test_names_are_compared_case_insensitively() -> None:
    assert is_secret_name("hf_token")
    assert is_secret_name("pendra_worker_key")
    assert not is_secret_name("PENDRA_HOME")


# Every way the worker or the installer can start a process; each call must name its environment.
_SPAWNERS = {
    ("subprocess", "run"),
    ("subprocess", "Popen"),
    ("subprocess", "call"),
    ("subprocess", "check_call"),
    ("subprocess", "check_output"),
    ("asyncio", "create_subprocess_exec"),
    ("asyncio", "create_subprocess_shell"),
}
_FORBIDDEN = {("os", "system"), ("os", "popen")} | {
    ("os", name) for name in ("execv", "execve", "execvp", "execvpe", "spawnv", "spawnve")
}


def _spawn_calls(root: Path) -> Iterator[tuple[str, ast.Call, tuple[str, str]]]:
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
            ):
                yield f"{path}:{node.lineno}", node, (node.func.value.id, node.func.attr)


def test_every_process_the_worker_or_installer_starts_gets_child_env() -> None:
    """A static check over the source: a new subprocess call without ``env=child_env(...)`` would
    hand the worker key (container mode) or a Hugging Face token to whatever it runs."""
    repo = Path(__file__).resolve().parent.parent
    checked, wrong = 0, []
    for package in ("worker", "installer"):
        for where, call, name in _spawn_calls(repo / package):
            if name in _FORBIDDEN:
                wrong.append(f"{where}: {'.'.join(name)} cannot be given an environment")
            if name not in _SPAWNERS:
                continue
            checked += 1
            env = next((k.value for k in call.keywords if k.arg == "env"), None)
            if not (
                isinstance(env, ast.Call)
                and isinstance(env.func, ast.Name)
                and env.func.id == "child_env"
            ):
                wrong.append(f"{where}: {'.'.join(name)} without env=child_env(...)")
    assert checked >= 5  # the check sees the calls it is about
    assert not wrong, "\n".join(wrong)
