"""What every check receives: the probes, the resolved settings, and shared lazily-read facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from installer.checks.probes import GpuSummary, Probes
from worker.settings import Settings


@dataclass
class CheckContext:
    probes: Probes
    settings: Settings
    config_error: str | None = None  # why config.toml / the environment could not be used
    serving: bool = True  # checking for a worker that will serve (control plane required)
    _cache: dict[str, object] = field(default_factory=dict)

    @cached_property
    def gpus(self) -> list[GpuSummary]:
        return self.probes.gpus()

    @cached_property
    def docker_path(self) -> str | None:
        return self.probes.which("docker")
