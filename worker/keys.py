"""The worker private key: its text format, loading it safely, and proving possession of it.

A worker key is an Ed25519 private key. Its text form is ``pdk_`` followed by the base64url (no
padding) encoding of the 32-byte seed and a 4-byte checksum, 48 characters in all — short enough to
copy and paste, and the checksum catches a typo before any network call is made.

The key itself never leaves the machine: the worker signs a challenge transcript
(:func:`worker.protocol.auth_transcript`) and the control plane checks the signature against the
public key it registered for the worker. Files that hold the key are 0600; a key file readable by
group or others is refused with the command that fixes it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from worker.atomic_files import fsync_dir, write_atomic
from worker.errors import PendraError

KEY_PREFIX = "pdk_"
_SEED_BYTES = 32
_CHECKSUM_BYTES = 4
_KEY_BODY_CHARS = 48  # base64url of 36 bytes, no padding
KEY_ENV = "PENDRA_WORKER_KEY"
_CHECKSUM_DOMAIN = b"pendra-worker-key/v1"
GET_KEY_HINT = (
    "create a worker key in the Pendra dashboard, then store it with `pendra key set` "
    "(paste it on stdin) or `pendra key set --file FILE`"
)


class KeyProblem(PendraError):
    """The worker key is missing, malformed or stored unsafely: fixable locally, never retried."""

    code = "worker_key_invalid"
    exit_code = 4


@dataclass(frozen=True)
class WorkerKey:
    """A parsed worker key. ``repr`` never shows the secret."""

    seed: bytes

    @property
    def text(self) -> str:
        return encode_key(self.seed)

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def public_key(self) -> str:
        """The public key as base64url (no padding): what the control plane registers."""
        raw = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return _b64(raw)

    @property
    def worker_id(self) -> str:
        return worker_id_for(self.public_key)

    def sign(self, message: bytes) -> str:
        """Sign ``message``; the signature as base64url."""
        return _b64(self.private_key.sign(message))

    def __repr__(self) -> str:
        return f"WorkerKey(public_key={self.public_key!r})"

    __str__ = __repr__


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _checksum(seed: bytes) -> bytes:
    return hashlib.sha256(_CHECKSUM_DOMAIN + seed).digest()[:_CHECKSUM_BYTES]


def encode_key(seed: bytes) -> str:
    if len(seed) != _SEED_BYTES:
        raise ValueError("a worker key seed is 32 bytes")
    return KEY_PREFIX + _b64(seed + _checksum(seed))


def generate_key() -> WorkerKey:
    return WorkerKey(os.urandom(_SEED_BYTES))


def worker_id_for(public_key: str) -> str:
    """A short stable id derived from the public key (what logs and dashboards show)."""
    return "wk_" + hashlib.sha256(public_key.encode("ascii")).hexdigest()[:16]


def validate_key_format(text: str) -> None:
    """Raise :class:`KeyProblem` saying what is wrong with ``text``; None when it is valid."""
    parse_key(text)


def parse_key(text: str) -> WorkerKey:
    """Parse the text form of a worker key; errors never include the key itself."""
    candidate = text.strip()
    if not candidate:
        raise KeyProblem("The worker key is empty.", hint=GET_KEY_HINT)
    if not candidate.startswith(KEY_PREFIX):
        raise KeyProblem(
            f"That is not a Pendra worker key: worker keys start with {KEY_PREFIX!r}.",
            hint="copy the whole key from the Pendra dashboard, including the prefix",
        )
    body = candidate[len(KEY_PREFIX) :]
    if len(body) != _KEY_BODY_CHARS:
        raise KeyProblem(
            f"The worker key has {len(candidate)} characters; a worker key has "
            f"{len(KEY_PREFIX) + _KEY_BODY_CHARS}.",
            hint="it was probably cut off or pasted twice; copy it again from the dashboard",
        )
    try:
        raw = _unb64(body)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _SEED_BYTES + _CHECKSUM_BYTES or any(
        c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in body
    ):
        raise KeyProblem(
            "The worker key contains characters a worker key cannot have.",
            hint="copy it again from the dashboard; avoid editors that change dashes or quotes",
        )
    seed, check = raw[:_SEED_BYTES], raw[_SEED_BYTES:]
    if _checksum(seed) != check:
        raise KeyProblem(
            "The worker key's checksum does not match: it has a typo.",
            hint="copy it again from the dashboard rather than typing it",
        )
    return WorkerKey(seed)


def verify_signature(public_key: str, message: bytes, signature: str) -> bool:
    """True when ``signature`` (base64url) is ``public_key``'s signature of ``message``."""
    try:
        key = Ed25519PublicKey.from_public_bytes(_unb64(public_key))
        key.verify(_unb64(signature), message)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


