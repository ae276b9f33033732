"""The Pendra API's catalogue shape (``{"data": [...]}``): read into the worker's models, and
written by the sandbox (pure)."""

from __future__ import annotations

import json
from typing import Any

from worker.catalogue import sample_catalogue_bytes
from worker.catalogue.api_shape import from_api, is_api_document, to_api
from worker.catalogue.parse import parse_catalogue

SHA_Q4 = "a" * 64
SHA_Q8 = "b" * 64

# As Pendra's public docs show it, with variants carrying the built-in backend's pinned GGUFs
# and other backends' ids.
DOCUMENTED: dict[str, Any] = {
    "data": [
        {
            "id": "qwen3.6:27b",
            "name": "Qwen 3.6 27B",
            "backend": "both",
            "capability": "chat",
            "parameter_size": "27B",
            "context_length": 32768,
            "licence": "apache-2.0",
            "variants": [
                {
                    "quantisation": "Q8_0",
                    "size_bytes": 28_000_000_000,
                    "gguf_url": "https://huggingface.co/x/y/resolve/main/q8.gguf",
                    "gguf_sha256": SHA_Q8,
                },
                {
                    "quantization": "Q4_K_M",
                    "size": 16_000_000_000,
                    "gguf_url": "https://huggingface.co/x/y/resolve/main/q4.gguf",
                    "gguf_sha256": SHA_Q4,
                },
                {"backend": "lmstudio", "id": "qwen/qwen3.6-27b"},
            ],
        },
        {
            "id": "qwen3.6:8b",
            "name": "Qwen 3.6 8B",
            "backend": "ollama",
            "capability": "chat",
            "parameter_size": "8B",
            "context_length": 262144,
            "licence": "apache-2.0",
            "variants": [],
        },
        {
            "id": "nomic-embed-text:v1.5",
            "name": "Nomic Embed Text v1.5",
            "backend": "pendra",
            "capability": "embedding",
            "parameter_size": "137M",
            "context_length": 2048,
            "licence": "apache-2.0",
            "variants": [
                {
                    "quantisation": "F16",
                    "hf_repo": "nomic-ai/nomic-embed-text-v1.5-GGUF",
                    "hf_file": "nomic-embed-text-v1.5.f16.gguf",
                    "gguf_sha256": SHA_Q8,
                }
            ],
        },
        {"id": "whisper:small", "backend": "speaches", "capability": "transcription",
         "variants": [{"speaches_id": "Systran/faster-whisper-small"}]},
        {"id": "deepseek-ocr:3b", "backend": "ollama", "capability": "ocr"},
        {"id": "flux:dev", "backend": "ollama", "capability": "image"},
        {"id": "tts-1:latest", "capability": "text-to-speech"},
        {"name": "no id"},
        {"id": "../etc:passwd", "capability": "chat"},
    ]
}  # fmt: skip


def test_documented_shape_is_read() -> None:
    assert is_api_document(DOCUMENTED)
    parsed = parse_catalogue(DOCUMENTED)
    by_id = {m.id: m for m in parsed.models}
    qwen = by_id["qwen3.6"]
    assert (qwen.name, qwen.task, qwen.license) == ("Qwen 3.6", "chat", "apache-2.0")
    assert [v.tag for v in qwen.variants] == ["27b", "27b-q8_0", "8b"]

    default = qwen.variant("27b")
    assert default is not None
    # The built-in backend's default build is Q4_K_M, whatever the order in the document.
    assert (default.quantisation, default.gguf_sha256, default.size_bytes) == (
        "Q4_K_M",
        SHA_Q4,
        16_000_000_000,
    )
    assert default.backends == ("pendra", "ollama", "lmstudio")
    assert default.ollama_tag == "qwen3.6:27b"  # the catalogue's ids are Ollama names
    assert default.lmstudio_id == "qwen/qwen3.6-27b"
    assert (default.parameters, default.context_length) == ("27B", 32768)

    q8 = qwen.variant("27b-q8_0")
    assert q8 is not None and q8.backends == ("pendra",) and q8.gguf_sha256 == SHA_Q8

    ollama_only = qwen.variant("8b")
    assert ollama_only is not None and ollama_only.backends == ("ollama",)
    assert not ollama_only.installs_into_pendra and ollama_only.context_length == 262144

    nomic = by_id["nomic-embed-text"].variants[0]
    assert by_id["nomic-embed-text"].task == "embedding"
    assert nomic.hf_source and nomic.installs_into_pendra and nomic.backends == ("pendra",)

    assert by_id["whisper"].variants[0].speaches_id == "Systran/faster-whisper-small"
    assert by_id["deepseek-ocr"].task == "chat"  # OCR models read images through chat
    assert by_id["flux"].task == "image" and by_id["flux"].variants[0].ollama_tag == "flux:dev"

    skipped = "\n".join(parsed.warnings)
    assert "'tts-1:latest'" in skipped and "text-to-speech" in skipped
    assert "no 'id'" in skipped and "'../etc:passwd'" in skipped
    assert set(by_id) == {"qwen3.6", "nomic-embed-text", "whisper", "deepseek-ocr", "flux"}


