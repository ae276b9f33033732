"""A fast, hardened reader of a GGUF file's header (the key/value metadata before the tensors).

Why not ``gguf.GGUFReader``: it builds an object per array element and takes ~20 s on a
262k-token vocabulary. This reader maps the file, decodes scalar values, and *skips* arrays
(keeping their element type and length, and the values of short numeric ones such as per-layer
head counts), so a big model is classified in a fraction of a second.

Why hardened: a ``.gguf`` name says nothing about the bytes. Every length read from the file is
checked against the bytes that remain before anything is allocated or skipped, strings and keys have
caps, and the number of key/values is bounded by what the file could possibly hold. A bad file
raises :class:`GGUFHeaderError` with a reason a person can act on; memory use stays bounded by the
caps, whatever the header claims.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
MAX_KEY_BYTES = 64 * 1024
MAX_STRING_BYTES = 16 * 1024 * 1024
MAX_ARRAY_DEPTH = 4

# GGUF value types: id -> (struct code, size) for fixed-size scalars.
_FIXED: dict[int, tuple[str, int]] = {
    0: ("B", 1),  # uint8
    1: ("b", 1),  # int8
    2: ("H", 2),  # uint16
    3: ("h", 2),  # int16
    4: ("I", 4),  # uint32
    5: ("i", 4),  # int32
    6: ("f", 4),  # float32
    7: ("?", 1),  # bool
    10: ("Q", 8),  # uint64
    11: ("q", 8),  # int64
    12: ("d", 8),  # float64
}
TYPE_STRING = 8
TYPE_ARRAY = 9


class GGUFHeaderError(ValueError):
    """The file is not a GGUF this worker can read; the message says why."""


MAX_KEPT_ARRAY = 4096
"""Numeric arrays up to this length keep their values (per-layer hyper-parameters such as
``head_count_kv``); longer ones (vocabulary scores, token types) are skipped."""


@dataclass(frozen=True)
class ArrayInfo:
    """An array value: its element type and length, and the values of a short numeric one."""

    element_type: int
    length: int
    values: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class GGUFHeader:
    """The parsed header: scalar metadata by key, arrays by key (type and length only)."""

    version: int
    tensor_count: int
    metadata: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, ArrayInfo] = field(default_factory=dict)
    header_bytes: int = 0
    data_end: int = 0
    """The smallest file size that holds every tensor the header lists (0 when unknown)."""
    parameter_count: int = 0
    """The number of elements of every tensor the header lists (the model's parameters; of this
    part only, for a split GGUF)."""


class _Cursor:
    """Bounds-checked little/big-endian reads over a buffer."""

    def __init__(self, buf: Any, size: int, endian: str) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0
        self.endian = endian

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise GGUFHeaderError(
                f"the file is truncated or corrupt: {what} needs {n} bytes at offset {self.pos}, "
                f"but the file has {self.size} bytes"
            )

    def fixed(self, type_id: int, what: str) -> Any:
        code, width = _FIXED[type_id]
        self.need(width, what)
        (value,) = struct.unpack_from(self.endian + code, self.buf, self.pos)
        self.pos += width
        return value

    def u32(self, what: str) -> int:
        return int(self.fixed(4, what))

    def u64(self, what: str) -> int:
        return int(self.fixed(10, what))

    def string(self, what: str, limit: int) -> str:
        length = self.u64(f"the length of {what}")
        if length > limit:
            raise GGUFHeaderError(
                f"{what} claims {length} bytes, more than the {limit}-byte limit: "
                "the header is corrupt or hostile"
            )
        self.need(length, what)
        raw = bytes(self.buf[self.pos : self.pos + length])
        self.pos += length
        return raw.decode("utf-8", errors="replace")


def read_gguf_header(path: Path) -> GGUFHeader:
    """Parse the header of the GGUF at ``path``; raises :class:`GGUFHeaderError` or ``OSError``."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        if size == 0:
            raise GGUFHeaderError("the file is empty (0 bytes); it is not a GGUF model")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return parse_gguf_header(buf, size)


