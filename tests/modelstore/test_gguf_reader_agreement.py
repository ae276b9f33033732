"""The worker's GGUF header parser agrees with the ``gguf`` package's own reader on every GGUF the
test suite uses: the tiny random-weight models (chat, no template, embedding, each part of the
split one), header-only files with every value type in both byte orders, and the real Gemma 3
270M. Agreement means: version, tensor count, every scalar value, every array's element type and
length, the parameter count, and where the last tensor's data ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from worker.modelstore.gguf_header import read_gguf_header


def assert_agrees(path: Path) -> None:
    import gguf

    ours = read_gguf_header(path)
    theirs = gguf.GGUFReader(path)
    fields = theirs.fields
    assert ours.version == int(fields["GGUF.version"].contents())
    assert ours.tensor_count == int(fields["GGUF.tensor_count"].contents()) == len(theirs.tensors)
    keys = {k for k in fields if not k.startswith("GGUF.")}
    assert set(ours.metadata) | set(ours.arrays) == keys
    for key in keys:
        field = fields[key]
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            assert key in ours.arrays, key
            assert ours.arrays[key].element_type == int(field.types[1]), key
            assert ours.arrays[key].length == len(field.data), key
        else:
            value: Any = field.contents()
            mine = ours.metadata[key]
            if isinstance(value, float):
                assert mine == pytest.approx(value, rel=1e-6), key
            else:
                assert mine == value and type(mine) is type(value), key
    assert ours.parameter_count == sum(int(t.n_elements) for t in theirs.tensors)
    ends = [int(t.data_offset) + int(t.n_bytes) for t in theirs.tensors]
    assert ours.data_end == (max(ends) if ends else 0)


def test_tiny_models(
    tiny_chat_gguf: Path, tiny_chat_notemplate_gguf: Path, tiny_embed_gguf: Path
) -> None:
    for path in (tiny_chat_gguf, tiny_chat_notemplate_gguf, tiny_embed_gguf):
        assert_agrees(path)


def test_every_part_of_a_split_model(tiny_split_gguf: list[Path]) -> None:
    assert len(tiny_split_gguf) == 3
    for path in tiny_split_gguf:
        assert_agrees(path)


@pytest.mark.parametrize("big_endian", [False, True])
def test_every_value_type(tmp_path: Path, big_endian: bool) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "kinds.gguf"
    endian = gguf.GGUFEndian.BIG if big_endian else gguf.GGUFEndian.LITTLE
    writer = gguf.GGUFWriter(str(path), "qwen3", endianess=endian)
    writer.add_uint8("t.u8", 200)
    writer.add_int8("t.i8", -100)
    writer.add_uint16("t.u16", 60000)
    writer.add_int16("t.i16", -30000)
    writer.add_uint32("t.u32", 4_000_000_000)
    writer.add_int32("t.i32", -2_000_000_000)
    writer.add_uint64("t.u64", 2**63 + 5)
    writer.add_int64("t.i64", -(2**62))
    writer.add_float32("t.f32", 0.1)
    writer.add_float64("t.f64", 1e-300)
    writer.add_bool("t.bool", True)
    writer.add_string("t.str", "naïve ✓ text")
    writer.add_string("t.empty", "")
    writer.add_array("t.strings", ["a", "", "ccc"])
    writer.add_array("t.ints", [1, 2, 3])
    writer.add_array("t.floats", [0.5, 1.5])
    writer.add_array("t.empty_array", [])
    writer.add_tensor("w", np.arange(24, dtype=np.float32).reshape(4, 6))
    writer.add_tensor("v", np.ones(7, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert_agrees(path)
    assert read_gguf_header(path).parameter_count == 24 + 7


@pytest.mark.slow
def test_the_real_gemma_model(gemma_gguf: Path) -> None:
    assert_agrees(gemma_gguf)