def test_installs_and_finds_by_the_refs_users_type() -> None:
    from worker.catalogue import Catalogue
    from worker.installs.manager import choose_backend

    catalogue = Catalogue(models=parse_catalogue(DOCUMENTED).models)
    _, variant = catalogue.find("qwen3.6:27b")
    assert choose_backend(variant, ["pendra", "ollama"], None) == "pendra"
    assert choose_backend(variant, ["ollama"], None) == "ollama"
    _, ollama_only = catalogue.find("qwen3.6:8b")
    assert choose_backend(ollama_only, ["pendra", "ollama"], None) == "ollama"


def test_bare_ids_get_the_latest_tag_and_one_bad_entry_never_spoils_the_rest() -> None:
    parsed = parse_catalogue(
        {
            "data": [
                {"id": "deepseek-v4-flash", "backend": "ollama", "capability": "chat"},
                {"id": "x:1", "capability": "chat", "variants": "not a list"},
                {
                    "id": "y:1",
                    "capability": "chat",
                    "variants": [{"gguf_url": "ftp://x", "gguf_sha256": SHA_Q4}],
                },
                {"id": "y:2", "backend": "ollama", "capability": "chat"},
            ]
        }
    )
    models = {m.id: m for m in parsed.models}
    assert models["deepseek-v4-flash"].variants[0].tag == "latest"
    assert models["deepseek-v4-flash"].variants[0].ollama_tag == "deepseek-v4-flash:latest"
    assert "x" in models  # no variants: listed, installs nowhere
    # The bad entry is skipped alone: its sibling of the same model stays.
    assert [v.tag for v in models["y"].variants] == ["2"]
    assert any("'y:1'" in w and "gguf_url" in w for w in parsed.warnings)


def test_the_sandbox_shape_round_trips_through_the_apis() -> None:
    document = json.loads(sample_catalogue_bytes())
    ours = parse_catalogue(document)
    api = to_api(document["models"])
    assert is_api_document(api) and not is_api_document(document)
    theirs = parse_catalogue(api)
    assert not theirs.warnings
    assert [m.id for m in theirs.models] == [m.id for m in ours.models]
    for mine, read in zip(ours.models, theirs.models, strict=True):
        assert read.variants == mine.variants
        assert (read.task, read.license, read.family) == (mine.task, mine.license, mine.family)
    entry = next(e for e in api["data"] if e["id"] == "gemma3:270m")
    assert entry["backend"] == "both" and entry["capability"] == "chat"
    assert entry["licence"] == "Gemma Terms of Use" and entry["parameter_size"] == "270M"


def test_from_api_never_raises_on_junk() -> None:
    for junk in ([None, 1, "x", [], {"id": 5}, {"id": "a:b:c"}], [{"id": "a:b", "variants": [1]}]):
        models, warnings = from_api(junk)
        assert isinstance(models, list) and isinstance(warnings, list)
