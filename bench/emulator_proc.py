"""Starting :mod:`bench.stamp_emulator` as a child process and waiting for its URL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class EmulatorProcess:
    def __init__(self, timeout_s: float = 30.0) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "bench.stamp_emulator"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        deadline = time.monotonic() + timeout_s
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()  # blocks until the ready line (or EOF on a crash)
        if not line.startswith("ready ") or time.monotonic() > deadline:
            self.stop()
            err = self.popen.stderr.read() if self.popen.stderr else ""
            raise RuntimeError(f"the emulator did not start: {line!r}\n{err[-2000:]}")
        self.url = line.split()[1]
        self.pid = self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
