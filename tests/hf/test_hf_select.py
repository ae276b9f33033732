"""Choosing the quantisation, split parts and projector from a repository's file list (pure)."""

from __future__ import annotations

import pytest

from worker.errors import ModelNotFound
from worker.hf.select import RepoFile, choose, quant_label, repo_ggufs

REPO = "owner/Model-GGUF"


def files(*paths: str) -> list[RepoFile]:
    return [RepoFile(p, 1000 + i, f"{i:064x}") for i, p in enumerate(paths)]


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("Llama-3.2-3B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("model.q8_0.gguf", "Q8_0"),
        ("gemma-3-4b-it-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"),
        ("ggml-model-f16.gguf", "F16"),
        ("Qwen3-8B-BF16.gguf", "BF16"),
        ("x-IQ2_XXS.gguf", "IQ2_XXS"),
        ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),
        ("Q4_K_M/Qwen3-235B-A22B-00001-of-00003.gguf", "Q4_K_M"),
        ("qwen3-8b.gguf", None),  # "q" followed by "w" is not a quantisation
        ("Qwen2.5-Coder-7B.gguf", None),
    ],
)
def test_quantisation_from_the_name(path: str, label: str | None) -> None:
    assert quant_label(path) == label


def test_default_is_q4_k_m() -> None:
    found = repo_ggufs(files("M-Q8_0.gguf", "M-Q4_K_M.gguf", "M-F16.gguf", "README.md"))
    choice = choose(found, REPO)
    assert choice.build.label == "Q4_K_M" and choice.note is None and choice.mmproj is None
    assert found.labels == ["Q4_K_M", "Q8_0", "F16"]


def test_without_q4_k_m_the_closest_is_taken_and_said() -> None:
    found = repo_ggufs(files("M-Q8_0.gguf", "M-Q5_K_M.gguf", "M-F16.gguf"))
    choice = choose(found, REPO)
    assert choice.build.label == "Q5_K_M"
    assert choice.note and "no Q4_K_M" in choice.note and "Q5_K_M" in choice.note
    assert "Q8_0" in choice.note


def test_names_without_a_quantisation_take_the_smallest() -> None:
    listed = [RepoFile("big.gguf", 5000, "a" * 64), RepoFile("small.gguf", 10, "b" * 64)]
    choice = choose(repo_ggufs(listed), REPO)
    assert choice.build.first.path == "small.gguf" and choice.build.name == "small"


def test_asked_quantisation_any_case_and_missing_one_lists_the_others() -> None:
    found = repo_ggufs(files("M-Q8_0.gguf", "M-Q4_K_M.gguf"))
    assert choose(found, REPO, quant="q8_0").build.label == "Q8_0"
    with pytest.raises(ModelNotFound) as caught:
        choose(found, REPO, quant="Q5_K_M")
    assert caught.value.message == f"hf.co/{REPO} has no Q5_K_M GGUF."
    assert "it has: Q4_K_M, Q8_0" in (caught.value.hint or "")
    assert f"pendra pull hf.co/{REPO}:Q4_K_M" in (caught.value.hint or "")


def test_split_parts_are_one_build_in_order_and_incomplete_splits_are_left_out() -> None:
    found = repo_ggufs(
        files(
            "Q4_K_M/M-Q4_K_M-00002-of-00002.gguf",
            "Q4_K_M/M-Q4_K_M-00001-of-00002.gguf",
            "Q8_0/M-Q8_0-00001-of-00003.gguf",  # parts 2 and 3 missing
            "M-Q2_K.gguf",
        )
    )
    assert [b.name for b in found.builds] == ["Q2_K", "Q4_K_M"]
    split = next(b for b in found.builds if b.split)
    assert [p.path for p in split.parts] == [
        "Q4_K_M/M-Q4_K_M-00001-of-00002.gguf",
        "Q4_K_M/M-Q4_K_M-00002-of-00002.gguf",
    ]
    assert split.size == 1000 + 1001
    assert found.incomplete == ("Q8_0/M-Q8_0 (1 of 3 parts)",)
    assert choose(found, REPO).build == split


def test_projector_goes_beside_a_vision_model_f16_first() -> None:
    found = repo_ggufs(
        files("gemma-3-4b-it-Q4_K_M.gguf", "mmproj-model-Q8_0.gguf", "mmproj-model-f16.gguf")
    )
    assert [b.name for b in found.builds] == ["Q4_K_M"]  # projectors are never a model
    choice = choose(found, REPO)
    assert choice.mmproj is not None and choice.mmproj.path == "mmproj-model-f16.gguf"


def test_an_exact_file_and_a_repo_without_ggufs() -> None:
    found = repo_ggufs(files("M-Q8_0.gguf", "M-Q4_K_M.gguf"))
    assert choose(found, REPO, file="M-Q8_0.gguf").build.label == "Q8_0"
    with pytest.raises(ModelNotFound, match=r"no GGUF file 'x\.gguf'"):
        choose(found, REPO, file="x.gguf")
    with pytest.raises(ModelNotFound, match="has no GGUF model file") as caught:
        choose(repo_ggufs(files("model.safetensors", "config.json")), REPO)
    assert "-GGUF" in (caught.value.hint or "")
