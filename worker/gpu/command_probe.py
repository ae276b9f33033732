"""The shared shape of probes that read a vendor tool found on PATH (nvidia-smi, amd-smi,
rocm-smi, ioreg): find the tool on ``open()``, refuse a tool that lists no GPU, run it with a
timeout, and turn every way it can fail into :class:`ProbeUnavailable` (a null reading, never a
crash)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from worker.child_env import child_env
from worker.gpu.errors import ProbeUnavailable
from worker.gpu.reading import GpuReading

TIMEOUT_S = 10.0


class CommandProbe:
    """Base class: subclasses set ``name`` and implement :meth:`_read`."""

    name = "command"
    empty_message = "lists no GPU"

    def __init__(self, executable: str, timeout_s: float = TIMEOUT_S) -> None:
        self._executable = executable
        self._timeout_s = timeout_s
        self._path: str | None = None

    def open(self) -> None:
        self._path = shutil.which(self._executable)
        if self._path is None:
            raise ProbeUnavailable(f"{self._executable} is not on PATH")
        self._prepare()
        if not self.read():
            raise ProbeUnavailable(f"{self.name} {self.empty_message}")

    def close(self) -> None:
        self._path = None

    def read(self) -> list[GpuReading]:
        if self._path is None:
            raise ProbeUnavailable(f"the {self.name} probe is not open")
        return self._read()

    def _prepare(self) -> None:
        """Run once when the tool is found, before the first read (e.g. static device names)."""

    def _read(self) -> list[GpuReading]:
        raise NotImplementedError

    def _run(self, args: Sequence[str], *, text: bool = True) -> str | bytes:
        """Run the tool; its stdout, or ProbeUnavailable with the first line of what it said."""
        assert self._path is not None
        try:
            result = subprocess.run(
                [self._path, *args],
                capture_output=True,
                text=text,
                timeout=self._timeout_s,
                check=False,
                stdin=subprocess.DEVNULL,
                env=child_env(),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProbeUnavailable(f"{self.name} failed: {exc}") from None
        if result.returncode != 0:
            said = result.stderr or result.stdout
            if isinstance(said, bytes):
                said = said.decode("utf-8", "replace")
            detail = said.strip().splitlines()
            raise ProbeUnavailable(
                f"{self.name} exited {result.returncode}: {detail[0] if detail else 'no output'}"
            )
        return result.stdout
