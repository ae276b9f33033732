"""The modelstore side of Hugging Face installs: folders, names, finding and removing installs."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import InstallError, ModelNotFound
from worker.hf.resolve import HFFile, ResolvedHF
from worker.installs.hf import (
    find_installs,
    install_folder,
    install_resolved,
    remove_installs,
    same_model,
)
from worker.modelstore.naming import is_model_file, sidecar_path, split_parts, stem_id
from worker.modelstore.sidecar import Sidecar, SidecarFile, write_sidecar


def resolved(*names: str, quant: str = "Q4_K_M") -> ResolvedHF:
    files = tuple(HFFile(n, "a" * 64, 10, f"http://127.0.0.1:9/x/{n}") for n in names)
    return ResolvedHF(
        ref=f"hf.co/o/r:{quant}", repo="o/r", revision="c" * 40, quant=quant, parts=files
    )


def test_same_model() -> None:
    assert same_model("hf.co/o/r", "hf.co/o/r:Q4_K_M")
    assert same_model("hf.co/O/R:q4_k_m", "hf.co/o/r:Q4_K_M")
    assert same_model("https://huggingface.co/o/r", "hf.co/o/r:Q8_0")
    assert not same_model("hf.co/o/r:Q8_0", "hf.co/o/r:Q4_K_M")
    assert not same_model("hf.co/o/other", "hf.co/o/r:Q4_K_M")
    assert not same_model("gemma3:270m", "hf.co/o/r:Q4_K_M")
    assert same_model("gemma3:270m", "gemma3:270m") and not same_model("hf.co/o/r", "g:1")


def test_folder_per_install_inside_the_modelstore(tmp_path: Path) -> None:
    folder = install_folder(tmp_path, resolved("m.gguf"))
    assert folder == tmp_path / "hf.co--o--r--Q4_K_M"
    odd = install_folder(tmp_path, resolved("m.gguf", quant="a b/c"))
    assert odd.parent == tmp_path and "/" not in odd.name and " " not in odd.name


async def test_names_that_are_not_plain_gguf_names_are_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    for bad in (".hidden.gguf", "x.gguf.exe", "a b.gguf", "..gguf"):
        with pytest.raises(InstallError, match="not a plain GGUF file name"):
            await install_resolved(models, resolved(bad), lambda *a: None)
    with pytest.raises(InstallError, match="same name"):
        await install_resolved(models, resolved("m.gguf", "m.gguf"), lambda *a: None)
    assert not models.exists()


def test_split_parts_and_projectors_are_not_models_by_themselves(tmp_path: Path) -> None:
    first = tmp_path / "M-Q4_K_M-00001-of-00003.gguf"
    assert is_model_file(first.name) and stem_id(first) == "M-Q4_K_M"
    assert not is_model_file("M-Q4_K_M-00002-of-00003.gguf")
    assert not is_model_file("mmproj-model-f16.gguf")
    assert [p.name for p in split_parts(first)] == [
        "M-Q4_K_M-00001-of-00003.gguf",
        "M-Q4_K_M-00002-of-00003.gguf",
        "M-Q4_K_M-00003-of-00003.gguf",
    ]
    assert split_parts(tmp_path / "single.gguf") == [tmp_path / "single.gguf"]


def _install(models: Path, quant: str, *, complete: bool = True) -> Path:
    folder = models / f"hf.co--o--r--{quant}"
    folder.mkdir(parents=True)
    gguf = folder / f"r-{quant}.gguf"
    if complete:
        gguf.write_bytes(b"GGUF")
    (folder / "mmproj-F16.gguf").write_bytes(b"GGUF")
    (folder / ".r-part.gguf.part").write_bytes(b"partial")
    write_sidecar(
        sidecar_path(gguf),
        Sidecar(
            ref=f"hf.co/o/r:{quant}",
            files=(
                SidecarFile(gguf.name, "a" * 64, 4),
                SidecarFile("mmproj-F16.gguf", "b" * 64, 4),
                SidecarFile("r-part.gguf", "c" * 64, 4),
            ),
        ),
    )
    return folder


def test_find_and_remove_complete_and_interrupted_installs(tmp_path: Path) -> None:
    models = tmp_path / "models"
    q4 = _install(models, "Q4_K_M")
    q8 = _install(models, "Q8_0", complete=False)  # interrupted before part 1 landed
    (models / "mine.txt").write_text("a file of the user's own")

    found = {r.ref: r for r in find_installs(models, "hf.co/o/r")}
    assert set(found) == {"hf.co/o/r:Q4_K_M", "hf.co/o/r:Q8_0"}
    assert found["hf.co/o/r:Q4_K_M"].complete and not found["hf.co/o/r:Q8_0"].complete

    with pytest.raises(InstallError, match=r"2 quantisations of hf\.co/o/r are installed"):
        remove_installs(models, "hf.co/o/r")
    removed = remove_installs(models, "hf.co/o/r:q8_0")
    assert ".r-part.gguf.part" in {p.name for p in removed}
    assert not q8.exists() and q4.exists()
    remove_installs(models, "hf.co/o/r")  # one left: the repository alone names it
    assert not q4.exists() and (models / "mine.txt").exists()
    with pytest.raises(ModelNotFound):
        remove_installs(models, "hf.co/o/r")
