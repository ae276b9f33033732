"""Compile GBNF grammars with llama.cpp against a GGUF's vocabulary, in a child process.

    python tests/builtin/grammar_proc.py MODEL.gguf '["root ::= …", …]'  → JSON list of booleans

A separate process, because llama.cpp is never loaded into the test process itself
(runtime.md §7).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def compiled(model: Path, grammars: list[str]) -> list[bool]:
    """Whether llama.cpp's grammar sampler accepts each grammar."""
    result = subprocess.run(
        [sys.executable, __file__, str(model)],
        input=json.dumps(grammars),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(argv[0].encode(), params)
    vocab = llama_cpp.llama_model_get_vocab(model)
    results = []
    for grammar in json.loads(sys.stdin.read()):
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        results.append(bool(sampler))
        if sampler:
            llama_cpp.llama_sampler_free(sampler)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
