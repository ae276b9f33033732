"""A benchmark's result as a Markdown section (the convention of ``bench/run.py``).

Every row compares the Pendra path with a baseline measured in the same run; the ratio and
whether the goal is met are computed here, never typed in.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field

from bench.stats import ratio


@dataclass(frozen=True)
class Row:
    """One comparison. ``higher_is_better`` decides how the goal reads (≥ or ≤)."""

    label: str
    ours: float
    baseline: float | None
    unit: str
    goal: float | None = None  # a ratio goal (ours/baseline) or, without baseline, an absolute one
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline <= 0:
            return None
        return ratio(self.ours, self.baseline)

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        value = self.ratio if self.baseline is not None else self.ours
        if value is None:
            return None
        return value >= self.goal if self.higher_is_better else value <= self.goal

    def cells(self) -> list[str]:
        base = "—" if self.baseline is None else f"{_num(self.baseline)} {self.unit}"
        r = self.ratio
        if self.goal is None:
            goal = "—"
        else:
            sign = "≥" if self.higher_is_better else "≤"
            suffix = "×" if self.baseline is not None else f" {self.unit}"
            goal = f"{sign} {self.goal:g}{suffix}"
        met = {None: "—", True: "yes", False: "**no**"}[self.met]
        return [
            self.label,
            f"{_num(self.ours)} {self.unit}",
            base,
            "—" if r is None else f"{r:.2f}×",
            goal,
            met,
        ]


@dataclass
class Section:
    """The Markdown body of one bench's section."""

    title: str
    intro: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profile: str | None = None
    columns: tuple[str, str] = ("Pendra path", "baseline")

    def markdown(self) -> str:
        head = ["measure", *self.columns, "ratio", "goal", "met"]
        lines = [f"## {self.title}", "", self.intro, "", machine_line(), ""]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        lines.extend("| " + " | ".join(row.cells()) + " |" for row in self.rows)
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        if self.profile:
            lines += ["", "Profile (where the time goes):", "", "```", self.profile.strip(), "```"]
        return "\n".join(lines) + "\n"

    def publish(self) -> None:
        """Print the section for ``bench/run.py`` (stdout) and its ratios line (stderr)."""
        print(self.ratios_line(), file=sys.stderr)
        print(self.markdown())

    def ratios_line(self) -> str:
        """One line for stderr / the smoke test: every ratio of this run."""
        parts = []
        for row in self.rows:
            r = row.ratio
            value = f"{r:.2f}x" if r is not None else f"{_num(row.ours)} {row.unit}"
            parts.append(f"{row.label}={value}")
        return f"bench ratios | {self.title} | " + "; ".join(parts)


def _num(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3g}"


def machine_line() -> str:
    """Where the numbers come from: they mean little without it."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import llama_cpp

        llama = f", llama-cpp-python {llama_cpp.__version__}"
    except ImportError:  # pragma: no cover - a dependency of the project
        llama = ""
    try:
        load = " load average {:.1f} / {:.1f} / {:.1f} at the end of the run;".format(
            *os.getloadavg()
        )
    except OSError:  # pragma: no cover - not on every platform
        load = ""
    return (
        f"_Machine: {cpu}, {os.cpu_count()} logical CPUs, {platform.system()}, "
        f"Python {platform.python_version()}{llama};{load} loopback only._"
    )
