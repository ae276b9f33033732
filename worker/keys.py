"""The worker private key: its text forms, loading it safely, and proving possession of it.

A worker key is an Ed25519 private key. Two text forms are accepted:

* the Pendra console's form: standard base64 of the raw private key, either the 32-byte seed or
  Go's 64-byte ``seed ‖ public key`` (the public half must match the seed); base64url and missing
  padding are accepted too, since keys get pasted through chat tools and editors;
* this worker's earlier form: ``pdk_`` followed by the base64url (no padding) encoding of the
  32-byte seed and a 4-byte checksum, 52 characters in all, whose checksum catches a typo.

A key is kept in the form it was given, so a key stored again reads the same.

The key itself never leaves the machine: the worker signs a challenge transcript
(:func:`worker.protocol.auth_transcript`) and the control plane checks the signature against the
public key it registered for the worker. Files that hold the key are 0600; a key file readable by
group or others is refused with the command that fixes it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from worker.atomic_files import fsync_dir, write_atomic
from worker.errors import PendraError
from worker.file_mode import shared_mode

if TYPE_CHECKING:
    from worker.settings import Settings

KEY_PREFIX = "pdk_"
_SEED_BYTES = 32
_PUBLIC_BYTES = 32
_CHECKSUM_BYTES = 4
_KEY_BODY_CHARS = 48  # base64url of 36 bytes, no padding
KEY_ENV = "GPU_WORKER_PRIVATE_KEY"
LEGACY_KEY_ENV = "PENDRA_WORKER_KEY"
_CHECKSUM_DOMAIN = b"pendra-worker-key/v1"
_BASE64_TEXT = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")
EXPECTED_FORMS = (
    "a worker key is the base64 Ed25519 private key the Pendra console shows (the 32-byte seed, "
    "44 characters, or the 64-byte seed and public key, 88 characters), or a pdk_ key (52 "
    "characters)"
)
GET_KEY_HINT = (
    "create a worker key in the Pendra console, then store it with `pendra key set` "
    "(paste it on stdin) or `pendra key set --file FILE`"
)


class KeyProblem(PendraError):
    """The worker key is missing, malformed or stored unsafely: fixable locally, never retried."""

    code = "worker_key_invalid"
    exit_code = 4

    def one_line(self) -> str:
        """Message and hint as one sentence pair, for a status line."""
        if not self.hint:
            return self.message
        hint = self.hint[0].upper() + self.hint[1:]
        return f"{self.message} {hint}{'' if hint.endswith('.') else '.'}"


@dataclass(frozen=True)
class WorkerKey:
    """A parsed worker key. ``repr`` never shows the secret; equal keys have equal seeds."""

    seed: bytes = field(repr=False)
    given: str | None = field(default=None, repr=False, compare=False)
    """The text the key was read from (whitespace removed), kept so it is stored the same way."""

    @property
    def text(self) -> str:
        """The key's text form: as it was given, else the ``pdk_`` form."""
        return self.given or encode_key(self.seed)

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def public_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def public_key(self) -> str:
        """The public key as base64url (no padding): what the control plane registers."""
        return _b64(self.public_bytes)

    @property
    def worker_id(self) -> str:
        """The key's fingerprint (``wk_…``); the worker's own id is ``worker_id`` in settings."""
        return worker_id_for(self.public_key)

    key_id = worker_id

    def secret_forms(self) -> list[str]:
        """Every text form of this key that could show up somewhere: all of them are redacted."""
        both = self.seed + self.public_bytes
        forms = {self.text, encode_key(self.seed)}
        for raw in (self.seed, both):
            forms.add(base64.b64encode(raw).decode("ascii"))
            forms.add(base64.urlsafe_b64encode(raw).decode("ascii"))
            forms.add(_b64(raw))
            forms.add(base64.b64encode(raw).decode("ascii").rstrip("="))
        return sorted(forms, key=len, reverse=True)  # longest first: no partial redactions

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


