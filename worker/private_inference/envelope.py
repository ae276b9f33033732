"""Opening a sealed request and sealing its reply (the worker's half of the SDK's wire format).

HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256) + HKDF-SHA256 + ChaCha20-Poly1305, comes
from ``pyhpke``; the data-key and reply AEAD is ``cryptography``'s ChaCha20-Poly1305. The worker
opens the recipient entry addressed to its own key id, recovers the request's data key, decrypts
the body (and the audio of a transcription) with the routing metadata as associated data, and
exports the reply key from the same HPKE context. Every reply frame is sealed under that key with
a nonce counting up from zero, which is what the client checks to refuse reordered, replayed or
forged frames.

Errors here say what failed and never carry any plaintext.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from worker.errors import PendraError
from worker.private_inference.wire import (
    ENVELOPE_KEY,
    ENVELOPE_VERSION,
    REPLY_EXPORT_CONTEXT,
    REPLY_KEY_BYTES,
    SUITE_INFO,
    Envelope,
    EnvelopeError,
    b64decode,
    b64encode,
    reply_nonce,
    request_aad,
)
from worker.private_inference.workload_key import WorkloadKey


@functools.cache
def hpke_suite() -> Any:
    """The HPKE suite, made on the first sealed request: an idle worker does not load pyhpke."""
    from pyhpke import AEADId, CipherSuite, KDFId, KEMId

    return CipherSuite.new(
        KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305
    )


_RECIPIENT_KEYS: weakref.WeakKeyDictionary[WorkloadKey, Any] = weakref.WeakKeyDictionary()
"""Each workload key in ``pyhpke``'s form, made once per key (not per request) and forgotten with
the key itself when a rotation drops it."""
_DEK_BYTES = 32
_NONCE_BYTES = 12
_ENC_BYTES = 32


class SealedRequestRefused(PendraError):
    """A private request this worker cannot open: malformed, tampered with, or not for its key."""

    http_status = 400
    code = "private_request_unreadable"


@dataclass(frozen=True)
class OpenedRequest:
    """A decrypted request; lives only in memory for as long as the request runs."""

    kid: str
    body: bytes
    binary: bytes | None
    sealer: ReplySealer


class ReplySealer:
    """Seals the frames of one reply: ``{"v": 2, "kid", "seq", "ciphertext"}``, ``seq`` from 0."""

    def __init__(self, kid: str, reply_key: bytes) -> None:
        self.kid = kid
        self._aead = ChaCha20Poly1305(reply_key)
        self._seq = 0

    @property
    def frames_sealed(self) -> int:
        return self._seq

    def _next(self, plaintext: bytes) -> tuple[int, str]:
        seq = self._seq
        self._seq += 1
        return seq, b64encode(self._aead.encrypt(reply_nonce(seq), plaintext, None))

    def seal(self, plaintext: bytes) -> dict[str, object]:
        """The next sealed frame as the ``pendra_encrypted`` object."""
        seq, ciphertext = self._next(plaintext)
        return {"v": ENVELOPE_VERSION, "kid": self.kid, "seq": seq, "ciphertext": ciphertext}

    def seal_json(self, plaintext: bytes) -> str:
        """The next sealed frame as the JSON text ``{"pendra_encrypted": {...}}``.

        The per-chunk path of a stream, so the text is put together directly: the kid is hex and
        the ciphertext base64, neither needs escaping.
        """
        seq, ciphertext = self._next(plaintext)
        return (
            f'{{"{ENVELOPE_KEY}":{{"v":{ENVELOPE_VERSION},"kid":"{self.kid}","seq":{seq},'
            f'"ciphertext":"{ciphertext}"}}}}'
        )


def _recipient_key(key: WorkloadKey) -> Any:
    found = _RECIPIENT_KEYS.get(key)
    if found is None:
        found = _RECIPIENT_KEYS[key] = hpke_suite().kem.deserialize_private_key(key.raw_private())
    return found


def open_request(
    envelope: Envelope, key: WorkloadKey, *, model: str, stream: bool, task_type: str
) -> OpenedRequest:
    """Open ``envelope`` with ``key`` (whose kid must be among its recipients)."""
    recipient = next((r for r in envelope.recipients if r.kid == key.kid), None)
    if recipient is None:
        raise SealedRequestRefused("The request was not sealed to this worker's workload key.")
    try:
        enc = b64decode(recipient.enc, "enc")
        sealed_dek = b64decode(recipient.sealed_dek, "sealed_dek")
        nonce = b64decode(envelope.nonce, "nonce")
        ciphertext = b64decode(envelope.ciphertext, "ciphertext")
    except EnvelopeError as exc:
        raise SealedRequestRefused(f"The private request is malformed: {exc}.") from None
    if len(enc) != _ENC_BYTES or len(nonce) != _NONCE_BYTES:
        raise SealedRequestRefused("The private request is malformed: wrong enc or nonce length.")
    from pyhpke import PyHPKEError

    try:
        context = hpke_suite().create_recipient_context(enc, _recipient_key(key), info=SUITE_INFO)
        dek = context.open(sealed_dek, aad=b"")
    except (PyHPKEError, ValueError, TypeError):
        raise SealedRequestRefused(
            "The request's data key does not open with this worker's workload key: it was "
            "altered in transit or sealed to a different key."
        ) from None
    if len(dek) != _DEK_BYTES:
        raise SealedRequestRefused("The private request is malformed: wrong data key length.")
    reply_key = context.export(REPLY_EXPORT_CONTEXT, REPLY_KEY_BYTES)
    aead = ChaCha20Poly1305(dek)
    aad = request_aad(model, stream, task_type)
    try:
        body = aead.decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise SealedRequestRefused(
            "The private request does not decrypt: its body, model, stream flag or endpoint was "
            "altered in transit."
        ) from None
    binary = None
    if envelope.binary_ciphertext is not None and envelope.binary_nonce is not None:
        try:
            binary_nonce = b64decode(envelope.binary_nonce, "binary_nonce")
            binary_ct = b64decode(envelope.binary_ciphertext, "binary_ciphertext")
            if len(binary_nonce) != _NONCE_BYTES:
                raise EnvelopeError("binary_nonce has the wrong length")
            binary = aead.decrypt(binary_nonce, binary_ct, aad)
        except EnvelopeError as exc:
            raise SealedRequestRefused(f"The private request is malformed: {exc}.") from None
        except InvalidTag:
            raise SealedRequestRefused(
                "The private request's audio does not decrypt: it was altered in transit."
            ) from None
    return OpenedRequest(key.kid, body, binary, ReplySealer(key.kid, reply_key))
