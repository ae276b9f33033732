"""Model refs are validated before they reach file names, URLs or logs."""

from __future__ import annotations

import pytest

from worker.catalogue.refs import ModelRef, is_valid_ref, parse_ref
from worker.errors import BadRequest


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gemma3:270m", ModelRef("gemma3", "270m")),
        ("qwen3.6:27b", ModelRef("qwen3.6", "27b")),
        ("nomic-embed-text-v1.5:q4_k_m", ModelRef("nomic-embed-text-v1.5", "q4_k_m")),
        ("  llama3.2:3b \n", ModelRef("llama3.2", "3b")),
    ],
)
def test_valid_refs(text: str, expected: ModelRef) -> None:
    assert parse_ref(text) == expected
    assert str(parse_ref(text)) == text.strip()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("gemma3", "<id>:<tag>"),
        ("a:b:c", "<id>:<tag>"),
        ("../etc:passwd", "path separator"),
        ("..:x", "'..'"),
        ("gemma3:..", "'..'"),
        ("/etc/passwd:1", "file path"),
        ("~root:1", "file path"),
        ("a\\b:c", "path separator"),
        ("gemma3:270m\x00", "NUL"),
        ("gemma3:$(reboot)", "characters"),
        ("gemma3:270m;rm -rf /", "path separator"),
        ("gemma3:270m;rm -rf x", "characters"),
        ("gemma3:`id`", "characters"),
        ("gem ma:1", "characters"),
        ("gemma3:270m|cat", "characters"),
        (".hidden:1", "must start"),
        ("gemma3:tag.", "must start"),
        (":270m", "empty id"),
        ("gemma3:", "empty tag"),
        ("x" * 65 + ":1", "longer than 64"),
        ("gémma:1", "characters"),
    ],
)
def test_hostile_refs_are_rejected_with_a_reason(text: str, fragment: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_ref(text)
    assert fragment in caught.value.message
    assert caught.value.hint and "pendra catalogue" in caught.value.hint
    assert not is_valid_ref(text)


def test_file_stems_of_distinct_refs_never_collide() -> None:
    assert parse_ref("a-b:c").file_stem != parse_ref("a:b-c").file_stem
