"""Outbound reachability of the control plane.

The worker only ever dials out (HTTPS, then a WSS upgrade on the same host and port), so this is the
one network requirement. It is required for *serving*: without it the worker cannot receive a single
request. Setup (installing, models, the sandbox) works offline, so ``run_checks(serving=False)`` —
what the TUI uses before the worker is configured — reports the same failure as not blocking.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from installer.checks.context import CheckContext
from installer.checks.result import CheckResult, Status

TIMEOUT_S = 5.0
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


def check_control_plane(ctx: CheckContext) -> CheckResult:
    title = "Control plane reachable"
    api = ctx.settings.api_url.rstrip("/")
    host = urlsplit(api).hostname or api
    url = f"{api}/api/v1/catalogue"
    result = ctx.probes.http_get(url, TIMEOUT_S)
    proxies = [
        f"{name}={ctx.probes.environ[name]}" for name in PROXY_VARS if ctx.probes.environ.get(name)
    ]
    via = f" (via {', '.join(proxies)})" if proxies else ""
    if result.status is not None:
        if result.status >= 500:
            return CheckResult(
                "control_plane",
                title,
                Status.WARN,
                ctx.serving,
                f"{host} answered HTTP {result.status}{via}: reachable, but the service reports "
                "an error; the worker will keep retrying.",
                None,
            )
        return CheckResult(
            "control_plane",
            title,
            Status.OK,
            ctx.serving,
            f"{api} answered HTTP {result.status}{via}",
        )
    reason = {
        "dns": f"cannot resolve {host} (DNS)",
        "refused": f"{host} refused the connection",
        "timeout": f"no answer from {host} within {TIMEOUT_S:.0f} s",
        "tls": f"TLS to {host} failed: {result.message}",
    }.get(result.error or "", f"cannot reach {host}: {result.message}")
    fix = (
        "allow outbound HTTPS (443) to "
        f"{host}; behind a proxy set HTTPS_PROXY. To try Pendra offline, run `pendra sandbox` "
        "and set APP_SERVER_WS_URL=ws://127.0.0.1:8787"
    )
    if result.error == "tls":
        fix = "check the system clock and CA certificates, or a TLS-inspecting proxy"
    needed = "the worker cannot serve" if ctx.serving else "serving will need it later"
    return CheckResult(
        "control_plane", title, Status.FAIL, ctx.serving, f"{reason}{via}: {needed}.", fix
    )
