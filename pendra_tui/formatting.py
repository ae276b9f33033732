"""Pure text formatting for the app: sizes, rates, durations, percentages and verdict labels.

Every function here is total (``None`` means "not available" and renders as ``"—"``), so widgets
never branch on missing telemetry themselves; the unit tests pin the exact strings.
"""

from __future__ import annotations

# Sizes, rates and durations look the same in the app as in the CLI: one implementation.
from worker.units import UNKNOWN as NA
from worker.units import format_bytes as format_bytes
from worker.units import format_duration as format_duration
from worker.units import format_rate as format_rate


def format_progress(done: int, total: int | None) -> str:
    """``7.9/19.8 GB`` — one unit when both share it (it must fit a 36-column panel)."""
    if not total:
        return f"{format_bytes(done)} / ?"
    done_text, total_text = format_bytes(done), format_bytes(total)
    done_amount, _, done_unit = done_text.partition(" ")
    if done_unit and total_text.endswith(f" {done_unit}"):
        return f"{done_amount}/{total_text}"
    return f"{done_text}/{total_text}"


def format_mib(value: int | None) -> str:
    """GPU memory in GiB/MiB, as nvidia-smi users read it."""
    if value is None or value < 0:
        return NA
    gib = value / 2**30
    if gib >= 1:
        return f"{gib:.1f} GiB"
    return f"{value / 2**20:.0f} MiB"


def format_percent(value: float | None) -> str:
    """A 0–100 value as ``42%``."""
    if value is None:
        return NA
    return f"{value:.0f}%"


def format_temperature(value: float | None) -> str:
    return NA if value is None else f"{value:.0f}°C"


def format_power(value: float | None) -> str:
    return NA if value is None else f"{value:.0f} W"


def format_context(tokens: int | None) -> str:
    """Context length as ``8k`` / ``256k`` / ``1M`` (how model cards write it)."""
    if tokens is None or tokens <= 0:
        return NA
    if tokens >= 1_048_576 and tokens % 1_048_576 == 0:
        return f"{tokens // 1_048_576}M"
    if tokens >= 1024:
        return f"{round(tokens / 1024)}k"
    return str(tokens)


def format_count(value: int | None) -> str:
    """Counters with thousands separators: ``12,345``."""
    return NA if value is None else f"{value:,}"


def format_tokens_per_s(value: float | None) -> str:
    """Generation rate, the unit is in the row label."""
    if value is None:
        return NA
    return f"{value:.1f}"


VERDICT_LABELS: dict[str, str] = {
    "gpu": "✓ fits GPU",
    "partial": "◐ GPU+CPU",
    "cpu": "○ CPU only",
    "no": "✗ too big",
}
"""The fit verdicts of ``worker.fit`` as a person reads them in the catalogue."""


def verdict_label(verdict: str | None) -> str:
    """Label for a fit verdict; an unknown or missing one says so instead of guessing."""
    if verdict is None:
        return "? unknown"
    return VERDICT_LABELS.get(verdict, f"? {verdict}")


CHECK_MARKS: dict[str, str] = {"ok": "✓", "warn": "⚠", "fail": "✗"}


def check_mark(status: str) -> str:
    return CHECK_MARKS.get(status, "?")


def progress_fraction(done: int | None, total: int | None) -> float | None:
    """Fraction 0..1 of a download, or ``None`` while the size is unknown."""
    if not total or total <= 0 or done is None:
        return None
    return max(0.0, min(1.0, done / total))


def install_eta(done: int, total: int | None, rate_bps: float | None) -> float | None:
    """Seconds left at the current rate; ``None`` when either is unknown."""
    if not total or not rate_bps or rate_bps <= 0:
        return None
    return max(0.0, (total - done) / rate_bps)
