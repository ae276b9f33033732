"""The stdlib GGUF header parser on real files and on hostile/corrupt inputs."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from model_factory import write_header_only

from tests.work_budget import within_budget
from worker.modelstore.gguf_header import (
    GGUFHeaderError,
    parse_gguf_header,
    read_gguf_header,
)


def _header(n_kv: int, body: bytes, *, version: int = 3, n_tensors: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + body


def _key(name: str) -> bytes:
    raw = name.encode()
    return struct.pack("<Q", len(raw)) + raw


def test_reads_scalars_and_skips_arrays(tmp_path: Path) -> None:
    path = write_header_only(
        tmp_path / "m.gguf",
        "qwen3",
        {
            "general.name": "Tiny",
            "qwen3.context_length": 40960,
            "qwen3.attention.causal": True,
            "general.file_type": 15,
            "tokenizer.ggml.tokens": ["a", "bb", "ccc"],
            "tokenizer.ggml.scores": [0.5, 0.25],
        },
    )
    header = read_gguf_header(path)
    assert header.version == 3
    assert header.metadata["general.architecture"] == "qwen3"
    assert header.metadata["general.name"] == "Tiny"
    assert header.metadata["qwen3.context_length"] == 40960
    assert header.metadata["qwen3.attention.causal"] is True
    assert header.arrays["tokenizer.ggml.tokens"].length == 3
    assert header.arrays["tokenizer.ggml.scores"].length == 2
    assert "tokenizer.ggml.tokens" not in header.metadata


def test_real_tiny_model_header_matches_file_size(tiny_chat_gguf: Path) -> None:
    header = read_gguf_header(tiny_chat_gguf)
    assert header.tensor_count > 0
    assert header.data_end == tiny_chat_gguf.stat().st_size
    assert "tokenizer.chat_template" in header.metadata


@pytest.mark.slow
def test_big_vocab_header_is_linear_in_its_size(gemma_gguf: Path) -> None:
    # About 5 Python lines per token of the 262,144-token vocabulary today (1.3 M in all).
    header = within_budget(lambda: read_gguf_header(gemma_gguf), max_lines=3_000_000)
    assert header.arrays["tokenizer.ggml.tokens"].length == 262144
    assert header.metadata["gemma3.context_length"] == 32768


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "e.gguf"
    path.write_bytes(b"")
    with pytest.raises(GGUFHeaderError, match="empty"):
        read_gguf_header(path)


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "x.gguf"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(GGUFHeaderError, match="not a GGUF file"):
        read_gguf_header(path)


def test_unsupported_version() -> None:
    with pytest.raises(GGUFHeaderError, match="unsupported GGUF version 1"):
        parse_gguf_header(_header(0, b"", version=1))


def test_big_endian_is_read() -> None:
    body = (
        _key("general.architecture").replace(struct.pack("<Q", 20), struct.pack(">Q", 20))
        + struct.pack(">I", 8)
        + struct.pack(">Q", 5)
        + b"llama"
    )
    data = b"GGUF" + struct.pack(">IQQ", 3, 0, 1) + body
    assert parse_gguf_header(data).metadata["general.architecture"] == "llama"


def test_huge_kv_count_is_rejected_without_allocating() -> None:
    with pytest.raises(GGUFHeaderError, match="metadata entries"):
        parse_gguf_header(_header(2**63, b""))


def test_huge_string_length() -> None:
    body = _key("general.name") + struct.pack("<I", 8) + struct.pack("<Q", 2**62)
    with pytest.raises(GGUFHeaderError, match="limit"):
        parse_gguf_header(_header(1, body))


def test_string_longer_than_file() -> None:
    body = _key("general.name") + struct.pack("<I", 8) + struct.pack("<Q", 1000) + b"abc"
    with pytest.raises(GGUFHeaderError, match="truncated"):
        parse_gguf_header(_header(1, body))


def test_huge_key_length() -> None:
    body = struct.pack("<Q", 2**40) + b"k"
    with pytest.raises(GGUFHeaderError, match="limit"):
        parse_gguf_header(_header(1, body + b"\0" * 20))


def test_huge_array_length_of_scalars() -> None:
    body = _key("a") + struct.pack("<I", 9) + struct.pack("<IQ", 6, 2**60)
    with pytest.raises(GGUFHeaderError, match="truncated"):
        within_budget(lambda: parse_gguf_header(_header(1, body + b"\0" * 64)), max_lines=5_000)


def test_huge_array_length_of_strings() -> None:
    body = _key("tokens") + struct.pack("<I", 9) + struct.pack("<IQ", 8, 2**61)
    with pytest.raises(GGUFHeaderError, match="truncated"):
        within_budget(lambda: parse_gguf_header(_header(1, body + b"\0" * 64)), max_lines=5_000)


def test_string_array_running_past_end() -> None:
    strings = struct.pack("<Q", 1) + b"a" + struct.pack("<Q", 500) + b"b" * 20
    body = _key("tokens") + struct.pack("<I", 9) + struct.pack("<IQ", 8, 3) + strings
    with pytest.raises(GGUFHeaderError, match="run past the end"):
        parse_gguf_header(_header(1, body))


def test_deeply_nested_arrays() -> None:
    nested = struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 10 + b"\0" * 200
    body = _key("n") + nested
    with pytest.raises(GGUFHeaderError, match="deeper"):
        parse_gguf_header(_header(1, body))


def test_unknown_value_type() -> None:
    body = _key("k") + struct.pack("<I", 77) + b"\0" * 16
    with pytest.raises(GGUFHeaderError, match="unknown value type 77"):
        parse_gguf_header(_header(1, body))


def test_truncated_tensor_data(tiny_chat_gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    data = tiny_chat_gguf.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(GGUFHeaderError, match="truncated"):
        read_gguf_header(cut)


@pytest.mark.parametrize("length", [3, 10, 23, 50, 200, 2000])
def test_every_truncation_of_a_header_is_a_clean_error(tiny_chat_gguf: Path, length: int) -> None:
    data = tiny_chat_gguf.read_bytes()[:length]
    with pytest.raises(GGUFHeaderError):
        parse_gguf_header(data)


def test_random_garbage_never_escapes_as_another_exception() -> None:
    import random

    rng = random.Random(7)
    valid = _header(2, _key("general.architecture") + struct.pack("<I", 8) + _key("llama"))
    for _ in range(500):
        data = bytearray(valid + bytes(rng.randrange(256) for _ in range(40)))
        for _ in range(3):
            data[rng.randrange(4, len(data))] = rng.randrange(256)
        with contextlib.suppress(GGUFHeaderError):
            parse_gguf_header(bytes(data))
