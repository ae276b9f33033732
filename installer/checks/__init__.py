"""Prerequisite checks (``pendra doctor``, the TUI's prerequisites screen).

``run_checks()`` returns one :class:`CheckResult` per check (id, title, status ok|warn|fail,
required, detail, fix). Probes are injectable (:class:`Probes`) so every state is unit-tested.
"""

from installer.checks.probes import Probes
from installer.checks.result import CheckResult, Status
from installer.checks.runner import CHECKS, exit_code, run_checks

__all__ = ["CHECKS", "CheckResult", "Probes", "Status", "exit_code", "run_checks"]
