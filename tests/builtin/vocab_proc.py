"""Ask llama.cpp about a GGUF's vocabulary, in a child process (the tests' independent reference).

    python tests/builtin/vocab_proc.py count MODEL.gguf    < '["text", …]'        → token counts
    python tests/builtin/vocab_proc.py grammar MODEL.gguf  < '["root ::= …", …]'  → booleans

Texts are tokenized as plain text (no special-token parsing, no BOS), the way a user's message
must be; a grammar counts as compiled when llama.cpp's grammar sampler accepts it. A separate
process, because llama.cpp is never loaded into the test process itself (runtime.md §7).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def _ask(what: str, model: Path, items: list[str]) -> list[Any]:
    result = subprocess.run(
        [sys.executable, __file__, what, str(model)],
        input=json.dumps(items),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def text_token_counts(model: Path, texts: list[str]) -> list[int]:
    """How many tokens each text is, as plain text."""
    return _ask("count", model, texts)


def compiled(model: Path, grammars: list[str]) -> list[bool]:
    """Whether llama.cpp's grammar sampler accepts each grammar."""
    return _ask("grammar", model, grammars)


def _count(llama_cpp: Any, vocab: Any, text: str) -> int:
    data = text.encode()
    buf = (llama_cpp.llama_token * (len(data) + 8))()
    return int(llama_cpp.llama_tokenize(vocab, data, len(data), buf, len(data) + 8, False, False))


def _compiles(llama_cpp: Any, vocab: Any, grammar: str) -> bool:
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    if sampler:
        llama_cpp.llama_sampler_free(sampler)
    return bool(sampler)


def main(argv: list[str]) -> int:
    import llama_cpp

    what, path = argv
    answer = {"count": _count, "grammar": _compiles}[what]
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(path.encode(), params)
    vocab = llama_cpp.llama_model_get_vocab(model)
    print(json.dumps([answer(llama_cpp, vocab, item) for item in json.loads(sys.stdin.read())]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
