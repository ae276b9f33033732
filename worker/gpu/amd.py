"""AMD telemetry from ``amd-smi`` (ROCm ≥ 6) or the legacy ``rocm-smi``, both in JSON mode.

``amd-smi metric --json`` has changed shape across releases: a list of per-GPU objects, or the same
list under ``"gpu_data"``; values are ``{"value": v, "unit": "MB"}`` or bare numbers or ``"N/A"``.
``rocm-smi --json`` is a dict of ``cardN`` objects with human-readable keys and string values. The
parsers accept all of these and turn anything unreadable into ``None``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from worker.gpu.command_probe import TIMEOUT_S, CommandProbe
from worker.gpu.errors import ProbeUnavailable
from worker.gpu.reading import GpuReading, to_float, to_int

_UNIT_BYTES = {
    "b": 1,
    "kb": 1024,
    "kib": 1024,
    "mb": 1024**2,
    "mib": 1024**2,
    "gb": 1024**3,
    "gib": 1024**3,
}


def _value(node: Any) -> tuple[float | None, str | None]:
    if isinstance(node, Mapping):
        unit = node.get("unit")
        return to_float(node.get("value")), str(unit) if unit is not None else None
    return to_float(node), None


def _bytes(node: Any, default_unit: str = "MB") -> int | None:
    number, unit = _value(node)
    if number is None:
        return None
    factor = _UNIT_BYTES.get((unit or default_unit).strip().lower())
    return None if factor is None else int(number * factor)


def _first(table: Any, *keys: str) -> Any:
    if not isinstance(table, Mapping):
        return None
    for key in keys:
        number, _ = _value(table.get(key))
        if number is not None:
            return table.get(key)
    return None


def _gpu_list(data: Any) -> list[Mapping[str, Any]]:
    if isinstance(data, Mapping) and isinstance(data.get("gpu_data"), list):
        data = data["gpu_data"]
    if isinstance(data, Mapping):  # very old: {"gpu_0": {...}}
        data = [
            dict(value, gpu=to_int(re.sub(r"\D", "", key)))
            for key, value in data.items()
            if isinstance(value, Mapping)
        ]
    return [item for item in data if isinstance(item, Mapping)] if isinstance(data, list) else []


def parse_amd_smi_static(data: Any) -> dict[int, str]:
    """``amd-smi static --asic --json`` → market name by GPU index."""
    names: dict[int, str] = {}
    for position, item in enumerate(_gpu_list(data)):
        index = to_int(item.get("gpu"))
        asic = item.get("asic")
        name = asic.get("market_name") if isinstance(asic, Mapping) else None
        if isinstance(name, str) and name.strip() and name.strip() != "N/A":
            names[position if index is None else index] = name.strip()
    return names


def parse_amd_smi_metric(data: Any, names: Mapping[int, str] | None = None) -> list[GpuReading]:
    """``amd-smi metric --json`` → one reading per GPU."""
    readings = []
    for position, item in enumerate(_gpu_list(data)):
        index = to_int(item.get("gpu"))
        index = position if index is None else index
        usage, memory = item.get("usage"), item.get("mem_usage")
        temperature = _first(item.get("temperature"), "edge", "hotspot", "junction")
        power = _first(item.get("power"), "socket_power", "average_socket_power")
        readings.append(
            GpuReading(
                index=index,
                name=(names or {}).get(index, f"AMD GPU {index}"),
                utilization=_value(_first(usage, "gfx_activity"))[0],
                memory_used=_bytes(memory.get("used_vram"))
                if isinstance(memory, Mapping)
                else None,
                memory_total=(
                    _bytes(memory.get("total_vram")) if isinstance(memory, Mapping) else None
                ),
                temperature=_value(temperature)[0],
                power_w=_value(power)[0],
                source="amd-smi",
            )
        )
    return readings


def parse_rocm_smi(data: Any) -> list[GpuReading]:
    """``rocm-smi --showuse --showmeminfo vram --showtemp --showpower --showproductname --json``."""
    if not isinstance(data, Mapping):
        return []
    readings = []
    cards = sorted(
        (
            (to_int(re.sub(r"\D", "", key)), value)
            for key, value in data.items()
            if key.startswith("card") and isinstance(value, Mapping)
        ),
        key=lambda pair: -1 if pair[0] is None else pair[0],
    )
    for position, (index, card) in enumerate(cards):
        index = position if index is None else index
        temperature = next(
            (
                card[key]
                for key in card
                if key.startswith("Temperature") and to_float(card[key]) is not None
            ),
            None,
        )
        power = next(
            (
                card[key]
                for key in card
                if "Package Power" in key and to_float(card[key]) is not None
            ),
            None,
        )
        name = card.get("Card Series") or card.get("Card series") or card.get("Device Name")
        readings.append(
            GpuReading(
                index=index,
                name=str(name) if name and name != "N/A" else f"AMD GPU {index}",
                utilization=to_float(card.get("GPU use (%)")),
                memory_used=to_int(card.get("VRAM Total Used Memory (B)")),
                memory_total=to_int(card.get("VRAM Total Memory (B)")),
                temperature=to_float(temperature),
                power_w=to_float(power),
                source="rocm-smi",
            )
        )
    return readings


def parse_tool_json(text: str, tool: str) -> Any:
    """The JSON document a tool printed; some releases print warnings before it."""
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    try:
        return json.loads(text[min(starts) :]) if starts else None
    except json.JSONDecodeError:
        raise ProbeUnavailable(f"{tool} printed no JSON") from None


class AmdSmiProbe(CommandProbe):
    name = "amd-smi"

    def __init__(self, executable: str = "amd-smi", timeout_s: float = TIMEOUT_S) -> None:
        super().__init__(executable, timeout_s)
        self._names: dict[int, str] = {}

    def _prepare(self) -> None:
        try:
            static = parse_tool_json(str(self._run(["static", "--asic", "--json"])), self.name)
            self._names = parse_amd_smi_static(static)
        except ProbeUnavailable:
            self._names = {}  # names are a nicety; metrics decide whether the probe works

    def _read(self) -> list[GpuReading]:
        metric = parse_tool_json(str(self._run(["metric", "--json"])), self.name)
        return parse_amd_smi_metric(metric, self._names)


class RocmSmiProbe(CommandProbe):
    name = "rocm-smi"
    ARGS = (
        "--showuse",
        "--showmeminfo",
        "vram",
        "--showtemp",
        "--showpower",
        "--showproductname",
        "--json",
    )

    def __init__(self, executable: str = "rocm-smi", timeout_s: float = TIMEOUT_S) -> None:
        super().__init__(executable, timeout_s)

    def _read(self) -> list[GpuReading]:
        return parse_rocm_smi(parse_tool_json(str(self._run(self.ARGS)), self.name))