def encode_console_key(seed: bytes) -> str:
    """The console's form: standard base64 of the 64-byte ``seed ‖ public key`` (Go's layout)."""
    public = (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return base64.b64encode(seed + public).decode("ascii")


def generate_key(*, console_form: bool = False) -> WorkerKey:
    """A new random key; ``console_form`` gives it the console's text form instead of ``pdk_``."""
    seed = os.urandom(_SEED_BYTES)
    return WorkerKey(seed, encode_console_key(seed) if console_form else None)


def worker_id_for(public_key: str) -> str:
    """A short stable id derived from the public key (what logs and dashboards show)."""
    return "wk_" + hashlib.sha256(public_key.encode("ascii")).hexdigest()[:16]


def validate_key_format(text: str) -> None:
    """Raise :class:`KeyProblem` saying what is wrong with ``text``; None when it is valid."""
    parse_key(text)


def parse_key(text: str) -> WorkerKey:
    """Parse the text form of a worker key; errors never include the key itself."""
    candidate = "".join(text.split())  # a pasted key may arrive wrapped or with a newline
    if not candidate:
        raise KeyProblem("The worker key is empty.", hint=GET_KEY_HINT)
    if candidate.startswith(KEY_PREFIX):
        return _parse_pdk(candidate)
    return _parse_console(candidate)


def _parse_console(candidate: str) -> WorkerKey:
    """The console's base64 form: a 32-byte seed, or a 64-byte seed ‖ public key."""
    if not _BASE64_TEXT.match(candidate):
        raise KeyProblem(
            "That is not a worker key: it contains characters base64 does not use.",
            hint=f"{EXPECTED_FORMS}; copy it again from the console",
        )
    try:
        unpadded = candidate.rstrip("=")
        padded = unpadded + "=" * (-len(unpadded) % 4)
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise KeyProblem(
            f"That is not a worker key: {len(candidate)} characters do not decode as base64.",
            hint=f"{EXPECTED_FORMS}; it was probably cut off",
        ) from None
    if len(raw) == _SEED_BYTES:
        return WorkerKey(raw, candidate)
    if len(raw) == _SEED_BYTES + _PUBLIC_BYTES:
        seed, public = raw[:_SEED_BYTES], raw[_SEED_BYTES:]
        key = WorkerKey(seed, candidate)
        if key.public_bytes != public:
            raise KeyProblem(
                "The worker key is damaged: its public half does not belong to its private half.",
                hint="copy it again from the console rather than editing it",
            )
        return key
    raise KeyProblem(
        f"That is not a worker key: it decodes to {len(raw)} bytes.",
        hint=f"{EXPECTED_FORMS}; it was probably cut off or pasted twice",
    )


def _parse_pdk(candidate: str) -> WorkerKey:
    body = candidate[len(KEY_PREFIX) :]
    if len(body) != _KEY_BODY_CHARS:
        raise KeyProblem(
            f"The worker key has {len(candidate)} characters; a pdk_ worker key has "
            f"{len(KEY_PREFIX) + _KEY_BODY_CHARS}.",
            hint="it was probably cut off or pasted twice; copy it again",
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
            hint="copy it again; avoid editors that change dashes or quotes",
        )
    seed, check = raw[:_SEED_BYTES], raw[_SEED_BYTES:]
    if _checksum(seed) != check:
        raise KeyProblem(
            "The worker key's checksum does not match: it has a typo.",
            hint="copy it again rather than typing it",
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


def check_private_file(path: Path, what: str = "worker key file") -> None:
    """Refuse a file holding the key that group or others can read or write (POSIX only)."""
    mode = shared_mode(path)
    if mode is not None:
        raise KeyProblem(
            f"The {what} {path} is readable by other users (mode {mode:o}); the worker "
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


def load_worker_key(key_file: Path, environ: Mapping[str, str] | None = None) -> WorkerKey:
    """A key from ``GPU_WORKER_PRIVATE_KEY`` / ``PENDRA_WORKER_KEY``, else from ``key_file``.

    The worker itself uses :func:`load_configured_key`, which also knows config.yaml.
    """
    env = os.environ if environ is None else environ
    for name in (KEY_ENV, LEGACY_KEY_ENV):
        from_env = env.get(name, "").strip()
        if from_env:
            try:
                return parse_key(from_env)
            except KeyProblem as exc:
                raise KeyProblem(f"{name}: {exc.message}", hint=exc.hint) from None
    return read_key_file(key_file)


def load_configured_key(settings: Settings) -> WorkerKey:
    """The worker's key from wherever the settings put it (:meth:`Settings.key_location`).

    An inline key read from config.yaml is refused, like a key file, while that file is readable
    by other users. No key at all is an error that says how to store one.
    """
    location = settings.key_location()
    if location.kind == "file":
        if location.path is None or not location.path.exists():
            if location.from_environment or settings.key_file is not None:
                raise KeyProblem(
                    f"No worker key at {location.path} ({settings.sources.get('key_file')}).",
                    hint=GET_KEY_HINT,
                )
            raise KeyProblem(
                f"No worker key: neither GPU_WORKER_PRIVATE_KEY nor gpu_worker_private_key in "
                f"{settings.config_file} is set, and there is no key file at {location.path}.",
                hint=GET_KEY_HINT,
            )
        return read_key_file(location.path)
    if location.path is not None:
        with contextlib.suppress(FileNotFoundError):
            check_private_file(location.path, "settings file")
    assert settings.private_key is not None
    try:
        return parse_key(settings.private_key)
    except KeyProblem as exc:  # the loader checked it; a race with an editor ends up here
        raise KeyProblem(f"{location.source}: {exc.message}", hint=exc.hint) from None


def write_key_file(path: Path, key: WorkerKey) -> None:
    """Write ``key`` to ``path`` atomically with mode 0600 (never a half-written or open file)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, (key.text + "\n").encode("utf-8"), mode=0o600)


@dataclass(frozen=True)
class StoredKey:
    """What storing a key did: whether it changed, and where a replaced key went."""

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


def store_key_file(path: Path, key: WorkerKey, *, now: datetime | None = None) -> StoredKey:
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


def store_key(
    settings: Settings, key: WorkerKey, *, now: datetime | None = None
) -> tuple[StoredKey, list[str]]:
    """Store ``key`` where this worker reads its key; what happened, and notes for the user.

    That is the key file when one is in use (``key_file`` / ``PENDRA_WORKER_KEY_FILE``, or an
    existing ``worker.key``), else ``gpu_worker_private_key`` in config.yaml (0600). A different
    key already there is backed up first (``worker.key.<UTC time>.bak``, 0600), never lost.
    """
    from worker.config_file import read_config, update_config

    location = settings.key_location()
    notes: list[str] = []
    if location.kind == "inline" and location.from_environment:
        notes.append(
            f"{location.source} is set in this environment and is what the worker uses while it "
            "is set; unset it to use the stored key"
        )
    keeps_file = location.kind == "file" and (
        settings.sources.get("key_file", "default") != "default"
        or (location.path is not None and location.path.exists())
    )
    if keeps_file and location.path is not None:
        stored = store_key_file(location.path, key, now=now)
    else:
        path = settings.config_file
        old = read_config(path).get("gpu_worker_private_key")
        try:
            previous: WorkerKey | None = parse_key(old) if isinstance(old, str) else None
        except KeyProblem:
            previous = None
        backup = None
        if old and (previous is None or previous.seed != key.seed):
            text = old if isinstance(old, str) else str(old)
            backup = _write_backup(
                settings.default_key_file,
                (text + "\n").encode("utf-8"),
                now or datetime.now(timezone.utc),
            )
        notes.extend(update_config(path, {"gpu_worker_private_key": key.text}))
        stored = StoredKey(
            path,
            changed=previous is None or previous.seed != key.seed,
            backup=backup,
            previous_worker_id=previous.key_id if previous is not None and backup else None,
        )
        if settings.default_key_file.exists() and settings.key_file is None:
            notes.append(
                f"{settings.default_key_file} is no longer read (the key in config.yaml wins); "
                "remove it when you no longer need it"
            )
    return stored, notes


def backup_note(stored: StoredKey) -> str | None:
    """What a person should know about the key a store replaced (None when none was)."""
    if stored.backup is None:
        return None
    what = (
        f"The previous key ({stored.previous_worker_id})"
        if stored.previous_worker_id
        else "What was stored there (not a valid key)"
    )
    return f"{what} is saved in {stored.backup} (mode 0600); delete it once you no longer need it."
