"""The resumable, SHA-256-pinned download against a real loopback HTTP server."""

from __future__ import annotations

import errno
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from install_rangeserver import RangeServer, make_blob

from worker.errors import InstallError
from worker.installs import download
from worker.installs.download import (
    download_verified,
    parse_content_range,
    partial_path,
    request_headers,
    strong_validator,
    validator_path,
)
from worker.installs.filelock import FileLock

SIZE = 3 * 1024 * 1024 + 12345


@pytest.fixture
async def server() -> AsyncIterator[RangeServer]:
    srv = await RangeServer().start()
    yield srv
    await srv.stop()


@pytest.fixture
def blob(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "source.bin"
    return path, make_blob(path, SIZE)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_download_hashes_while_streaming_and_renames_atomically(
    server: RangeServer, blob: tuple[Path, str], tmp_path: Path
) -> None:
    source, sha = blob
    url = server.add("m.gguf", source)
    dest = tmp_path / "store" / "m.gguf"
    phases: list[str] = []
    result = await download_verified(
        url, dest, sha256=sha, size=SIZE, progress=lambda p, d, t: phases.append(p)
    )
    assert result.sha256 == sha and result.size == SIZE and result.resumed_from == 0
    assert dest.read_bytes() == source.read_bytes()
    assert listing(dest.parent) == ["m.gguf"]  # no partial, validator or lock left behind
    assert phases[0] == "downloading" and phases[-1] == "verifying"
    assert server.requests[0]["Accept-Encoding"] == "identity"


async def test_interrupted_download_resumes_with_range_and_if_range(
    server: RangeServer, blob: tuple[Path, str], tmp_path: Path
) -> None:
    source, sha = blob
    url = server.add("m.gguf", source, cut_after=1024 * 1024 + 7)
    dest = tmp_path / "m.gguf"
    with pytest.raises(InstallError) as caught:
        await download_verified(url, dest, sha256=sha, size=SIZE)
    assert "resumes" in (caught.value.hint or "")
    have = partial_path(dest).stat().st_size
    assert 0 < have < SIZE
    assert not dest.exists()
    assert json.loads(validator_path(dest).read_text())["etag"] == '"v1"'

    result = await download_verified(url, dest, sha256=sha, size=SIZE)
    assert result.resumed_from == have
    assert server.requests[-1]["Range"] == f"bytes={have}-"
    assert server.requests[-1]["If-Range"] == '"v1"'
    assert dest.read_bytes() == source.read_bytes()
    assert not [n for n in listing(tmp_path) if n.startswith(".")]


async def test_changed_file_restarts_from_zero(
    server: RangeServer, blob: tuple[Path, str], tmp_path: Path
) -> None:
    source, sha = blob
    url = server.add("m.gguf", source, cut_after=500_000)
    dest = tmp_path / "m.gguf"
    with pytest.raises(InstallError):
        await download_verified(url, dest, sha256=sha, size=SIZE)
    server.files["m.gguf"].etag = '"v2"'  # If-Range no longer matches: the server sends it all
    result = await download_verified(url, dest, sha256=sha, size=SIZE)
    assert result.sha256 == sha
    assert dest.read_bytes() == source.read_bytes()


async def test_server_ignoring_range_restarts_cleanly(
    server: RangeServer, blob: tuple[Path, str], tmp_path: Path
) -> None:
    source, sha = blob
    url = server.add("m.gguf", source, cut_after=700_000)
    dest = tmp_path / "m.gguf"
    with pytest.raises(InstallError):
        await download_verified(url, dest, sha256=sha, size=SIZE)
    server.files["m.gguf"].ignore_range = True
    await download_verified(url, dest, sha256=sha, size=SIZE)
    assert dest.read_bytes() == source.read_bytes()


async def test_wrong_sha256_leaves_nothing(
    server: RangeServer, blob: tuple[Path, str], tmp_path: Path
) -> None:
    source, _ = blob
    url = server.add("m.gguf", source)
    store = tmp_path / "store"
    with pytest.raises(InstallError) as caught:
        await download_verified(url, store / "m.gguf", sha256="0" * 64, size=SIZE)
    assert "expected " + "0" * 64 in caught.value.message and "got " in caught.value.message
    assert listing(store) == []


async def test_size_disagreeing_with_the_pin_is_refused_before_writing(
    server: RangeServer, blob: tuple[Path, str], tmp_path: Path
) -> None:
    source, sha = blob
    url = server.add("m.gguf", source)
    with pytest.raises(InstallError) as caught:
        await download_verified(url, tmp_path / "s" / "m.gguf", sha256=sha, size=SIZE + 1)
    assert "catalogue pins" in caught.value.message
    assert not partial_path(tmp_path / "s" / "m.gguf").exists()


async def test_complete_partial_is_verified_without_a_request(
    server: RangeServer, blob: tuple[Path, str], tmp_path: Path
) -> None:
    source, sha = blob
    url = server.add("m.gguf", source)
    dest = tmp_path / "m.gguf"
    partial_path(dest).write_bytes(source.read_bytes())
    validator_path(dest).write_text(json.dumps({"url": url, "sha256": sha}))
    await download_verified(url, dest, sha256=sha, size=SIZE)
    assert server.requests == []
    assert dest.read_bytes() == source.read_bytes()


async def test_partial_of_another_pin_is_discarded(
    server: RangeServer, blob: tuple[Path, str], tmp_path: Path
) -> None:
    source, sha = blob
    url = server.add("m.gguf", source)
    dest = tmp_path / "m.gguf"
    partial_path(dest).write_bytes(b"x" * 1000)
    validator_path(dest).write_text(json.dumps({"url": url, "sha256": "f" * 64}))
    result = await download_verified(url, dest, sha256=sha, size=SIZE)
    assert result.resumed_from == 0 and "Range" not in server.requests[0]


async def test_redirects_are_followed(
    server: RangeServer, blob: tuple[Path, str], tmp_path: Path
) -> None:
    source, sha = blob
    server.add("m.gguf", source)
    await download_verified(
        f"{server.url}/redirect/m.gguf", tmp_path / "m.gguf", sha256=sha, size=SIZE
    )
    assert (tmp_path / "m.gguf").read_bytes() == source.read_bytes()


async def test_http_errors_are_clear(server: RangeServer, tmp_path: Path) -> None:
    with pytest.raises(InstallError) as caught:
        await download_verified(
            f"{server.url}/files/missing.gguf", tmp_path / "x.gguf", sha256="0" * 64, size=10
        )
    assert "HTTP 404" in caught.value.message


async def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InstallError) as caught:
        await download_verified(
            "http://127.0.0.1:9/files/x.gguf", tmp_path / "x.gguf", sha256="0" * 64, size=10
        )
    assert "interrupted" in caught.value.message


