"""Hugging Face refs as people type and paste them (pure)."""

from __future__ import annotations

import pytest

from worker.catalogue.refs import ModelRef
from worker.errors import BadRequest
from worker.hf.refs import HFRef, looks_like_hf_ref, parse_hf_ref, suggest_hf
from worker.installs.refs import parse_install_ref

REPO = "bartowski/Llama-3.2-3B-Instruct-GGUF"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"hf.co/{REPO}", HFRef(REPO)),
        (f"hf.co/{REPO}:Q4_K_M", HFRef(REPO, "Q4_K_M")),
        (f"hf.co/{REPO}:q8_0", HFRef(REPO, "q8_0")),
        (f"hf.co/{REPO}:latest", HFRef(REPO)),
        (f"huggingface.co/{REPO}:IQ4_XS", HFRef(REPO, "IQ4_XS")),
        (f"https://huggingface.co/{REPO}", HFRef(REPO)),
        (f"https://www.huggingface.co/{REPO}/", HFRef(REPO)),
        (f"HF.CO/{REPO}", HFRef(REPO)),
        (f"hf://{REPO}:Q5_K_M", HFRef(REPO, "Q5_K_M")),
        (f"hf://hf.co/{REPO}", HFRef(REPO)),
        (f"https://huggingface.co/{REPO}/tree/main", HFRef(REPO)),
        (f"https://huggingface.co/{REPO}/tree/v1.0", HFRef(REPO, revision="v1.0")),
        (
            f"https://huggingface.co/{REPO}/blob/main/Llama-3.2-3B-Instruct-Q6_K.gguf",
            HFRef(REPO, file="Llama-3.2-3B-Instruct-Q6_K.gguf"),
        ),
        (
            f"https://huggingface.co/{REPO}/resolve/abc123/Q4_K_M/m-00001-of-00002.gguf"
            "?download=true",
            HFRef(REPO, revision="abc123", file="Q4_K_M/m-00001-of-00002.gguf"),
        ),
    ],
)
def test_accepted_spellings(text: str, expected: HFRef) -> None:
    assert looks_like_hf_ref(text)
    assert parse_hf_ref(text) == expected


def test_canonical_forms() -> None:
    ref = parse_hf_ref(f"https://huggingface.co/{REPO}")
    assert str(ref) == f"hf.co/{REPO}" and ref.base == f"hf.co/{REPO}"
    assert ref.with_quant("Q4_K_M") == f"hf.co/{REPO}:Q4_K_M"
    assert ref.url("https://huggingface.co/") == f"https://huggingface.co/{REPO}"
    assert (ref.owner, ref.name) == ("bartowski", "Llama-3.2-3B-Instruct-GGUF")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("hf.co/bartowski", "does not name OWNER/REPO"),
        ("hf.co//repo", "does not name OWNER/REPO"),
        ("hf.co/../etc:passwd", "not a Hugging Face name"),
        ("hf.co/a/..", "not a Hugging Face name"),
        ("hf.co/a--b/c", "not a Hugging Face name"),
        ("hf.co/-a/c", "not a Hugging Face name"),
        (f"hf.co/{REPO}:", "quantisation after ':' is empty"),
        (f"hf.co/{REPO}:Q4;rm", "not a quantisation name"),
        (f"hf.co/{REPO}:..", "not a quantisation name"),
        ("hf.co/a/b\x00c", "NUL"),
        ("hf.co/a/b c", "white space"),
        ("hf.co/a\\b/c", "backslash"),
        ("hf.co/ä/b", "non-ASCII"),
        ("https://evil.example/a/b", "not on hf.co"),
        ("https://hf.co:8443/a/b", "no port"),
        ("https://user@hf.co/a/b", "no port or user name"),
        (f"https://huggingface.co/{REPO}/blob/main/README.md", "not a GGUF file"),
        (f"https://huggingface.co/{REPO}/blob/main/../x.gguf", "not a plain path"),
        (f"https://huggingface.co/{REPO}/blob/main", "names no file"),
        (f"https://huggingface.co/{REPO}/tree/main/sub", "folder URL"),
        (f"https://huggingface.co/{REPO}/commits/main", "only /tree/REV"),
        (f"https://huggingface.co/{REPO}/tree/..", "not a branch"),
        ("hf.co/" + "a" * 97 + "/b", "longer than 96"),
    ],
)
def test_malformed_refs_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_hf_ref(text)
    assert why in caught.value.message
    assert "hf.co/OWNER/REPO" in (caught.value.hint or "")


def test_what_counts_as_a_hugging_face_ref() -> None:
    assert not looks_like_hf_ref("gemma3:270m")
    assert not looks_like_hf_ref("bartowski/Llama:Q4_K_M")
    assert not looks_like_hf_ref("hf.co")  # no path: not a repository
    assert looks_like_hf_ref("hf://x")


def test_install_refs_are_either_kind_and_owner_repo_gets_a_hint() -> None:
    assert parse_install_ref("gemma3:270m") == ModelRef("gemma3", "270m")
    assert parse_install_ref("llama3.2") == ModelRef("llama3.2", "latest")  # as in Ollama
    assert parse_install_ref(f" hf.co/{REPO}:Q4_K_M ") == HFRef(REPO, "Q4_K_M")
    with pytest.raises(BadRequest) as caught:
        parse_install_ref(f"{REPO}:Q4_K_M")
    assert caught.value.hint == f"for a Hugging Face repository, write hf.co/{REPO}:Q4_K_M"
    with pytest.raises(BadRequest) as caught:
        parse_install_ref("../../etc:passwd")
    assert caught.value.hint and "hf.co" not in caught.value.hint
    assert suggest_hf("a/b/c") is None and suggest_hf("/etc/passwd") is None