def parse_gguf_header(buf: Any, size: int | None = None) -> GGUFHeader:
    """Parse a GGUF header from any buffer (bytes, mmap); pure apart from reading ``buf``."""
    size = len(buf) if size is None else size
    if size < 4 or bytes(buf[:4]) != MAGIC:
        start = bytes(buf[: min(size, 4)])
        raise GGUFHeaderError(
            f"not a GGUF file: it starts with {start!r} instead of b'GGUF' "
            "(a partial download, another format, or a wrong file)"
        )
    cur = _Cursor(buf, size, "<")
    cur.pos = 4
    version = cur.u32("the version")
    if version not in SUPPORTED_VERSIONS:
        swapped = struct.unpack(">I", struct.pack("<I", version))[0]
        if swapped in SUPPORTED_VERSIONS:
            cur.endian, version = ">", swapped  # a big-endian GGUF
        else:
            raise GGUFHeaderError(
                f"unsupported GGUF version {version} (this worker reads versions 2 and 3); "
                "re-convert the model with a current llama.cpp"
            )
    tensor_count = cur.u64("the tensor count")
    kv_count = cur.u64("the metadata count")
    # The smallest key/value is 8 (key length) + 1 (key) + 4 (type) + 1 (u8 value) = 14 bytes.
    if kv_count * 14 > size - cur.pos:
        raise GGUFHeaderError(
            f"the header claims {kv_count} metadata entries, more than a {size}-byte file can "
            "hold: the file is corrupt or truncated"
        )
    if tensor_count > size:
        raise GGUFHeaderError(
            f"the header claims {tensor_count} tensors in a {size}-byte file: it is corrupt"
        )
    metadata: dict[str, Any] = {}
    arrays: dict[str, ArrayInfo] = {}
    for index in range(kv_count):
        key = cur.string(f"metadata key #{index}", MAX_KEY_BYTES)
        type_id = cur.u32(f"the type of {key!r}")
        if type_id == TYPE_ARRAY:
            arrays[key] = _skip_array(cur, key, depth=1)
        elif type_id == TYPE_STRING:
            metadata[key] = cur.string(f"the value of {key!r}", MAX_STRING_BYTES)
        elif type_id in _FIXED:
            metadata[key] = cur.fixed(type_id, f"the value of {key!r}")
        else:
            raise GGUFHeaderError(f"metadata {key!r} has unknown value type {type_id}")
    header_end = cur.pos
    data_end, parameters = _tensor_data_end(
        cur, tensor_count, metadata.get("general.alignment", 32)
    )
    if data_end > size:
        raise GGUFHeaderError(
            f"the file is truncated: its tensors need {data_end} bytes but it has {size} "
            "(an interrupted download or copy)"
        )
    return GGUFHeader(version, tensor_count, metadata, arrays, header_end, data_end, parameters)


# ggml tensor types -> (block size in elements, bytes per block), for the common types. Tensors of
# other types count with their offset only, which still catches most truncated files.
_GGML_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
    15: (256, 292), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 30: (1, 2),
}  # fmt: skip


def _tensor_data_end(cur: _Cursor, tensor_count: int, alignment: Any) -> tuple[int, int]:
    """Walk the tensor infos after the metadata: where the last tensor's data ends, and the number
    of elements of all tensors."""
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        alignment = 32
    furthest = 0
    total_elements = 0
    for index in range(tensor_count):
        name = cur.string(f"the name of tensor #{index}", MAX_KEY_BYTES)
        n_dims = cur.u32(f"the dimension count of tensor {name!r}")
        if n_dims > 8:
            raise GGUFHeaderError(f"tensor {name!r} claims {n_dims} dimensions: corrupt header")
        elements = 1
        for _ in range(n_dims):
            elements *= cur.u64(f"a dimension of tensor {name!r}")
        ggml_type = cur.u32(f"the type of tensor {name!r}")
        offset = cur.u64(f"the data offset of tensor {name!r}")
        block, block_bytes = _GGML_BLOCKS.get(ggml_type, (1, 0))
        furthest = max(furthest, offset + (elements // block) * block_bytes)
        total_elements += elements
    data_start = -(-cur.pos // alignment) * alignment
    return (data_start + furthest if tensor_count else 0), total_elements


def _skip_array(cur: _Cursor, key: str, depth: int) -> ArrayInfo:
    if depth > MAX_ARRAY_DEPTH:
        raise GGUFHeaderError(f"metadata {key!r} nests arrays deeper than {MAX_ARRAY_DEPTH}")
    element_type = cur.u32(f"the element type of {key!r}")
    length = cur.u64(f"the length of {key!r}")
    if element_type in _FIXED:
        code, width = _FIXED[element_type]
        cur.need(length * width, f"the {length} elements of {key!r}")
        values = None
        if depth == 1 and length <= MAX_KEPT_ARRAY:
            values = struct.unpack_from(f"{cur.endian}{length}{code}", cur.buf, cur.pos)
        cur.pos += length * width
        return ArrayInfo(element_type, length, values)
    elif element_type == TYPE_STRING:
        # Each string has at least its 8-byte length: reject impossible counts before looping.
        cur.need(length * 8, f"the {length} strings of {key!r}")
        _skip_strings(cur, key, length)
    elif element_type == TYPE_ARRAY:
        cur.need(length * 12, f"the {length} nested arrays of {key!r}")
        for _ in range(length):
            _skip_array(cur, key, depth + 1)
    else:
        raise GGUFHeaderError(f"metadata {key!r} is an array of unknown type {element_type}")
    return ArrayInfo(element_type, length)


def _skip_strings(cur: _Cursor, key: str, count: int) -> None:
    """Skip ``count`` length-prefixed strings: the hot loop over a 262k-token vocabulary."""
    unpack = struct.Struct(cur.endian + "Q").unpack_from
    buf, size, pos = cur.buf, cur.size, cur.pos
    for _ in range(count):
        if pos + 8 > size:
            break
        (length,) = unpack(buf, pos)
        pos += 8 + length
        if pos > size:
            break
    else:
        cur.pos = pos
        return
    raise GGUFHeaderError(
        f"the file is truncated or corrupt: the strings of {key!r} run past the end of the "
        f"{size}-byte file"
    )
