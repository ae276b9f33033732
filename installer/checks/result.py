"""The outcome of one prerequisite check, shaped for both ``pendra doctor`` and the TUI."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any


class Status(str, Enum):
    """ok: fine. warn: works, with a limitation worth knowing. fail: this part will not work."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class CheckResult:
    """One check: ``fix`` is the exact command (or step) for this OS, None when nothing to do.

    ``required`` says whether a ``fail`` blocks the worker (``pendra doctor`` exits 1); a failed
    optional check only disables the part it names.
    """

    id: str
    title: str
    status: Status
    required: bool
    detail: str
    fix: str | None = None

    @property
    def blocking(self) -> bool:
        return self.required and self.status is Status.FAIL

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data
