"""llama.cpp's messages about a request's grammar quote the request (the grammar is built from
its JSON schema or tools): they never reach the worker's log, whether they come through its log
callback or straight to stderr (which the worker logs too).

Real llama.cpp in a child process (it is never loaded into the test process itself), with the
worker's own routing of llama.cpp's log into Python logging, on the tiny GGUF's vocabulary.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

CHILD = r"""
import logging, sys
import llama_cpp
from worker.backends.pendra import runtime

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")
runtime.init_backend()
params = llama_cpp.llama_model_default_params()
params.vocab_only = True
model = llama_cpp.llama_model_load_from_file(sys.argv[1].encode(), params)
vocab = llama_cpp.llama_model_get_vocab(model)

def grammar(marker):
    # a JSON-schema-like rule quoting the request, and an escape llama.cpp refuses
    return 'root ::= "\\"' + marker + '\\"" "\\d"'

inside = bool(runtime.compile_grammar(vocab, grammar("PATIENT-SECRET-INSIDE")))
plain = grammar("PATIENT-SECRET-OUTSIDE").encode()
outside = bool(llama_cpp.llama_sampler_init_grammar(vocab, plain, b"root"))
sys.stderr.write("stderr still works\n")
print(inside, outside, runtime.native_lines_dropped())
"""


def test_a_refused_grammar_leaves_no_trace_of_the_request(tiny_chat_gguf: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tiny_chat_gguf)],
        capture_output=True,
        text=True,
        timeout=100,
        check=True,
    )
    inside, outside, dropped = result.stdout.split()
    assert (inside, outside) == ("False", "False")  # llama.cpp refused both grammars
    # Compiled plainly, llama.cpp's error quotes the grammar: what compile_grammar is for.
    assert "PATIENT-SECRET-OUTSIDE" in result.stderr
    # Through compile_grammar nothing of the request reaches stderr or the log callback (whose
    # lines are counted instead), and stderr works again afterwards.
    assert "PATIENT-SECRET-INSIDE" not in result.stderr
    assert int(dropped) > 0
    assert "stderr still works" in result.stderr