async def test_disk_full_mid_download_is_a_clean_error(
    server: RangeServer, blob: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ENOSPC is injected (making a real full filesystem needs root): after 1 MiB, writes fail
    # exactly as os.write does on a full disk.
    source, sha = blob
    url = server.add("m.gguf", source)
    real_write = download._write_all
    written = 0

    def full_disk(fd: int, data: bytes | memoryview) -> None:
        nonlocal written
        if written + len(data) > 1024 * 1024:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(fd, data)
        written += len(data)

    monkeypatch.setattr(download, "_write_all", full_disk)
    dest = tmp_path / "store" / "m.gguf"
    with pytest.raises(InstallError) as caught:
        await download_verified(url, dest, sha256=sha, size=SIZE)
    assert "is full" in caught.value.message and "resume" in (caught.value.hint or "")
    # Nothing that looks like a model: only the hidden partial (kept for resume) and its validator.
    assert all(name.startswith(".") for name in listing(dest.parent))
    monkeypatch.setattr(download, "_write_all", real_write)
    result = await download_verified(url, dest, sha256=sha, size=SIZE)
    assert 0 < result.resumed_from == written <= 1024 * 1024
    assert dest.read_bytes() == source.read_bytes()


async def test_a_second_downloader_of_the_same_file_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "m.gguf"
    with FileLock(download.lock_path(dest)) as held:
        assert held.acquired
        with pytest.raises(InstallError) as caught:
            await download_verified("http://127.0.0.1:9/x", dest, sha256="0" * 64, size=1)
        assert "Another process" in caught.value.message


def test_hf_token_goes_only_to_hugging_face_hosts() -> None:
    env = {"HF_TOKEN": "hf_secret"}
    url = "https://huggingface.co/org/repo/resolve/abc/m.gguf"
    assert request_headers(url, env)["Authorization"] == "Bearer hf_secret"
    assert "Authorization" in request_headers("https://cdn-lfs.huggingface.co/x", env)
    assert "Authorization" not in request_headers("https://evil.example/huggingface.co", env)
    assert "Authorization" not in request_headers("https://huggingface.co.evil.example/x", env)
    assert "Authorization" not in request_headers(url, {})


def test_validators_and_content_range() -> None:
    assert strong_validator('"abc"', "Tue") == '"abc"'
    assert strong_validator('W/"abc"', "Tue") == "Tue"
    assert strong_validator(None, None) is None
    assert parse_content_range("bytes 100-199/1000") == (100, 1000)
    assert parse_content_range("bytes 100-199/*") == (100, None)
    assert parse_content_range("items 1-2/3") is None
    assert parse_content_range("bytes x-y/z") is None
