"""Worker key forms (the console's base64 and pdk_), where keys are read from, files (0600),
signatures."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.keys import (
    KEY_PREFIX,
    KeyProblem,
    encode_console_key,
    encode_key,
    generate_key,
    load_configured_key,
    load_worker_key,
    parse_key,
    read_key_file,
    store_key,
    validate_key_format,
    verify_signature,
    write_key_file,
)
from worker.settings import load_settings


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
        ("sk-abc", "decodes to 4 bytes"),
        ("not a key at all!", "characters base64 does not use"),
        ("QUJDR", "do not decode as base64"),
        ("pdk_abc", "has 7 characters"),
        ("pdk_" + "!" * 48, "characters a worker key cannot have"),
    ],
)
def test_bad_formats_say_what_is_wrong(text: str, expected: str) -> None:
    with pytest.raises(KeyProblem, match=expected) as info:
        parse_key(text)
    assert info.value.exit_code == 4


def _b64(raw: bytes, *, urlsafe: bool = False, pad: bool = True) -> str:
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    return text if pad else text.rstrip("=")


@given(st.binary(min_size=32, max_size=32), st.booleans(), st.booleans())
def test_the_console_forms_parse_to_the_same_key(seed: bytes, urlsafe: bool, pad: bool) -> None:
    """32-byte seed or Go's 64-byte seed ‖ public, standard or url-safe, padded or not."""
    key = parse_key(encode_key(seed))
    public = base64.b64decode(encode_console_key(seed))[32:]
    short = parse_key(_b64(seed, urlsafe=urlsafe, pad=pad))
    long = parse_key(_b64(seed + public, urlsafe=urlsafe, pad=pad))
    assert short == key == long
    assert long.text == _b64(seed + public, urlsafe=urlsafe, pad=pad)  # kept as it was given
    assert short.public_key == key.public_key


def test_a_64_byte_key_whose_halves_disagree_is_refused() -> None:
    seed, other = generate_key().seed, generate_key()
    mixed = base64.b64encode(seed + other.public_bytes).decode()
    with pytest.raises(KeyProblem, match="public half does not belong") as info:
        parse_key(mixed)
    assert mixed not in str(info.value) and info.value.exit_code == 4


@pytest.mark.parametrize("size", [16, 31, 33, 48, 63, 65, 96])
def test_other_lengths_say_which_forms_are_expected(size: int) -> None:
    text = base64.b64encode(bytes(range(size))).decode()
    with pytest.raises(KeyProblem) as info:
        parse_key(text)
    message = str(info.value)
    assert f"decodes to {size} bytes" in message
    assert "32-byte seed" in message and "64-byte" in message and "pdk_" in message
    assert text not in message


def test_a_wrapped_paste_is_joined() -> None:
    key = generate_key(console_form=True)
    wrapped = key.text[:40] + "\n  " + key.text[40:] + "\n"
    assert parse_key(wrapped) == key


def test_every_text_form_is_listed_for_redaction() -> None:
    key = generate_key(console_form=True)
    forms = key.secret_forms()
    assert key.text in forms and encode_key(key.seed) in forms
    assert base64.b64encode(key.seed).decode() in forms
    assert forms == sorted(forms, key=len, reverse=True)


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
    assert load_worker_key(tmp_path / "absent", {"GPU_WORKER_PRIVATE_KEY": key.text}) == key
    with pytest.raises(KeyProblem, match="PENDRA_WORKER_KEY"):
        load_worker_key(tmp_path / "absent", {"PENDRA_WORKER_KEY": "pdk_short"})


def _home_env(home: Path, **values: str) -> dict[str, str]:
    return {"PENDRA_HOME": str(home), **values}


def test_configured_key_from_each_place(pendra_home: Path, tmp_path: Path) -> None:
    key = generate_key(console_form=True)
    config = pendra_home / "config.yaml"
    with pytest.raises(KeyProblem, match="No worker key: neither") as info:
        load_configured_key(load_settings(_home_env(pendra_home)))
    assert "pendra key set" in str(info.value)

    config.write_text(f"gpu_worker_private_key: {key.text}\n")
    config.chmod(0o600)
    assert load_configured_key(load_settings(_home_env(pendra_home))) == key

    other = generate_key()
    key_file = tmp_path / "other.key"
    write_key_file(key_file, other)
    from_env_file = load_settings(_home_env(pendra_home, PENDRA_WORKER_KEY_FILE=str(key_file)))
    assert load_configured_key(from_env_file) == other
    from_env = load_settings(_home_env(pendra_home, GPU_WORKER_PRIVATE_KEY=other.text))
    assert load_configured_key(from_env) == other


def test_a_key_in_a_config_file_others_can_read_is_refused(pendra_home: Path) -> None:
    key = generate_key(console_form=True)
    config = pendra_home / "config.yaml"
    config.write_text(f"gpu_worker_private_key: {key.text}\n")
    config.chmod(0o644)
    settings = load_settings(_home_env(pendra_home))
    assert any("holds the worker key" in w for w in settings.warnings)
    with pytest.raises(KeyProblem, match="readable by other users") as info:
        load_configured_key(settings)
    assert f"chmod 600 {config}" in str(info.value) and key.text not in str(info.value)


def test_store_key_goes_where_the_worker_reads_it(pendra_home: Path, tmp_path: Path) -> None:
    key = generate_key(console_form=True)
    stored, notes = store_key(load_settings(_home_env(pendra_home)), key)
    where = stored.path
    assert where == pendra_home / "config.yaml" and notes == [] and stored.changed
    assert stat.S_IMODE(where.stat().st_mode) == 0o600
    assert load_configured_key(load_settings(_home_env(pendra_home))) == key

    # a key file in use (named in the environment) is updated in place instead
    key_file = tmp_path / "k" / "worker.key"
    second = generate_key()
    stored, _ = store_key(
        load_settings(_home_env(pendra_home, PENDRA_WORKER_KEY_FILE=str(key_file))), second
    )
    assert stored.path == key_file and read_key_file(key_file) == second

    # a key in the environment wins, and storing says so
    _where, notes = store_key(
        load_settings(_home_env(pendra_home, GPU_WORKER_PRIVATE_KEY=second.text)), key
    )
    assert any("GPU_WORKER_PRIVATE_KEY" in n for n in notes)


def test_an_existing_worker_key_file_stays_the_place(pendra_home: Path) -> None:
    old = generate_key()
    write_key_file(pendra_home / "worker.key", old)
    new = generate_key(console_form=True)
    stored, _ = store_key(load_settings(_home_env(pendra_home)), new)
    where = stored.path
    assert where == pendra_home / "worker.key" and stored.backup is not None
    assert read_key_file(where) == new and read_key_file(where).text == new.text
    assert not (pendra_home / "config.yaml").exists()
