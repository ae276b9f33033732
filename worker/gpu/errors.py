"""Why a telemetry source cannot be used; internal to the GPU package, never shown as a crash."""

from __future__ import annotations


class ProbeUnavailable(Exception):
    """This source does not work on this machine (no library, no tool, no GPU, tool failed)."""
