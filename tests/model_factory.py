"""Tiny GGUF files for tests: random-weight llama models and header-only files.

Run as a script (``python tests/model_factory.py KIND OUT``) so the GGUF is written by a separate
process: importing ``gguf``/numpy and then loading the result with llama.cpp in the same process has
crashed model loading (runtime.md §7). The session fixtures in ``tests/conftest.py`` shell out here.

Kinds:

* ``chat`` — llama arch, 2 layers, n_embd 64, SPM vocab with byte tokens and ChatML control tokens,
  a ChatML ``tokenizer.chat_template``, ``eos = <|im_end|>``.
* ``chat-notemplate`` — the same model without a chat template (exercises the fallback formats).
* ``embed`` — the same shapes with ``pooling_type = MEAN`` and ``attention.causal = false``.
* ``chat-split`` — the ``chat`` model as a split GGUF (``gguf-split`` layout:
  ``OUT-00001-of-00003.gguf`` … with ``split.no``/``split.count``/``split.tensors.count``), which
  llama.cpp loads from part 1.

:func:`write_header_only` writes a GGUF with metadata and no tensors, for classification tests; it
never needs llama.cpp, so tests may call it in-process.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
N_CTX = 512
_WORDS = (
    "the",
    "a",
    "is",
    "of",
    "and",
    "to",
    "in",
    "it",
    "you",
    "hello",
    "world",
    "model",
    "pendra",
    "yes",
    "no",
    "one",
    "two",
    "three",
    "cat",
    "dog",
    "sun",
    "moon",
    "red",
    "blue",
    "green",
)


def _vocab() -> tuple[list[str], list[float], list[int]]:
    """SPM vocab: specials, the 256 byte tokens (byte fallback), letters and a few words."""
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [2, 3, 3, 3, 3]  # UNKNOWN, CONTROL...
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256  # BYTE
    pieces = ["▁", *"abcdefghijklmnopqrstuvwxyz", *(f"▁{w}" for w in _WORDS), "\n", ".", ","]
    tokens += pieces
    types += [1] * len(pieces)  # NORMAL
    # SPM merges the best-scoring adjacent pair first; longer pieces score higher.
    scores = [0.0] * (5 + 256) + [float(len(p)) for p in pieces]
    return tokens, scores, types


def write_llama_gguf(
    path: Path, *, kind: str = "chat", seed: int = 1234, split_max_tensors: int = 0
) -> Path:
    """Write a random-weight llama GGUF (F32) that llama.cpp loads and runs (split into parts of
    at most ``split_max_tensors`` tensors when that is set)."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    n_vocab = len(tokens)
    head_dim = N_EMBD // N_HEAD
    writer = gguf.GGUFWriter(str(path), "llama", split_max_tensors=split_max_tensors)
    writer.add_name(f"pendra-tiny-{kind.removesuffix('-split')}")
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(0)  # ALL_F32
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_unk_token_id(0)
    if kind == "embed":
        writer.add_eos_token_id(2)
        writer.add_pooling_type(gguf.PoolingType.MEAN)
        writer.add_causal_attention(False)
    else:
        writer.add_eos_token_id(4)  # <|im_end|>
        if kind in {"chat", "chat-split"}:
            writer.add_chat_template(CHATML_TEMPLATE)

    def tensor(name: str, *shape: int, scale: float = 0.3) -> None:
        data = (rng.standard_normal(shape) * scale).astype(np.float32)
        writer.add_tensor(name, data)

    tensor("token_embd.weight", n_vocab, N_EMBD, scale=1.0)
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    tensor("output.weight", n_vocab, N_EMBD)
    for i in range(N_LAYER):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        tensor(f"blk.{i}.attn_q.weight", N_HEAD * head_dim, N_EMBD)
        tensor(f"blk.{i}.attn_k.weight", N_HEAD_KV * head_dim, N_EMBD)
        tensor(f"blk.{i}.attn_v.weight", N_HEAD_KV * head_dim, N_EMBD)
        tensor(f"blk.{i}.attn_output.weight", N_EMBD, N_HEAD * head_dim)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        tensor(f"blk.{i}.ffn_gate.weight", N_FF, N_EMBD)
        tensor(f"blk.{i}.ffn_up.weight", N_FF, N_EMBD)
        tensor(f"blk.{i}.ffn_down.weight", N_EMBD, N_FF)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_header_only(path: Path, arch: str, kvs: Mapping[str, Any]) -> Path:
    """A GGUF with ``general.architecture`` plus ``kvs`` and no tensors (for header parsing).

    Values: bool, int (written as u32 or u64 when large), float (f32), str, or list of str/int.
    """
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in kvs.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            if value >= 2**32:
                writer.add_uint64(key, value)
            else:
                writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, list):
            writer.add_array(key, value)
        else:
            raise TypeError(f"unsupported value for {key}: {value!r}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in {"chat", "chat-notemplate", "embed", "chat-split"}:
        print(
            "usage: model_factory.py chat|chat-notemplate|embed|chat-split OUT.gguf",
            file=sys.stderr,
        )
        return 2
    out = Path(argv[1])
    if argv[0] == "chat-split":
        import tempfile

        # Written in a private folder, then moved: a reader never sees some parts only.
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            write_llama_gguf(Path(tmp) / out.name, kind="chat-split", split_max_tensors=8)
            for part in sorted(Path(tmp).iterdir()):
                part.replace(out.parent / part.name)
        return 0
    tmp = out.with_name(f".{out.name}.tmp")
    write_llama_gguf(tmp, kind=argv[0])
    tmp.replace(out)  # atomic: a concurrent reader never sees a half-written fixture
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
