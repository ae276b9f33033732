"""The worker's half of the private-inference wire format against the official SDK's half.

The client side is the real ``pendra`` SDK (``pendra._private_inference``, ``_hpke``,
``_streaming``): it seals requests the worker must open and opens replies the worker seals. The
HPKE layer of both (the SDK's own ``_hpke.py`` and ``pyhpke`` on the worker) is checked against the
RFC 9180 known-answer vector for this suite.
"""

from __future__ import annotations

import base64
import json

import pytest
from pendra import _hpke as sdk_hpke
from pendra import _private_inference as sdk_pi
from pendra._streaming import PrivateStreamGuard

from worker.private_inference.envelope import (
    SealedRequestRefused,
    hpke_suite,
    open_request,
)
from worker.private_inference.wire import (
    REPLY_EXPORT_CONTEXT,
    SUITE_INFO,
    EnvelopeError,
    fingerprint,
    parse_envelope,
    request_aad,
)
from worker.private_inference.workload_key import WorkloadKey

# RFC 9180 Appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, base mode.
RFC_INFO = bytes.fromhex("4f6465206f6e2061204772656369616e2055726e")
RFC_SK_E = bytes.fromhex("ff29ed7dfc1c4ecb4a9c7b11f59aef189d431e79e8026c85dc9e20ba5587c51d")
RFC_PK_R = bytes.fromhex("c4e460cb28e2ab8d6d0b308fc9a04140ef9f1394111c794215dbd9431e859d6a")
RFC_SK_R = bytes.fromhex("3afc703b6593edc62667fc41c12a751094d8b479a2b186a58636f1d8a42caecb")
RFC_ENC = bytes.fromhex("88edf95a04ab0bc3f3c31b2668c8efe3746b6632b5dd2e75e6b4e9664ced1c12")
RFC_PT = bytes.fromhex("4265617574792069732074727574682c20747275746820626561757479")
RFC_AAD0 = bytes.fromhex("436f756e742d30")
RFC_CT0 = bytes.fromhex(
    "ec454f2fbe381c7e76c4fb0f5c8fb1c5a3218e9689800cfb659f884c5b76fee897d93e8ec1521ac1f6923871d3"
)
RFC_EXPORT_EMPTY = bytes.fromhex("71da8f5d27cac0c9c693aba852c6bc468581028a9a9cc61278d1fdbfb7e36f0d")
RFC_EXPORT_TEST = bytes.fromhex("51de9fb22c3c9721ddac64470a37c9800d3b14452b9f3546a697100509653028")


def test_worker_hpke_matches_the_rfc_vector() -> None:
    context = hpke_suite().create_recipient_context(
        RFC_ENC, hpke_suite().kem.deserialize_private_key(RFC_SK_R), info=RFC_INFO
    )
    assert context.open(RFC_CT0, aad=RFC_AAD0) == RFC_PT
    assert context.export(b"", 32) == RFC_EXPORT_EMPTY
    assert context.export(b"TestContext", 32) == RFC_EXPORT_TEST


def test_sdk_hpke_matches_the_rfc_vector_and_the_worker() -> None:
    enc, sender = sdk_hpke.setup_base_s(RFC_PK_R, RFC_INFO, sk_e=RFC_SK_E)
    assert enc == RFC_ENC
    assert sender.seal(RFC_AAD0, RFC_PT) == RFC_CT0
    assert sender.export(b"TestContext", 32) == RFC_EXPORT_TEST
    # And the other direction: what the worker's library seals, the SDK's code opens.
    pk = hpke_suite().kem.deserialize_public_key(RFC_PK_R)
    enc2, worker_sender = hpke_suite().create_sender_context(pk, info=SUITE_INFO)
    sealed = worker_sender.seal(b"data key", aad=b"")
    receiver = sdk_hpke.setup_base_r(RFC_SK_R, enc2, SUITE_INFO)
    assert receiver.open(b"", sealed) == b"data key"
    assert receiver.export(REPLY_EXPORT_CONTEXT, 32) == worker_sender.export(
        REPLY_EXPORT_CONTEXT, 32
    )


def _seal(keys: list[WorkloadKey], body: dict, **meta: object) -> tuple[dict, dict]:
    meta = {"model": "gemma3:270m", "stream": False, "task_type": "chat", **meta}
    return sdk_pi.seal_request(
        [k.public_bytes for k in keys],
        json.dumps(body).encode(),
        model=str(meta["model"]),
        stream=bool(meta["stream"]),
        task_type=str(meta["task_type"]),
        affinity_key=None,
    )


def test_kid_is_the_sdk_fingerprint() -> None:
    key = WorkloadKey.generate()
    assert key.kid == sdk_pi.fingerprint(key.public_bytes) == fingerprint(key.public_bytes)
    assert len(key.kid) == 64


def test_open_what_the_sdk_sealed_and_seal_what_it_opens() -> None:
    key = WorkloadKey.generate()
    body = {"model": "gemma3:270m", "messages": [{"role": "user", "content": "hi"}]}
    envelope, reply_keys = _seal([key], body)
    opened = open_request(
        parse_envelope(envelope), key, model="gemma3:270m", stream=False, task_type="chat"
    )
    assert json.loads(opened.body) == body
    reply = opened.sealer.seal(b'{"ok": true}')
    assert reply["seq"] == 0 and reply["kid"] == key.kid and reply["v"] == 2
    decryptor = sdk_pi.ResponseDecryptor(reply_keys)
    assert decryptor.open_result(reply) == b'{"ok": true}'


def test_each_of_several_recipients_opens_the_same_request() -> None:
    first, second = WorkloadKey.generate(), WorkloadKey.generate()
    envelope, reply_keys = _seal([first, second], {"x": 1})
    parsed = parse_envelope(envelope)
    assert parsed.kids == {first.kid, second.kid}
    for key in (first, second):
        opened = open_request(parsed, key, model="gemma3:270m", stream=False, task_type="chat")
        assert json.loads(opened.body) == {"x": 1}
        # The reply key is per recipient: the client opens whichever worker answered.
        assert sdk_pi.ResponseDecryptor(reply_keys).open_result(opened.sealer.seal(b"1")) == b"1"


def test_a_stream_with_the_sealed_terminator_passes_the_sdk_guard() -> None:
    key = WorkloadKey.generate()
    envelope, reply_keys = _seal([key], {"stream": True}, stream=True)
    opened = open_request(
        parse_envelope(envelope), key, model="gemma3:270m", stream=True, task_type="chat"
    )
    guard = PrivateStreamGuard(sdk_pi.ResponseDecryptor(reply_keys))
    frames = [
        opened.sealer.seal_json(b'{"pendra_stream_terminator": 1}'),
        opened.sealer.seal_json(b'{"id": "c", "model": "m", "choices": []}'),
        opened.sealer.seal_json(b"[DONE]"),
    ]
    assert [guard.open(f) for f in frames] == [
        None,
        '{"id": "c", "model": "m", "choices": []}',
        None,
    ]
    guard.end(eof=False)


def test_a_stream_cut_before_the_sealed_done_is_reported_as_truncated() -> None:
    key = WorkloadKey.generate()
    envelope, reply_keys = _seal([key], {"stream": True}, stream=True)
    opened = open_request(
        parse_envelope(envelope), key, model="gemma3:270m", stream=True, task_type="chat"
    )
    guard = PrivateStreamGuard(sdk_pi.ResponseDecryptor(reply_keys))
    guard.open(opened.sealer.seal_json(b'{"pendra_stream_terminator": 1}'))
    guard.open(opened.sealer.seal_json(b'{"id": "c", "model": "m", "choices": []}'))
    with pytest.raises(ValueError, match="truncated"):
        guard.end(eof=False)


@pytest.mark.parametrize(
    ("change", "kwargs"),
    [
        ("model", {"model": "other-model", "stream": False, "task_type": "chat"}),
        ("stream", {"model": "gemma3:270m", "stream": True, "task_type": "chat"}),
        ("endpoint", {"model": "gemma3:270m", "stream": False, "task_type": "embeddings"}),
    ],
)
def test_the_routing_metadata_is_bound_to_the_ciphertext(change: str, kwargs: dict) -> None:
    key = WorkloadKey.generate()
    envelope, _ = _seal([key], {"x": 1})
    with pytest.raises(SealedRequestRefused, match="altered in transit") as caught:
        open_request(parse_envelope(envelope), key, **kwargs)
    assert "x" not in caught.value.message  # the refusal never quotes the request


def test_a_flipped_byte_anywhere_in_the_seal_is_refused() -> None:
    key = WorkloadKey.generate()
    envelope, _ = _seal([key], {"x": 1})
    for field in ("ciphertext", "sealed_dek", "enc"):
        tampered = json.loads(json.dumps(envelope))
        holder = tampered if field == "ciphertext" else tampered["recipients"][0]
        raw = bytearray(base64.b64decode(holder[field]))
        raw[len(raw) // 2] ^= 0x01
        holder[field] = base64.b64encode(bytes(raw)).decode()
        with pytest.raises(SealedRequestRefused):
            open_request(
                parse_envelope(tampered), key, model="gemma3:270m", stream=False, task_type="chat"
            )


def test_a_request_for_another_key_or_a_low_order_enc_is_refused_cleanly() -> None:
    mine, other = WorkloadKey.generate(), WorkloadKey.generate()
    envelope, _ = _seal([other], {"x": 1})
    meta = {"model": "gemma3:270m", "stream": False, "task_type": "chat"}
    with pytest.raises(SealedRequestRefused, match="not sealed to this worker"):
        open_request(parse_envelope(envelope), mine, **meta)
    envelope, _ = _seal([mine], {"x": 1})
    envelope["recipients"][0]["enc"] = base64.b64encode(bytes(32)).decode()  # the zero point
    with pytest.raises(SealedRequestRefused):
        open_request(parse_envelope(envelope), mine, **meta)


def test_transcription_audio_is_sealed_under_the_same_key_and_aad() -> None:
    key = WorkloadKey.generate()
    envelope, _ = sdk_pi.seal_request(
        key.public_bytes,
        b'{"model": "w"}',
        model="w",
        stream=False,
        task_type="transcription",
        binary=b"RIFF....WAVE",
    )
    opened = open_request(
        parse_envelope(envelope), key, model="w", stream=False, task_type="transcription"
    )
    assert opened.binary == b"RIFF....WAVE"


@pytest.mark.parametrize(
    "bad",
    [
        None,
        {"v": 1, "recipients": [], "nonce": "", "ciphertext": ""},
        {"v": 2, "recipients": [], "nonce": "", "ciphertext": ""},
        {
            "v": 2,
            "recipients": [{"kid": "nothex", "enc": "", "sealed_dek": ""}],
            "nonce": "",
            "ciphertext": "",
        },
        {
            "v": 2,
            "recipients": [{"kid": "a" * 64, "enc": "", "sealed_dek": ""}],
            "nonce": 3,
            "ciphertext": "",
        },
    ],
)
def test_malformed_envelopes_are_named(bad: object) -> None:
    with pytest.raises(EnvelopeError, match="pendra_encrypted"):
        parse_envelope(bad)


def test_the_aad_is_the_sdks() -> None:
    assert request_aad("m", True, "chat") == sdk_pi.build_aad("m", True, "chat")
    assert request_aad("m", False, "embeddings") == sdk_pi.build_aad("m", False, "embeddings")
