"""Parsing the catalogue document entry by entry (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.catalogue import sample_catalogue_bytes
from worker.catalogue.parse import (
    CatalogueError,
    parse_catalogue,
    parse_catalogue_bytes,
    resolve_urls,
)

SHA = "a" * 64


def entry(model_id: str = "m", **variant: Any) -> dict[str, Any]:
    base = {
        "tag": "1b",
        "size_bytes": 10,
        "backends": ["pendra"],
        "gguf_url": "/f/x.gguf",
        "gguf_sha256": SHA,
    }
    base.update(variant)
    return {"id": model_id, "name": "M", "task": "chat", "variants": [base]}


def test_sample_catalogue_is_valid_and_complete() -> None:
    parsed = parse_catalogue_bytes(sample_catalogue_bytes())
    assert parsed.warnings == ()
    by_id = {m.id: m for m in parsed.models}
    gemma = by_id["gemma3"].variant("270m")
    assert gemma is not None
    assert gemma.size_bytes == 253113024
    assert gemma.gguf_sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert gemma.gguf_url == "/files/gemma-3-270m-q4_k_m.gguf"
    assert gemma.installs_into_pendra
    tasks = {m.task for m in parsed.models}
    assert tasks == {"chat", "embedding", "image", "transcription"}
    nomic = by_id["nomic-embed-text-v1.5"]
    assert {v.quantisation for v in nomic.variants} == {"F16", "Q4_K_M"}
    assert all(v.speaches_id for v in by_id["whisper"].variants)
    # Every variant names at least one backend and says how that backend installs it.
    for model in parsed.models:
        for variant in model.variants:
            assert variant.backends
            if "ollama" in variant.backends:
                assert variant.ollama_tag
            if "lmstudio" in variant.backends:
                assert variant.lmstudio_id
            if "pendra" in variant.backends:
                assert variant.installs_into_pendra


def test_malformed_entries_are_skipped_with_warnings() -> None:
    doc = {
        "version": 1,
        "models": [
            entry("good"),
            entry("bad-sha", gguf_sha256="xyz"),
            {"id": "no-variants", "task": "chat", "variants": []},
            {"id": "../evil", "task": "chat", "variants": [{"tag": "1"}]},
            {"id": "bad-task", "task": "dance", "variants": [{"tag": "1"}]},
            entry("bad-url", gguf_url="file:///etc/passwd"),
            entry("neg", size_bytes=-1),
            "not an object",
            entry("good"),
        ],
    }
    parsed = parse_catalogue(doc)
    assert [m.id for m in parsed.models] == ["good"]
    assert len(parsed.warnings) == 8
    assert any("bad-sha" in w and "gguf_sha256" in w for w in parsed.warnings)
    assert any("duplicate" in w for w in parsed.warnings)


def test_unknown_keys_are_ignored() -> None:
    doc = {"version": 1, "extra": True, "models": [{**entry(), "new_field": [1, 2]}]}
    doc["models"][0]["variants"][0]["future"] = {"x": 1}
    assert [m.id for m in parse_catalogue(doc).models] == ["m"]


def test_sha256_is_normalised_to_lower_case() -> None:
    parsed = parse_catalogue({"version": 1, "models": [entry(gguf_sha256="A" * 64)]})
    assert parsed.models[0].variants[0].gguf_sha256 == "a" * 64


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"<html>oops</html>", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"version": 1}', "no 'data' list"),
        (b'{"version": 99, "models": []}', "version 99"),
        (json.dumps({"version": 1, "models": [{"id": 1}, {"id": 2}]}).encode(), "no valid entry"),
    ],
)
def test_entirely_malformed_documents_are_errors(data: bytes, fragment: str) -> None:
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue_bytes(data)
    assert fragment in caught.value.message


def test_an_empty_catalogue_is_valid() -> None:
    assert parse_catalogue({"version": 1, "models": []}).models == ()


def test_relative_urls_are_appended_to_the_api_url() -> None:
    parsed = parse_catalogue(
        {"version": 1, "models": [entry("a"), entry("b", gguf_url="https://hf.co/x.gguf")]}
    )
    resolved = resolve_urls(parsed.models, "http://127.0.0.1:8787/")
    assert resolved[0].variants[0].gguf_url == "http://127.0.0.1:8787/f/x.gguf"
    assert resolved[1].variants[0].gguf_url == "https://hf.co/x.gguf"
