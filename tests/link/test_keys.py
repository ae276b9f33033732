"""Worker key format, files (0600) and signatures."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.keys import (
    KEY_PREFIX,
    KeyProblem,
    encode_key,
    generate_key,
    load_worker_key,
    parse_key,
    read_key_file,
    validate_key_format,
    verify_signature,
    write_key_file,
)


def test_round_trip_and_shape() -> None:
    key = generate_key()
    text = key.text
    assert text.startswith(KEY_PREFIX) and len(text) == 52
    assert parse_key(f"  {text}\n") == key
    assert validate_key_format(text) is None
    assert key.text not in repr(key) and key.text not in str(key)


@given(st.binary(min_size=32, max_size=32), st.integers(min_value=4, max_value=51))
def test_any_single_character_typo_is_caught(seed: bytes, position: int) -> None:
    text = encode_key(seed)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    replacement = alphabet[(alphabet.index(text[position]) + 1) % len(alphabet)]
    typo = text[:position] + replacement + text[position + 1 :]
    with pytest.raises(KeyProblem):
        parse_key(typo)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty"),
        ("sk-abc", "start with 'pdk_'"),
        ("pdk_abc", "has 7 characters"),
        ("pdk_" + "!" * 48, "characters a worker key cannot have"),
    ],
)
def test_bad_formats_say_what_is_wrong(text: str, expected: str) -> None:
    with pytest.raises(KeyProblem, match=expected) as info:
        parse_key(text)
    assert info.value.exit_code == 4


def test_error_messages_never_contain_the_key() -> None:
    text = generate_key().text
    broken = text[:-1] + ("A" if text[-1] != "A" else "B")
    with pytest.raises(KeyProblem) as info:
        parse_key(broken)
    assert broken not in str(info.value)


def test_signatures_verify_only_for_the_same_message_and_key() -> None:
    key, other = generate_key(), generate_key()
    sig = key.sign(b"transcript")
    assert verify_signature(key.public_key, b"transcript", sig)
    assert not verify_signature(key.public_key, b"transcript2", sig)
    assert not verify_signature(other.public_key, b"transcript", sig)
    assert not verify_signature("not-base64!", b"transcript", sig)
    assert not verify_signature(key.public_key, b"transcript", "garbage")


def test_written_key_file_is_0600_and_readable(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "worker.key"
    key = generate_key()
    write_key_file(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path) == key
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".worker-key-")]


def test_group_readable_key_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "worker.key"
    write_key_file(path, generate_key())
    os.chmod(path, 0o640)
    with pytest.raises(KeyProblem, match="readable by other users") as info:
        read_key_file(path)
    assert f"chmod 600 {path}" in str(info.value)


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(KeyProblem, match="No worker key") as info:
        read_key_file(tmp_path / "absent")
    assert "pendra key set" in str(info.value)
    bad = tmp_path / "bad.key"
    bad.write_text("hello")
    os.chmod(bad, 0o600)
    with pytest.raises(KeyProblem, match=str(bad)):
        read_key_file(bad)


def test_env_key_wins_for_containers(tmp_path: Path) -> None:
    key = generate_key()
    assert load_worker_key(tmp_path / "absent", {"PENDRA_WORKER_KEY": key.text}) == key
    with pytest.raises(KeyProblem, match="PENDRA_WORKER_KEY"):
        load_worker_key(tmp_path / "absent", {"PENDRA_WORKER_KEY": "pdk_short"})
