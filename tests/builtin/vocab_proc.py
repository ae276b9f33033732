"""Count tokens with a GGUF's own vocabulary, in a child process (tests' independent reference).

    python tests/builtin/vocab_proc.py MODEL.gguf '["text", …]'  → JSON list of token counts

Texts are tokenized as plain text (no special-token parsing, no BOS), the way a user's message
must be. A separate process, because llama.cpp is never loaded into the test process itself
(runtime.md §7).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def text_token_counts(model: Path, texts: list[str]) -> list[int]:
    result = subprocess.run(
        [sys.executable, __file__, str(model), json.dumps(texts)],
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
    counts = []
    for text in json.loads(argv[1]):
        data = text.encode()
        buf = (llama_cpp.llama_token * (len(data) + 8))()
        n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, len(data) + 8, False, False)
        counts.append(n)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
