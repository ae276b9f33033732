"""Tiny GGUF files for tests: random-weight llama models and header-only files.

Run as a script (``python tests/model_factory.py KIND OUT``) so the GGUF is written by a separate
process: importing ``gguf``/numpy and then loading the result with llama.cpp in the same process has
crashed model loading (runtime.md §7). The session fixtures in ``tests/conftest.py`` shell out here.

Kinds:

* ``chat`` — llama arch, 2 layers, n_embd 64, SPM vocab with byte tokens and ChatML control tokens,
  a ChatML ``tokenizer.chat_template``, ``eos = <|im_end|>``.
* ``chat-notemplate`` — the same model without a chat template (exercises the fallback formats).
* ``tools`` — the same model with a ChatML template that takes tools (Qwen 2.5's Hermes syntax:
  ``<tool_call>`` blocks).
* ``embed`` — the same shapes with ``pooling_type = MEAN`` and ``attention.causal = false``.
* ``isolation`` — the chat model with weights set by hand instead of at random: attention is
  uniform over the sequence and copies it into the residual, so greedy decoding answers with the
  token the *sequence's own* context is mostly made of, by a wide margin (no float near-ties). A
  request whose message is ``"c" * 40`` answers ``cccc…``; any mix-up between sequences in a
  batch (a wrong sequence id, a wrong logits row, another sequence's KV) shows as another letter.
  (The vocabulary has letters and a few words but no merges between them, so text tokenizes to
  single letters.)
* ``abort`` — the chat model with ``llama.expert_count`` beyond llama.cpp's maximum: loading it
  hits a ``GGML_ASSERT`` and aborts the process (SIGABRT), as a hostile or broken GGUF can.
* ``mamba`` — a random-weight Mamba (recurrent, no KV cache) with the same vocabulary and the
  ChatML template: its state cannot be partly rolled back, like Mamba/LFM2/Granite-H models.
* ``long`` — the chat model with an 8192-token context: a generation that runs to its end takes
  seconds (the ``chat`` model's 512 tokens take a fraction of one), for requests that must still
  be running when a client hangs up.
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

# Qwen 2.5's tool-calling template in miniature (Hermes syntax): tools in the system turn, calls
# as <tool_call> blocks in the assistant's turn, results as <tool_response> blocks in a user turn.
TOOLS_TEMPLATE = r"""
{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\n\n' }}{%- endif %}
{{- '# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' }}
{{- 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>' }}
{%- for tool in tools %}{{- '\n' + (tool | tojson) }}{%- endfor %}
{{- '\n</tools>\n\nFor each function call, return a json object with function name and ' }}
{{- 'arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n' }}
{{- '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' }}
{%- elif messages[0]['role'] == 'system' %}
{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant' }}
{%- if message.content %}{{- '\n' + message.content }}{%- endif %}
{%- for tool_call in message.tool_calls %}
{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
{{- '\n<tool_call>\n{"name": "' + tool_call.name + '", "arguments": ' }}
{{- tool_call.arguments | tojson }}{{- '}\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\n' }}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
{{- '<|im_start|>user' }}
{%- endif %}
{{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\n' }}{%- endif %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
"""

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
N_CTX = 512
LONG_CTX = 8192
NO_EARLY_END = {"2": -100, "4": -100}
"""``logit_bias`` banning the tiny models' ``</s>`` (2) and ``<|im_end|>`` (4): with random
weights any token can come first, so a test that counts tokens lets only ``max_tokens`` end the
answer."""
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


def write_mamba_gguf(path: Path, *, seed: int = 1234) -> Path:
    """A random-weight Mamba-1 GGUF (F32): 2 layers, n_embd 64, expansion 2."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    n_vocab = len(tokens)
    d_inner, d_conv, d_state, dt_rank = 2 * N_EMBD, 4, 16, 4
    writer = gguf.GGUFWriter(str(path), "mamba")
    writer.add_name("pendra-tiny-mamba")
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_head_count(0)
    writer.add_ssm_conv_kernel(d_conv)
    writer.add_ssm_inner_size(d_inner)
    writer.add_ssm_state_size(d_state)
    writer.add_ssm_time_step_rank(dt_rank)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(0)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_unk_token_id(0)
    writer.add_eos_token_id(4)
    writer.add_chat_template(CHATML_TEMPLATE)

    def tensor(name: str, *shape: int, scale: float = 0.3) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    tensor("token_embd.weight", n_vocab, N_EMBD, scale=1.0)
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    tensor("output.weight", n_vocab, N_EMBD)
    for i in range(N_LAYER):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        tensor(f"blk.{i}.ssm_in.weight", 2 * d_inner, N_EMBD)
        tensor(f"blk.{i}.ssm_conv1d.weight", d_inner, d_conv)
        tensor(f"blk.{i}.ssm_conv1d.bias", d_inner, scale=0.1)
        tensor(f"blk.{i}.ssm_x.weight", dt_rank + 2 * d_state, d_inner)
        tensor(f"blk.{i}.ssm_dt.weight", d_inner, dt_rank)
        tensor(f"blk.{i}.ssm_dt.bias", d_inner, scale=0.1)
        a = -np.exp(rng.standard_normal((d_inner, d_state)).astype(np.float32) * 0.5)
        writer.add_tensor(f"blk.{i}.ssm_a", a)
        writer.add_tensor(f"blk.{i}.ssm_d", np.ones(d_inner, dtype=np.float32))
        tensor(f"blk.{i}.ssm_out.weight", N_EMBD, d_inner)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_llama_gguf(
    path: Path, *, kind: str = "chat", seed: int = 1234, split_max_tensors: int = 0
) -> Path:
    """Write a tiny llama GGUF (F32) that llama.cpp loads and runs (see the module docstring;
    split into parts of at most ``split_max_tensors`` tensors when that is set)."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    n_vocab = len(tokens)
    head_dim = N_EMBD // N_HEAD
    writer = gguf.GGUFWriter(str(path), "llama", split_max_tensors=split_max_tensors)
    writer.add_name(f"pendra-tiny-{kind.removesuffix('-split')}")
    # Tool descriptions tokenize letter by letter in this vocabulary: the tools model gets room.
    writer.add_context_length({"tools": 4096, "long": LONG_CTX}.get(kind, N_CTX))
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
        if kind in ("chat", "chat-split", "isolation", "abort", "long"):
            writer.add_chat_template(CHATML_TEMPLATE)
        elif kind == "tools":
            writer.add_chat_template(TOOLS_TEMPLATE)
    if kind == "abort":
        writer.add_expert_count(100_000)  # llama.cpp: GGML_ASSERT(n_expert <= LLAMA_MAX_EXPERTS)

    def tensor(name: str, *shape: int, scale: float = 0.3) -> None:
        data = (rng.standard_normal(shape) * scale).astype(np.float32)
        writer.add_tensor(name, data)

    if kind == "isolation":
        _isolation_tensors(writer, rng, n_vocab, head_dim)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path

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


def _isolation_tensors(writer: Any, rng: Any, n_vocab: int, head_dim: int) -> None:
    """Hand-set weights: uniform attention (Q = K = 0) whose values copy the first half of the
    normalised residual, added back 20-fold; no MLP. The last hidden state is then dominated by
    the mean embedding of the sequence, and the tied output picks the token closest to it."""
    import numpy as np

    embd = rng.standard_normal((n_vocab, N_EMBD)).astype(np.float32)
    writer.add_tensor("token_embd.weight", embd)
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    writer.add_tensor("output.weight", embd.copy())
    kv_dim = N_HEAD_KV * head_dim
    group = N_HEAD // N_HEAD_KV
    value = np.zeros((kv_dim, N_EMBD), dtype=np.float32)
    value[np.arange(kv_dim), np.arange(kv_dim)] = 1.0  # V = residual dims 0..kv_dim-1
    out = np.zeros((N_EMBD, N_HEAD * head_dim), dtype=np.float32)
    for kv_head in range(N_HEAD_KV):  # the first query head of each group writes its values back
        head = kv_head * group
        for d in range(head_dim):
            out[kv_head * head_dim + d, head * head_dim + d] = 20.0
    for i in range(N_LAYER):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(
            f"blk.{i}.attn_q.weight", np.zeros((N_HEAD * head_dim, N_EMBD), dtype=np.float32)
        )
        writer.add_tensor(f"blk.{i}.attn_k.weight", np.zeros((kv_dim, N_EMBD), dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_v.weight", value)
        writer.add_tensor(f"blk.{i}.attn_output.weight", out if i == 0 else np.zeros_like(out))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        for name, shape in (("gate", (N_FF, N_EMBD)), ("up", (N_FF, N_EMBD)),
                            ("down", (N_EMBD, N_FF))):  # fmt: skip
            writer.add_tensor(f"blk.{i}.ffn_{name}.weight", np.zeros(shape, dtype=np.float32))


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
    kinds = (
        "chat",
        "chat-notemplate",
        "tools",
        "embed",
        "isolation",
        "abort",
        "mamba",
        "chat-split",
        "long",
    )
    if len(argv) != 2 or argv[0] not in kinds:
        print(f"usage: model_factory.py {'|'.join(kinds)} OUT.gguf", file=sys.stderr)
        return 2
    out = Path(argv[1])
    if argv[0] == "chat-split":
        import tempfile

        # Written in a private folder, then moved: a reader never sees some parts only.
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp_dir:
            write_llama_gguf(Path(tmp_dir) / out.name, kind="chat-split", split_max_tensors=8)
            for part in sorted(Path(tmp_dir).iterdir()):
                part.replace(out.parent / part.name)
        return 0
    tmp = out.with_name(f".{out.name}.tmp")
    if argv[0] == "mamba":
        write_mamba_gguf(tmp)
    else:
        write_llama_gguf(tmp, kind=argv[0])
    tmp.replace(out)  # atomic: a concurrent reader never sees a half-written fixture
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
