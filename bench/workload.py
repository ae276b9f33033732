"""The request the decode benches send, identical for the worker and the raw baseline.

Gemma 3 270M is a base model without a chat template; the worker wraps the message in Gemma's
turn format, and the raw baseline tokenizes the same turn text. Counting keeps a base model going
(greedy decoding of a count rarely hits EOS), so both sides decode about the same number of tokens.
"""

from __future__ import annotations

from typing import Any

MODEL_ID = "bench-model"
PROMPT = "Count from one to five hundred, separated by commas: 1, 2, 3, 4, 5, 6, 7,"
RAW_PROMPT = f"<start_of_turn>user\n{PROMPT}<end_of_turn>\n<start_of_turn>model\n"


def chat_body(max_tokens: int, prompt: str = PROMPT) -> dict[str, Any]:
    return {
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream_options": {"include_usage": True},
    }