# -- files ----------------------------------------------------------------------------------------


def check_private_file(path: Path) -> None:
    """Refuse a key file that group or others can read or write (POSIX only)."""
    if sys.platform.startswith("win"):
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyProblem(
            f"The worker key file {path} is readable by other users (mode {mode:o}); the worker "
            "refuses to use a key others can read.",
            hint=f"chmod 600 {path}",
        )


def read_key_file(path: Path) -> WorkerKey:
    """Load a key file after checking its mode; every failure is a :class:`KeyProblem`."""
    try:
        check_private_file(path)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyProblem(f"No worker key at {path}.", hint=GET_KEY_HINT) from None
    except IsADirectoryError:
        raise KeyProblem(f"{path} is a directory, not a worker key file.") from None
    except PermissionError:
        raise KeyProblem(
            f"The worker key file {path} cannot be read by this user.",
            hint="run the worker as the user that owns the file",
        ) from None
    except UnicodeDecodeError:
        raise KeyProblem(f"{path} is not a worker key file.", hint=GET_KEY_HINT) from None
    try:
        return parse_key(text)
    except KeyProblem as exc:
        raise KeyProblem(f"{path}: {exc.message}", hint=exc.hint) from None


def load_worker_key(key_file: Path, environ: dict[str, str] | None = None) -> WorkerKey:
    """The worker's key: ``PENDRA_WORKER_KEY`` (containers only) or the key file."""
    env = os.environ if environ is None else environ
    from_env = env.get(KEY_ENV, "").strip()
    if from_env:
        try:
            return parse_key(from_env)
        except KeyProblem as exc:
            raise KeyProblem(f"{KEY_ENV}: {exc.message}", hint=exc.hint) from None
    return read_key_file(key_file)


def write_key_file(path: Path, key: WorkerKey) -> None:
    """Write ``key`` to ``path`` atomically with mode 0600 (never a half-written or open file)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, (key.text + "\n").encode("utf-8"), mode=0o600)


@dataclass(frozen=True)
class StoredKey:
    """What :func:`store_key` did: whether the file changed, and where a replaced key went."""

    path: Path
    changed: bool
    backup: Path | None = None
    previous_worker_id: str | None = None


MAX_KEY_FILE_BYTES = 64 * 1024


def _backup_path(path: Path, now: datetime) -> Path:
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f"{path.name}.{stamp}.bak")
    number = 1
    while candidate.exists() or candidate.is_symlink():
        number += 1
        candidate = path.with_name(f"{path.name}.{stamp}-{number}.bak")
    return candidate


def _write_backup(path: Path, data: bytes, now: datetime) -> Path:
    """Copy ``data`` to a new 0600 file beside ``path``; never overwrites anything."""
    while True:
        backup = _backup_path(path, now)
        try:
            fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue  # taken between the check and the open: pick the next name
        break
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(path.parent)
    return backup


def store_key(path: Path, key: WorkerKey, *, now: datetime | None = None) -> StoredKey:
    """Store ``key`` at ``path`` (0600). Whatever else is there is backed up first, never lost.

    The same key again rewrites the file (which also tightens a loose mode) and reports no change;
    a different key, or content that is not a key, is copied to ``<name>.<UTC time>.bak`` (0600)
    before the new key replaces it.
    """
    try:
        with path.open("rb") as handle:
            old = handle.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        old = None
    except IsADirectoryError:
        raise KeyProblem(
            f"{path} is a directory, not a worker key file.",
            hint="move it away, then store the key again",
        ) from None
    except OSError as exc:
        raise KeyProblem(f"cannot read the stored worker key {path}: {exc.strerror}") from None
    if old is None:
        write_key_file(path, key)
        return StoredKey(path, changed=True)
    try:
        previous: WorkerKey | None = parse_key(old.decode("utf-8"))
    except (KeyProblem, UnicodeDecodeError):
        previous = None
    if previous is not None and previous.seed == key.seed:
        write_key_file(path, key)
        return StoredKey(path, changed=False)
    backup = _write_backup(path, old, now or datetime.now(timezone.utc))
    write_key_file(path, key)
    return StoredKey(
        path,
        changed=True,
        backup=backup,
        previous_worker_id=previous.worker_id if previous is not None else None,
    )
