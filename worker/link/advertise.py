"""What the worker tells the control plane about itself: hardware, backends, models.

Pure functions over the registry (plus one hardware probe), so the hello frame and the status pushes
describe the worker the same way the local status document does.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
from typing import Any

from worker.backends.registry import BackendRegistry
from worker.protocol import AdvertisedModel, BackendSummary, Hardware

log = logging.getLogger(__name__)

CAPABILITY_NAMES = ("chat", "embeddings", "images", "transcription")
# GPU reading fields that go over the wire; process lists stay on the machine.
_GPU_FIELDS = (
    "index",
    "name",
    "uuid",
    "utilization",
    "memory_used",
    "memory_total",
    "temperature",
    "power_w",
)


def advertised(
    registry: BackendRegistry,
) -> tuple[list[BackendSummary], list[AdvertisedModel], dict[str, bool]]:
    """Backends, the models they serve (with routing ids), and the union of request capabilities."""
    backends = [
        BackendSummary(
            name=b.kind,
            status=b.status.value,
            capabilities=b.capabilities.as_dict(),
        )
        for b in registry
    ]
    models = []
    for backend, model, advertised_id in registry.advertised_models():
        info = model.as_dict()
        info.pop("id", None)
        models.append(AdvertisedModel(**{**info, "id": advertised_id, "backend": backend.kind}))
    capabilities = {
        name: any(getattr(b.capabilities, name) for b in registry.ready())
        for name in CAPABILITY_NAMES
    }
    return backends, models, capabilities


def gpu_readings() -> list[dict[str, Any]]:
    """Current GPU readings from ``worker.gpu`` when that module is present; never raises."""
    try:
        from worker.gpu import read_gpus  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return []
    try:
        readings = read_gpus()
    except Exception:  # the GPU layer promises not to raise; a broken driver must not end the link
        log.debug("reading GPUs failed", exc_info=True)
        return []
    out = []
    for reading in readings:
        data = dataclasses.asdict(reading) if dataclasses.is_dataclass(reading) else vars(reading)
        out.append({k: data.get(k) for k in _GPU_FIELDS if k in data})
    return out


def physical_memory() -> int | None:
    """Total RAM in bytes: from ``sysconf`` where the OS has it (no extra module at idle), else
    psutil; None when neither can tell."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and size > 0:
            return int(pages * size)
    except (AttributeError, ValueError, OSError):  # Windows has no sysconf
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # psutil is a dependency, but an exotic platform must not stop the hello
        log.debug("psutil memory probe failed", exc_info=True)
        return None


def hardware(gpus: list[dict[str, Any]] | None = None) -> Hardware:
    memory_total = physical_memory()
    return Hardware(
        os=platform.system().lower(),
        arch=platform.machine().lower(),
        cpu_count=os.cpu_count(),
        memory_total=memory_total,
        gpus=[g for g in (gpus if gpus is not None else gpu_readings()) if "name" in g],
    )
