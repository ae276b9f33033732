"""TLS for ``wss://``: verification always on, system trust store, plus an optional private CA."""

from __future__ import annotations

import ssl
from pathlib import Path

from worker.errors import ConfigError


def client_ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client context; ``ca_file`` (``PENDRA_CA_FILE``) adds a private CA to trust."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"Cannot use the CA file {ca_file}: {exc}",
                hint="point PENDRA_CA_FILE (or link.ca_file) at a PEM file of CA certificates",
            ) from None
    return context
