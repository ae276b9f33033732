"""Run every prerequisite check, in parallel where they wait on the outside world.

The slow probes (``docker info`` up to 10 s, the control-plane request up to 5 s, nvidia-smi) run
on threads, so ``pendra doctor`` takes as long as the slowest one, not their sum. The result order
is fixed so the TUI and scripts see a stable list.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from installer.checks.context import CheckContext
from installer.checks.docker import (
    check_compose,
    check_container_toolkit,
    check_docker_daemon,
    check_docker_engine,
)
from installer.checks.gpu import check_gpu
from installer.checks.network import check_control_plane
from installer.checks.probes import Probes
from installer.checks.result import CheckResult, Status
from installer.checks.system import (
    check_config,
    check_disk,
    check_key,
    check_llama,
    check_os,
    check_python,
    check_service_manager,
)
from worker.errors import ConfigError
from worker.settings import Settings, default_home, default_models_dir, load_settings

Check = Callable[[CheckContext], CheckResult]

# The order results are reported in.
CHECKS: tuple[Check, ...] = (
    check_os,
    check_python,
    check_config,
    check_key,
    check_disk,
    check_llama,
    check_gpu,
    check_docker_engine,
    check_docker_daemon,
    check_compose,
    check_container_toolkit,
    check_service_manager,
    check_control_plane,
)

# Checks that wait on the same resource run in order on one thread.
_GROUPS: tuple[tuple[Check, ...], ...] = (
    (check_os, check_python, check_config, check_key, check_disk, check_service_manager),
    (check_gpu, check_llama),
    (check_docker_engine, check_docker_daemon, check_compose, check_container_toolkit),
    (check_control_plane,),
)


def _safe(check: Check, ctx: CheckContext) -> CheckResult:
    """A check that crashes reports itself as failed instead of taking the doctor down."""
    try:
        return check(ctx)
    except Exception as exc:  # a bug in one check must not hide the others
        name = check.__name__.removeprefix("check_")
        return CheckResult(
            name,
            name.replace("_", " ").capitalize(),
            Status.FAIL,
            False,
            f"the check itself failed: {type(exc).__name__}: {exc}",
            "please report this with the output of `pendra doctor --json`",
        )


def make_context(
    settings: Settings | None = None, probes: Probes | None = None, *, serving: bool = True
) -> CheckContext:
    probes = probes or Probes.real()
    error = None
    if settings is None:
        try:
            settings = load_settings(probes.environ)
        except ConfigError as exc:
            error = str(exc)
            home = default_home(probes.environ)
            settings = Settings(home=home, models_dir=default_models_dir(home))
    return CheckContext(probes=probes, settings=settings, config_error=error, serving=serving)


def run_checks(
    settings: Settings | None = None, probes: Probes | None = None, *, serving: bool = True
) -> list[CheckResult]:
    """All prerequisite checks for this host, in :data:`CHECKS` order.

    ``serving=True`` (``pendra doctor``) makes control-plane reachability required; the TUI's setup
    screen passes ``serving=False`` so an offline box can still be set up.
    """
    ctx = make_context(settings, probes, serving=serving)
    results: dict[Check, CheckResult] = {}

    def run_group(group: tuple[Check, ...]) -> None:
        for check in group:
            results[check] = _safe(check, ctx)

    with ThreadPoolExecutor(max_workers=len(_GROUPS), thread_name_prefix="pendra-check") as pool:
        for future in [pool.submit(run_group, group) for group in _GROUPS]:
            future.result()
    return [results[check] for check in CHECKS]


def exit_code(results: list[CheckResult]) -> int:
    """1 when a required check failed (``pendra doctor``'s contract), else 0."""
    return 1 if any(r.blocking for r in results) else 0
