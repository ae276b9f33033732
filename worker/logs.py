"""Logging for the worker: readable lines to stderr and a rotating file, secrets redacted.

Prompts and completions are never logged by the worker's own code; this module additionally makes
sure a worker key (or anything shaped like one, or a bearer token) cannot reach a log line, whatever
logs it.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_FILE_NAME = "worker.log"
MAX_LOG_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 5

# Shapes that are secrets wherever they appear: worker keys, bearer tokens, api keys in URLs.
_SECRET_PATTERNS = (
    re.compile(r"pdk_[A-Za-z0-9_\-]{16,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/\-]+=*"),
    re.compile(r"(?i)((?:api[_-]?key|secret|password)[\"']?\s*[=:]\s*[\"']?)[^\s\"'&,}]+"),
    # "token" alone also names model tokens ("control-looking token: 1 '</s>'" from llama.cpp):
    # only a value long enough to be a credential is one.
    re.compile(r"(?i)(token[\"']?\s*[=:]\s*[\"']?)[^\s\"'&,}]{12,}"),
)
REDACTED = "[REDACTED]"


class RedactingFilter(logging.Filter):
    """Rewrites each record's message so no known secret or secret-shaped string survives."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def add_secret(self, secret: str) -> None:
        if secret and secret not in self._secrets:
            self._secrets.append(secret)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.lastindex else "") + REDACTED, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        redacted = self.redact(message)
        record.msg, record.args = redacted, None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


_filter = RedactingFilter()


def redaction_filter() -> RedactingFilter:
    """The process-wide filter; register a secret with ``redaction_filter().add_secret(...)``."""
    return _filter


def configure_logging(
    level: str = "info", *, log_dir: Path | None = None, stderr: bool = True
) -> None:
    """Set up the root logger once for a worker process."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(level.upper())
    formatter = logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S")
    if stderr:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(formatter)
        stream.addFilter(_filter)
        root.addHandler(stream)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = log_dir / LOG_FILE_NAME
        file_handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=MAX_LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
        file_handler.setFormatter(formatter)
        file_handler.addFilter(_filter)
        root.addHandler(file_handler)
        os.chmod(path, 0o600)
    for noisy in ("aiohttp.access", "httpx", "httpcore", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
