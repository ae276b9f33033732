"""Entry point of the ``pendra.ui`` plugin: ``pendra`` and ``pendra attach`` call :func:`run`."""

from __future__ import annotations


def run(attach: bool = False, setup: bool = False) -> int:
    """Open the app: the dashboard when ``attach`` (or a key is stored), else the setup flow;
    ``setup`` opens the setup flow whatever is configured (``pendra setup``), pre-filled.

    Returns the exit code. The worker keeps running after the app exits.
    """
    from worker.cli import report
    from worker.errors import PendraError
    from worker.settings import load_settings

    try:
        settings = load_settings()
    except PendraError as exc:
        report(exc)
        return exc.exit_code

    from pendra_tui.app import build_app
    from pendra_tui.services import real_services

    start = "setup" if setup else "dashboard" if attach else "auto"
    app = build_app(real_services(settings), start=start)
    result = app.run()
    return int(result or 0)
