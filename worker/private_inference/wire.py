"""The private-inference wire format: names, shapes and checks both ends of the relay share.

The format is the one Pendra's official SDK speaks (``pendra`` on PyPI, ``_private_inference.py``
and ``_streaming.py``): a client seals the whole request body once under a fresh data key
(ChaCha20-Poly1305, the routing metadata as associated data) and seals that data key to each
workload key with HPKE (RFC 9180, base mode). The reply is sealed under a key exported from the
request's own HPKE context, so only a holder of the workload key can answer it.

Nothing in this module decrypts anything: the control plane uses it to recognise and route an
envelope it cannot open. The crypto lives in :mod:`worker.private_inference.envelope`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENVELOPE_KEY = "pendra_encrypted"
ENVELOPE_VERSION = 2
SUITE_INFO = b"pendra-pi-v1"
"""HPKE ``info`` of every request seal, and the first field of the request AAD."""
REPLY_EXPORT_CONTEXT = b"pendra-pi-v1:rdek"
"""HPKE exporter context the 32-byte reply key is derived under."""
REPLY_KEY_BYTES = 32
STREAM_TERMINATOR_KEY = "pendra_stream_terminator"
"""Inside the sealed body: the client asks for a sealed declaration first and a sealed ``[DONE]``
last, so a relay cannot cut a stream short without the client noticing."""
STREAM_DONE = b"[DONE]"
NO_WORKER_ERROR_CODE = "no_private_inference_worker"
"""``X-Pendra-Error-Code`` when no connected worker holds a key the request was sealed to."""
ERROR_CODE_HEADER = "X-Pendra-Error-Code"
PLACEMENT_HEADER = "X-Pendra-Placement"
"""A client that sends ``1`` wants the serving worker named in a private stream's trailer."""

TASK_TYPES: Mapping[str, str] = {
    "chat": "chat",
    "embeddings": "embeddings",
    "transcription": "transcription",
}
"""Link request kind → the ``task_type`` the client bound into the AAD. Images are not offered:
the SDK has no sealed image path."""

OUTER_FIELDS = frozenset({"model", "stream", ENVELOPE_KEY})
"""What a private request may carry in the clear; anything else would travel unsealed."""

_KID = re.compile(r"^[0-9a-f]{64}$")
MAX_RECIPIENTS = 16


class EnvelopeError(ValueError):
    """A ``pendra_encrypted`` value that is not a well-formed version-2 envelope."""


def fingerprint(public_key: bytes) -> str:
    """The key id (``kid``) of a raw 32-byte X25519 public key: hex SHA-256, what clients pin."""
    return hashlib.sha256(public_key).hexdigest()


def request_aad(model: str, stream: bool, task_type: str) -> bytes:
    """``pendra-pi-v1 \\0 model \\0 stream-bit \\0 task_type \\0``: binds the routing metadata the
    relay can see to the ciphertext, so changing any of it makes the request fail to open."""
    return b"\x00".join(
        [SUITE_INFO, model.encode("utf-8"), b"1" if stream else b"0", task_type.encode(), b""]
    )


def reply_nonce(seq: int) -> bytes:
    """The reply frame nonce: four zero bytes, then ``seq`` as 8 bytes big-endian."""
    return b"\x00\x00\x00\x00" + seq.to_bytes(8, "big")


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def b64decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise EnvelopeError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"{what} is not valid base64") from None


def is_sealed(body: Mapping[str, Any]) -> bool:
    """Whether a request body is a private-inference envelope (the relay must not read it)."""
    return ENVELOPE_KEY in body


@dataclass(frozen=True)
class Recipient:
    kid: str
    enc: str
    sealed_dek: str


@dataclass(frozen=True)
class Envelope:
    """The routing view of a request envelope: recipients and the affinity token, never content."""

    recipients: tuple[Recipient, ...]
    nonce: str
    ciphertext: str
    affinity_key: str | None = None
    binary_nonce: str | None = None
    binary_ciphertext: str | None = None

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(r.kid for r in self.recipients)


def parse_envelope(raw: Any) -> Envelope:
    """Check the shape of a ``pendra_encrypted`` value; raises :class:`EnvelopeError`."""
    if not isinstance(raw, Mapping):
        raise EnvelopeError(f"{ENVELOPE_KEY} must be an object")
    if raw.get("v") != ENVELOPE_VERSION:
        raise EnvelopeError(
            f"{ENVELOPE_KEY}.v must be {ENVELOPE_VERSION} (got {raw.get('v')!r}); upgrade the SDK"
        )
    recipients = raw.get("recipients")
    if not isinstance(recipients, list) or not recipients:
        raise EnvelopeError(f"{ENVELOPE_KEY}.recipients must be a non-empty list")
    if len(recipients) > MAX_RECIPIENTS:
        raise EnvelopeError(f"{ENVELOPE_KEY}.recipients has more than {MAX_RECIPIENTS} entries")
    parsed = []
    for index, entry in enumerate(recipients):
        if not isinstance(entry, Mapping):
            raise EnvelopeError(f"{ENVELOPE_KEY}.recipients[{index}] must be an object")
        kid, enc, sealed = entry.get("kid"), entry.get("enc"), entry.get("sealed_dek")
        if not isinstance(kid, str) or not _KID.match(kid):
            raise EnvelopeError(f"{ENVELOPE_KEY}.recipients[{index}].kid must be 64 hex digits")
        if not isinstance(enc, str) or not isinstance(sealed, str):
            raise EnvelopeError(
                f"{ENVELOPE_KEY}.recipients[{index}] needs enc and sealed_dek strings"
            )
        parsed.append(Recipient(kid, enc, sealed))
    for name in ("nonce", "ciphertext"):
        if not isinstance(raw.get(name), str):
            raise EnvelopeError(f"{ENVELOPE_KEY}.{name} must be a base64 string")
    affinity = raw.get("affinity_key")
    if affinity is not None and (not isinstance(affinity, str) or len(affinity) > 128):
        raise EnvelopeError(f"{ENVELOPE_KEY}.affinity_key must be a short string")
    binary_nonce, binary = raw.get("binary_nonce"), raw.get("binary_ciphertext")
    if (binary_nonce is None) != (binary is None):
        raise EnvelopeError("binary_nonce and binary_ciphertext come together")
    if binary is not None and not (isinstance(binary, str) and isinstance(binary_nonce, str)):
        raise EnvelopeError("binary_nonce and binary_ciphertext must be base64 strings")
    return Envelope(
        recipients=tuple(parsed),
        nonce=raw["nonce"],
        ciphertext=raw["ciphertext"],
        affinity_key=affinity,
        binary_nonce=binary_nonce,
        binary_ciphertext=binary,
    )
