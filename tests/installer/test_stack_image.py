"""The worker image's inputs, without a daemon: the ELF reader on this installation's real
llama.cpp libraries, wheels packed back from installed distributions (exact, reproducible,
installable with ``--no-index``), and the checks a base image must pass."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from installer import elf, stack_image
from installer.stack_image import BaseFacts, ImageError, NativeNeeds, check_base
from installer.stack_wheelhouse import (
    WheelhouseError,
    build_wheelhouse,
    fingerprint,
    installed,
    repack,
    requirement_closure,
    wheel_filename,
)


def _llama_libs() -> list[Path]:
    dist = installed("llama-cpp-python")
    return [
        Path(str(dist.locate_file(f)))
        for f in dist.files or []
        if f.name.endswith(".so") and not Path(str(dist.locate_file(f))).is_symlink()
    ]


def test_elf_reader_on_the_installed_llama_cpp() -> None:
    libs = {path.name: path for path in _llama_libs()}
    assert "libggml-cpu.so" in libs or any(n.startswith("libggml-cpu") for n in libs)
    needed = {soname for path in libs.values() for soname in elf.needed_libraries(path)}
    assert "libc.so.6" in needed and "libgomp.so.1" in needed
    versions = [elf.glibc_requirement(path) for path in libs.values()]
    assert all(v is None or v >= (2, 2) for v in versions) and any(versions)


def test_elf_reader_refuses_what_is_not_elf(tmp_path: Path) -> None:
    text = tmp_path / "lib.so"
    text.write_text("not an ELF file")
    assert not elf.is_elf(text)
    with pytest.raises(elf.NotElf):
        elf.needed_libraries(text)
    assert elf.glibc_requirement(text) is None


def test_closure_is_what_the_worker_runs_and_nothing_for_tests() -> None:
    names = {d.metadata["Name"].lower().replace("_", "-") for d in requirement_closure()}
    assert {"pendra-worker", "llama-cpp-python", "aiohttp", "textual", "numpy"} <= names
    assert not names & {"pytest", "hypothesis", "openai", "gguf", "ruff", "pip"}


def test_repacked_wheel_is_exact_and_reproducible(tmp_path: Path) -> None:
    dist = installed("idna")
    first = repack(dist, tmp_path)
    assert first.name == wheel_filename(dist) == f"idna-{dist.version}-py3-none-any.whl"
    data = first.read_bytes()
    again = repack(dist, tmp_path)
    assert again.read_bytes() == data  # fixed timestamps, sorted members
    with zipfile.ZipFile(first) as archive:
        names = archive.namelist()
        record = archive.read(f"idna-{dist.version}.dist-info/RECORD").decode()
        for line in record.splitlines():
            path, digest, size = line.rsplit(",", 2)
            if not digest:
                continue
            member = archive.read(path)
            assert len(member) == int(size)
            expected = hashlib.sha256(member).digest()
            assert digest == "sha256=" + base64.urlsafe_b64encode(expected).rstrip(b"=").decode()
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.endswith(("INSTALLER", "REQUESTED", "direct_url.json"))]


def test_repacked_wheels_install_without_an_index(tmp_path: Path) -> None:
    house = tmp_path / "house"
    house.mkdir()
    for name in ("idna", "typing-extensions"):
        repack(installed(name), house)
    target = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
        + ["--disable-pip-version-check", "--target", str(target)]
        + [str(p) for p in house.glob("*.whl")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    check = subprocess.run(
        [sys.executable, "-c", "import idna, typing_extensions; print(idna.__file__)"],
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.stdout.startswith(str(target)), check.stderr


def test_an_edited_installation_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = installed("idna")
    real = Path.read_bytes

    def edited(self: Path) -> bytes:
        data = real(self)
        return data + b"# edited\n" if self.name == "core.py" else data

    monkeypatch.setattr(Path, "read_bytes", edited)
    with pytest.raises(WheelhouseError, match="differs from what pip installed"):
        repack(dist, tmp_path)


def test_wheelhouse_reuses_its_cache(tmp_path: Path) -> None:
    dists = [installed("idna"), installed("mdurl")]
    cache = tmp_path / "cache"
    older = cache / ("idna-" + "0" * 20)  # an earlier install of idna: replaced
    other = cache / ("idna-plugin-" + "0" * 20)  # another distribution: kept
    for slot in (older, other):
        slot.mkdir(parents=True)
    first = build_wheelhouse(tmp_path / "a", cache=cache, dists=dists)
    assert not older.exists() and other.exists()
    assert {w.how for w in first.wheels} == {"repacked"}
    second = build_wheelhouse(tmp_path / "b", cache=cache, dists=dists)
    assert {w.how for w in second.wheels} == {"cached"}
    assert first.fingerprint == second.fingerprint
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(
        w.path.name for w in second.wheels
    )
    assert fingerprint(dists[0]) == fingerprint(installed("idna"))


def test_native_needs_of_this_installation() -> None:
    needs = stack_image.native_needs(requirement_closure())
    assert "libgomp.so.1" in needs.sonames and needs.sonames["libgomp.so.1"].is_file()
    assert "libc.so.6" not in needs.sonames and not any(
        name.startswith("libggml") or name.startswith("libllama") for name in needs.sonames
    )
    assert needs.glibc >= (2, 17) and needs.glibc_reason


def test_manylinux_tags_give_the_oldest_glibc_they_accept() -> None:
    glibc = stack_image._manylinux_glibc
    assert glibc(["manylinux2014_x86_64", "manylinux_2_17_x86_64"]) == (2, 17)
    assert glibc(["manylinux_2_28_x86_64", "manylinux_2_34_x86_64"]) == (2, 28)
    assert glibc(["manylinux1_x86_64"]) == (2, 5)
    assert glibc(["linux_x86_64", "any"]) is None


NEEDS = NativeNeeds(glibc=(2, 34), glibc_reason="cryptography 50", sonames={})
HERE = tuple(sys.version_info[:2])


def facts(**kw: object) -> BaseFacts:
    values: dict[str, object] = {
        "python": HERE,
        "glibc": (2, 36),
        "libs": {"libgomp.so.1": False, "libstdc++.so.6": True},
        "venv": True,
    }
    values.update(kw)
    return BaseFacts(**values)  # type: ignore[arg-type]


def test_a_good_base_needs_only_its_missing_libraries() -> None:
    assert check_base("debian", facts(), NEEDS) == ["libgomp.so.1"]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"python": (3, 9)}, "has Python 3.9, but this installation runs"),
        ({"venv": False}, "without venv/ensurepip"),
        ({"glibc": None}, "no glibc"),
        ({"glibc": (2, 31)}, "glibc 2.31, but cryptography 50 needs glibc 2.34"),
    ],
)
def test_a_base_that_cannot_run_these_wheels_is_refused(kw: dict, message: str) -> None:
    with pytest.raises(ImageError, match=message) as err:
        check_base("old-image", facts(**kw), NEEDS)
    assert err.value.hint


def test_default_base_image_follows_this_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PENDRA_BASE_IMAGE", raising=False)
    assert stack_image.default_base_image() == f"python:{HERE[0]}.{HERE[1]}-slim"
    monkeypatch.setenv("PENDRA_BASE_IMAGE", "registry.local/python:3.11")
    assert stack_image.default_base_image() == "registry.local/python:3.11"


def test_glibc_version_text() -> None:
    assert stack_image.parse_glibc("glibc 2.36") == (2, 36)
    assert stack_image.parse_glibc(None) is None
