"""The workload key: the X25519 key private requests are sealed to, kept 0600 on this machine.

The worker creates it on first start at ``$PENDRA_HOME/workload.key`` (beside the worker key) as
an unencrypted PKCS#8 PEM file, so standard tools read it (``openssl pkey -in workload.key
-pubout``). The private half never leaves the machine; the public half is registered with the
control plane over the authenticated link, and its fingerprint — the hex SHA-256 of the raw public
key, also the envelope's ``kid`` — is what a client pins.

An unreadable, malformed or group-readable file stops the worker with a clear message and is never
overwritten: a replaced key would silently break every client that pinned the old one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
    load_pem_private_key,
)

from worker.atomic_files import fsync_dir, write_atomic
from worker.errors import PendraError
from worker.file_mode import shared_mode
from worker.private_inference.wire import b64encode, fingerprint

FILE_NAME = "workload.key"
MAX_FILE_BYTES = 4096


class WorkloadKeyProblem(PendraError):
    """The workload key file cannot be used; fixable locally, and never silently replaced."""

    code = "workload_key_invalid"
    exit_code = 4


@dataclass(frozen=True)
class WorkloadKey:
    """An X25519 key pair. ``repr`` shows the fingerprint only."""

    private_key: X25519PrivateKey = field(repr=False, compare=False)
    public_bytes: bytes
    created_at: float | None = None

    @classmethod
    def generate(cls) -> WorkloadKey:
        # An X25519 private key is 32 random bytes (clamped where it is used). Loading them as
        # PKCS#8 rather than calling X25519PrivateKey.generate() keeps cryptography's Python
        # OpenSSL backend (1.5 MB, resident for good) out of the worker.
        private = load_der_private_key(_X25519_PKCS8_PREFIX + os.urandom(32), password=None)
        assert isinstance(private, X25519PrivateKey)
        return cls(private, private.public_key().public_bytes_raw(), time.time())

    @classmethod
    def from_private(cls, private: X25519PrivateKey, created_at: float | None) -> WorkloadKey:
        return cls(private, private.public_key().public_bytes_raw(), created_at)

    @property
    def kid(self) -> str:
        """The fingerprint: hex SHA-256 of the raw public key (the envelope's ``kid``)."""
        return fingerprint(self.public_bytes)

    @property
    def public_b64(self) -> str:
        return b64encode(self.public_bytes)

    def raw_private(self) -> bytes:
        return self.private_key.private_bytes_raw()

    def pem(self) -> bytes:
        return self.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    def __repr__(self) -> str:
        return f"WorkloadKey(kid={self.kid!r})"

    __str__ = __repr__


_X25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b656e04220420")
"""PKCS#8 DER of an X25519 private key, up to its 32 key bytes (RFC 8410)."""


def key_path(home: Path) -> Path:
    return home / FILE_NAME


def _check_mode(path: Path) -> None:
    mode = shared_mode(path)
    if mode is not None:
        raise WorkloadKeyProblem(
            f"The workload key file {path} is readable by other users (mode {mode:o}); the "
            "worker refuses to use a private key others can read.",
            hint=f"chmod 600 {path}",
        )


def read_key(path: Path) -> WorkloadKey:
    """Load the key at ``path``; every failure is a :class:`WorkloadKeyProblem`."""
    try:
        _check_mode(path)
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        created = path.stat().st_mtime
    except FileNotFoundError:
        raise WorkloadKeyProblem(
            f"No workload key at {path}.", hint="start the worker once: it creates the key"
        ) from None
    except IsADirectoryError:
        raise WorkloadKeyProblem(f"{path} is a directory, not a workload key file.") from None
    except PermissionError:
        raise WorkloadKeyProblem(
            f"The workload key file {path} cannot be read by this user.",
            hint="run the worker as the user that owns the file",
        ) from None
    problem = WorkloadKeyProblem(
        f"{path} is not a workload key (an X25519 private key in PKCS#8 PEM form).",
        hint=f"restore it from a backup, or move it aside and start the worker to create a new "
        f"one (clients that pinned the old fingerprint must then pin the new one): "
        f"mv {path} {path}.bad",
    )
    if len(data) > MAX_FILE_BYTES:
        raise problem
    try:
        private = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise problem from None
    if not isinstance(private, X25519PrivateKey):
        raise problem
    return WorkloadKey.from_private(private, created)


def write_key(path: Path, key: WorkloadKey) -> None:
    """Write ``key`` atomically with mode 0600 (never a half-written or readable file)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, key.pem(), mode=0o600)


def load_or_create(path: Path) -> tuple[WorkloadKey, bool]:
    """The key at ``path``, creating it first when there is none; ``(key, created)``.

    Creation never replaces a file: the new key is written to a temporary file and hard-linked
    into place, which fails if another process created the key meanwhile — then that key is used.
    """
    if path.exists() or path.is_symlink():
        return read_key(path), False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = WorkloadKey.generate()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.pem())
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return read_key(path), False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)
    return read_key(path), True
