"""`pendra … | head`: a reader that goes away stops the command quietly, as it does cat or git."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_a_closed_pipe_ends_the_command_without_a_traceback(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    command = subprocess.Popen(
        [sys.executable, "-m", "worker", "config", "list"],
        env={**clean_env, "PENDRA_HOME": str(tmp_path / "home")},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert command.stdout is not None and command.stderr is not None
    command.stdout.close()  # the reader is gone before the first line is written
    errors = command.stderr.read().decode()
    assert command.wait(timeout=60) == 141  # 128 + SIGPIPE, what a shell shows for cat here
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors
