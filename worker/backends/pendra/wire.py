"""The wire between the worker and a model runner: length-prefixed frames on a Unix socket.

Every frame is ``u32 length (little-endian) | u8 type | body`` where ``length`` counts the type
byte and the body. Two types:

* ``CONTROL`` (``b"C"``): one UTF-8 JSON object with an ``"op"`` key. Rare messages, both ways:
  ``load`` / ``ready`` / ``load_failed``, ``job`` (the job spec is an open dict, so new request
  features add keys, not frame types), ``cancel``, ``threads``, ``stats``, ``shutdown``.
* ``EVENTS`` (``b"E"``): runner → worker, at most one per engine step, carrying every job's output
  of that step as entries ``u32 job | u8 kind | u32 length | payload``. A streamed token costs one
  9-byte entry header and its UTF-8 text, and one frame (one ``send``) per step however many
  sequences are generating: no JSON on the per-token path.

Entry kinds: ``TEXT`` (UTF-8 text delta), ``DONE`` (JSON: finish reason, usage), ``ERROR`` (JSON:
code, message, hint), ``EMBEDDINGS`` (``u32 count | u32 dim | u32 prompt tokens |
float32[count*dim]``), and
``TOKEN_INFO`` (JSON per-token extras, e.g. logprobs; emitted only when a job asks for them).
Unknown entry kinds are skipped by the reader, so a newer runner can add kinds.

Both ends decode with :class:`FrameDecoder` (incremental, bounded): a frame over
:data:`MAX_FRAME_BYTES` means the peer is broken, and the connection is dropped.
"""

from __future__ import annotations

import json
import struct
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

CONTROL = ord("C")
EVENTS = ord("E")

TEXT = 1
DONE = 2
ERROR = 3
EMBEDDINGS = 4
TOKEN_INFO = 5

MAX_FRAME_BYTES = 256 * 1024 * 1024
"""A batch of 2048 embeddings of 8192 floats is 64 MiB; anything near this bound is a bug."""

_HEADER = struct.Struct("<IB")
_ENTRY = struct.Struct("<IBI")
_DIMS = struct.Struct("<III")

Entry = tuple[int, int, Any]
"""``(job id, kind, payload)``: payload is ``str`` (TEXT), ``dict`` (DONE, ERROR, TOKEN_INFO) or
:class:`Embeddings` (EMBEDDINGS)."""


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int


class WireError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def control_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _HEADER.pack(len(body) + 1, CONTROL) + body


def events_frame(entries: Sequence[Entry]) -> bytes:
    """Encode one step's entries into a single frame."""
    parts: list[bytes] = []
    append = parts.append
    pack = _ENTRY.pack
    for job, kind, payload in entries:
        if kind == TEXT:
            data = payload.encode("utf-8")
        elif kind == EMBEDDINGS:
            data = _pack_vectors(payload)
        else:
            data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        append(pack(job, kind, len(data)))
        append(data)
    body = b"".join(parts)
    return _HEADER.pack(len(body) + 1, EVENTS) + body


def iter_entries(body: bytes | memoryview) -> Iterator[Entry]:
    """Decode the entries of an EVENTS frame body."""
    view = memoryview(body)
    pos, end = 0, len(view)
    unpack = _ENTRY.unpack_from
    while pos < end:
        if pos + _ENTRY.size > end:
            raise WireError("an events frame ends inside an entry header")
        job, kind, length = unpack(view, pos)
        pos += _ENTRY.size
        if pos + length > end:
            raise WireError("an events entry runs past the end of its frame")
        data = view[pos : pos + length]
        pos += length
        if kind == TEXT:
            yield job, kind, str(data, "utf-8")
        elif kind == EMBEDDINGS:
            yield job, kind, _unpack_vectors(data)
        elif kind in (DONE, ERROR, TOKEN_INFO):
            yield job, kind, json.loads(bytes(data))
        # other kinds: from a newer runner; skipped


def _pack_vectors(embeddings: Embeddings) -> bytes:
    vectors = embeddings.vectors
    count = len(vectors)
    dim = len(vectors[0]) if count else 0
    values = array("f")
    for vector in vectors:
        if len(vector) != dim:
            raise ValueError("embedding vectors of one job must have one size")
        values.extend(vector)
    if values.itemsize != 4:  # pragma: no cover - every supported platform has 4-byte floats
        raise RuntimeError("this platform's float is not 32-bit")
    return _DIMS.pack(count, dim, embeddings.prompt_tokens) + _little_endian(values).tobytes()


def _unpack_vectors(data: memoryview) -> Embeddings:
    if len(data) < _DIMS.size:
        raise WireError("an embeddings entry is shorter than its header")
    count, dim, tokens = _DIMS.unpack_from(data, 0)
    if len(data) != _DIMS.size + 4 * count * dim:
        raise WireError("an embeddings entry's size does not match its count and dimension")
    values = array("f")
    values.frombytes(data[_DIMS.size :])
    flat = _little_endian(values).tolist()
    return Embeddings([flat[i * dim : (i + 1) * dim] for i in range(count)], tokens)


def _little_endian(values: array) -> array:
    import sys

    if sys.byteorder == "big":  # pragma: no cover - no big-endian CI machine
        values.byteswap()
    return values


class FrameDecoder:
    """Incremental frame parser: feed bytes, get ``(type, body)`` pairs back."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        frames: list[tuple[int, bytes]] = []
        pos = 0
        size = len(buf)
        while size - pos >= _HEADER.size:
            length, kind = _HEADER.unpack_from(buf, pos)
            if length < 1 or length > self._max:
                raise WireError(f"a frame of {length} bytes is outside the protocol's bounds")
            end = pos + 4 + length
            if end > size:
                break
            frames.append((kind, bytes(buf[pos + _HEADER.size : end])))
            pos = end
        if pos:
            del buf[:pos]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)


def decode_control(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise WireError(f"a control frame is not JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise WireError("a control frame is not an object with an 'op'")
    return message
