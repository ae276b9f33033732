"""The workload key file, the key ring's rotation rules, the key frames of the link, and a sandbox
that holds no key and no code to open an envelope."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from worker.private_inference.keyring import KeyRing
from worker.private_inference.wire import b64encode
from worker.private_inference.workload_key import (
    WorkloadKey,
    WorkloadKeyProblem,
    key_path,
    load_or_create,
    read_key,
)
from worker.protocol import (
    FrameError,
    WorkloadKeyInfo,
    WorkloadKeys,
    WorkloadKeysAck,
    parse_server_frame,
    parse_worker_frame,
)


def test_first_start_creates_a_0600_pem_key_and_later_starts_reuse_it(tmp_path: Path) -> None:
    path = key_path(tmp_path / "home")
    key, created = load_or_create(path)
    assert created and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    again, created_again = load_or_create(path)
    assert not created_again and again.kid == key.kid
    assert key.kid not in repr(key.private_key) and "PRIVATE" not in repr(key)


def test_the_file_is_standard_pkcs8_that_openssl_reads(tmp_path: Path) -> None:
    path = key_path(tmp_path)
    key, _ = load_or_create(path)
    result = subprocess.run(
        ["openssl", "pkey", "-in", str(path), "-pubout", "-outform", "DER"],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"no usable openssl here: {result.stderr.decode(errors='replace')}")
    assert result.stdout.endswith(key.public_bytes)  # SubjectPublicKeyInfo ends with the raw key


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    path = key_path(tmp_path / "home")
    results: list[tuple[WorkloadKey, bool]] = []
    threads = [
        threading.Thread(target=lambda: results.append(load_or_create(path))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({key.kid for key, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert [p.name for p in path.parent.iterdir()] == ["workload.key"]  # no temporary files left


def test_a_readable_key_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = key_path(tmp_path)
    load_or_create(path)
    os.chmod(path, 0o644)
    with pytest.raises(WorkloadKeyProblem, match="readable by other users") as caught:
        load_or_create(path)
    assert caught.value.hint == f"chmod 600 {path}"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a key",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"x" * 10_000,
    ],
)
def test_a_broken_key_file_is_reported_and_never_replaced(tmp_path: Path, content: bytes) -> None:
    path = key_path(tmp_path)
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(WorkloadKeyProblem, match="is not a workload key") as caught:
        load_or_create(path)
    assert "mv " in str(caught.value.hint)
    assert path.read_bytes() == content


def test_a_key_of_another_type_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    path = key_path(tmp_path)
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    path.write_bytes(pem)
    os.chmod(path, 0o600)
    with pytest.raises(WorkloadKeyProblem, match="X25519"):
        read_key(path)


def test_the_kid_is_sha256_of_the_raw_public_key() -> None:
    import hashlib

    private = X25519PrivateKey.generate()
    key = WorkloadKey.from_private(private, None)
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert key.kid == hashlib.sha256(raw).hexdigest()
    assert key.public_b64 == b64encode(raw)


# -- the key ring --------------------------------------------------------------------------------


def test_rotation_keeps_the_old_key_until_confirmed_and_unleased() -> None:
    old, new = WorkloadKey.generate(), WorkloadKey.generate()
    ring = KeyRing(old)
    changes: list[int] = []
    ring.on_change(lambda: changes.append(ring.generation))
    in_flight = ring.lease({old.kid})
    assert in_flight is not None and in_flight.key is old

    ring.rotate(new)
    assert changes == [1] and ring.current is new and ring.registered() == [new]
    assert ring.retired == [old]
    # Until the control plane confirms the new registration, more may arrive sealed to the old key.
    arriving = ring.lease({old.kid, "f" * 64})
    assert arriving is not None and arriving.key is old
    arriving.release()
    ring.confirmed(1)
    assert ring.retired == [old]  # confirmed, but a request sealed to it still runs
    in_flight.release()
    assert ring.retired == [] and ring.lease({old.kid}) is None
    in_flight.release()  # releasing twice is harmless
    assert ring.lease({new.kid}) is not None


def test_a_link_that_ends_drops_unleased_retired_keys() -> None:
    old, new = WorkloadKey.generate(), WorkloadKey.generate()
    ring = KeyRing(old)
    ring.rotate(new)
    ring.confirmed(0)  # an older registration's acknowledgement changes nothing
    assert ring.retired == [old]
    ring.link_ended()
    assert ring.retired == []


def test_a_rotation_listener_can_unsubscribe() -> None:
    ring = KeyRing(WorkloadKey.generate())
    calls: list[str] = []
    unsubscribe = ring.on_change(lambda: calls.append("x"))
    ring.rotate(WorkloadKey.generate())
    unsubscribe()
    ring.rotate(WorkloadKey.generate())
    assert calls == ["x"]


# -- link frames ---------------------------------------------------------------------------------


def test_key_frames_round_trip_and_bad_ones_are_frame_errors() -> None:
    key = WorkloadKey.generate()
    frame = WorkloadKeys(seq=3, keys=[WorkloadKeyInfo(kid=key.kid, public_key=key.public_b64)])
    assert parse_worker_frame(frame.dump()) == frame
    assert parse_server_frame(WorkloadKeysAck(seq=3).dump()) == WorkloadKeysAck(seq=3)
    with pytest.raises(FrameError):
        parse_worker_frame('{"type":"workload_keys","seq":1,"keys":[{"kid":"x","public_key":"y"}]}')
    with pytest.raises(FrameError):
        parse_server_frame('{"type":"workload_keys_ack","seq":-1}')


async def test_the_hub_recomputes_every_kid_and_refuses_a_mismatch() -> None:
    from worker.sandbox.private_relay import register_keys

    class Connection:
        def __init__(self) -> None:
            self.worker_id = "wk_test"
            self.workload_keys: dict[str, str] = {}

    key, other = WorkloadKey.generate(), WorkloadKey.generate()
    good = WorkloadKeys(seq=1, keys=[WorkloadKeyInfo(kid=key.kid, public_key=key.public_b64)])
    connection = Connection()
    assert register_keys(connection, good) == WorkloadKeysAck(seq=1).dump()  # type: ignore[arg-type]
    assert connection.workload_keys == {key.kid: key.public_b64}
    forged = WorkloadKeys(seq=2, keys=[WorkloadKeyInfo(kid=key.kid, public_key=other.public_b64)])
    answer = register_keys(connection, forged)  # type: ignore[arg-type]
    assert '"code":"invalid_workload_key"' in answer
    assert connection.workload_keys == {key.kid: key.public_b64}  # unchanged


def test_a_dropped_key_leaves_no_copy_behind() -> None:
    """Opening caches the key's HPKE form per key; it goes when the key itself goes."""
    import gc
    import weakref

    from pendra import _private_inference as sdk_pi

    from worker.private_inference import envelope as envelope_module
    from worker.private_inference.wire import parse_envelope

    key = WorkloadKey.generate()
    sealed, _ = sdk_pi.seal_request(
        key.public_bytes, b"{}", model="m", stream=False, task_type="chat"
    )
    envelope_module.open_request(
        parse_envelope(sealed), key, model="m", stream=False, task_type="chat"
    )
    assert key in envelope_module._RECIPIENT_KEYS
    kid, alive = key.kid, weakref.ref(key)
    del key
    gc.collect()
    assert alive() is None
    assert kid not in {k.kid for k in envelope_module._RECIPIENT_KEYS}


def test_the_sandbox_has_no_code_that_could_open_an_envelope() -> None:
    """The control plane's side imports the shared wire format only: no HPKE, no key files."""
    import sys

    script = (
        "import sys, worker.sandbox, worker.cli.sandbox\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'pyhpke' or "
        "(m.startswith('worker.private_inference.') and m != 'worker.private_inference.wire'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
