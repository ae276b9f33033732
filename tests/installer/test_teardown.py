"""What `get.sh --uninstall --remove-models` may delete: only the model files pendra recorded
installing, never the user's files or folders, never from `/`, `$HOME` or a parent of it.

The rules are checked on a real directory full of decoys, and the command get.sh runs
(`python -I -m installer.teardown …`) is run as a process. get.sh itself is driven in
tests/installer/test_getsh.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from installer.teardown import UnsafeModelsDir, plan_models, remove_planned, unsafe_dir_reason
from worker.backends.base import Task
from worker.installs.filelock import FileLock
from worker.modelstore.sidecar import Sidecar, write_sidecar

SHA = "ab" * 32


def _installed(models: Path, name: str, ref: str) -> Path:
    """A GGUF as the installer leaves it: the file and its download-record sidecar."""
    gguf = models / name
    gguf.write_bytes(b"GGUF" + name.encode())
    write_sidecar(
        models / f"{name}.meta.json",
        Sidecar(
            ref=ref,
            task=Task.CHAT,
            sha256=SHA,
            source_url=f"https://huggingface.co/x/y/resolve/main/{name}",
            context_length=512,
            installed_at="2025-01-01T00:00:00+00:00",
        ),
    )
    return gguf


def _partial(models: Path, name: str) -> list[Path]:
    """What an interrupted download leaves: the hidden partial and its validator."""
    part, meta = models / f".{name}.part", models / f".{name}.part.json"
    part.write_bytes(b"GGUF-half")
    meta.write_text(json.dumps({"url": f"https://example.org/{name}", "sha256": SHA, "size": 9}))
    return [part, meta]


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """A shared folder (like ~/Downloads) holding pendra's installs among the user's files."""
    folder = tmp_path / "home" / "Downloads"
    folder.mkdir(parents=True)
    _installed(folder, "qwen3-0.6b.Q4_K_M.gguf", "qwen3:0.6b")
    _installed(folder, "gemma3-270m.gguf", "gemma3:270m")
    # An install interrupted after its sidecar, and one interrupted after the sidecar went.
    write_sidecar(
        folder / "big.gguf.meta.json",
        Sidecar(
            ref="big:1", sha256=SHA, source_url="http://127.0.0.1:1/big.gguf", installed_at="t"
        ),
    )
    _partial(folder, "big.gguf")
    _partial(folder, "other.gguf")
    # The user's own things.
    (folder / "mine.gguf").write_bytes(b"GGUF my fine-tune")
    (folder / "chat.gguf").write_bytes(b"GGUF with a hand-written chat format")
    (folder / "chat.gguf.meta.json").write_text('{"ref": "chat", "chat_format": "chatml"}')
    (folder / "report.pdf").write_bytes(b"%PDF-1.7")
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    (folder / "notes").mkdir()
    (folder / "notes" / "inner.gguf").write_bytes(b"GGUF in a sub-folder")
    (folder / "dir.gguf").mkdir()
    (folder / "dir.gguf" / "keep.txt").write_text("a folder named like a model")
    elsewhere = tmp_path / "elsewhere.gguf"
    elsewhere.write_bytes(b"GGUF linked in")
    (folder / "linked.gguf").symlink_to(elsewhere)
    (folder / "new\nline.gguf").write_bytes(b"GGUF odd name")
    return folder


def _names(paths: list[Path]) -> set[str]:
    return {p.name for p in paths}


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in sorted(root.rglob("*"))
    }


def test_only_recorded_downloads_are_planned(models: Path) -> None:
    plan = plan_models(models, models.parent)
    assert _names(plan.remove) == {
        "qwen3-0.6b.Q4_K_M.gguf",
        "qwen3-0.6b.Q4_K_M.gguf.meta.json",
        "gemma3-270m.gguf",
        "gemma3-270m.gguf.meta.json",
        "big.gguf.meta.json",
        ".big.gguf.part",
        ".big.gguf.part.json",
        ".other.gguf.part",
        ".other.gguf.part.json",
    }
    kept = {k.path.name: k.reason for k in plan.keep}
    assert "no install record" in kept["mine.gguf"]
    assert "no install record" in kept["chat.gguf"]  # a hand-written sidecar is not a record
    assert "link" in kept["linked.gguf"]
    assert "control characters" in kept["new\nline.gguf"]
    assert all(p.parent == models for p in plan.remove)
    # report.pdf, photo.jpg, notes/, dir.gguf/ and chat.gguf.meta.json: never touched
    assert plan.other_entries == 5


def test_all_takes_every_gguf_but_never_other_files_or_folders(models: Path) -> None:
    plan = plan_models(models, models.parent, everything=True)
    assert {"mine.gguf", "chat.gguf", "chat.gguf.meta.json", "linked.gguf"} <= _names(plan.remove)
    assert not {"report.pdf", "photo.jpg", "notes", "dir.gguf", "inner.gguf"} & _names(plan.remove)
    assert [k.path.name for k in plan.keep] == ["new\nline.gguf"]


def test_removal_deletes_only_what_was_shown_and_keeps_the_folder(
    models: Path, tmp_path: Path
) -> None:
    before = _snapshot(models)
    plan = plan_models(models, models.parent)
    shown = set(plan.remove) - {models / "gemma3-270m.gguf"}
    results = remove_planned(plan, shown, default_dir=tmp_path / "home" / ".pendra" / "models")
    problems = {p.name: why for p, why in results if why}
    assert problems == {"gemma3-270m.gguf": "not in the list you confirmed; kept"}
    after = _snapshot(models)
    assert set(before) - set(after) == {p.name for p in shown}
    for name, data in after.items():
        assert data == before[name], name  # everything left is byte for byte what it was
    assert (tmp_path / "elsewhere.gguf").read_bytes() == b"GGUF linked in"
    assert models.is_dir()


def test_the_default_folder_goes_only_when_empty(tmp_path: Path) -> None:
    default = tmp_path / "home" / ".pendra" / "models"
    default.mkdir(parents=True)
    _installed(default, "a.gguf", "a:1")
    plan = plan_models(default, tmp_path / "home")
    remove_planned(plan, set(plan.remove), default_dir=default)
    assert not default.exists()

    default.mkdir()
    _installed(default, "a.gguf", "a:1")
    (default / "mine.gguf").write_bytes(b"GGUF")
    plan = plan_models(default, tmp_path / "home")
    remove_planned(plan, set(plan.remove), default_dir=default)
    assert sorted(p.name for p in default.iterdir()) == ["mine.gguf"]


def test_a_download_in_progress_is_left_alone(models: Path) -> None:
    with FileLock(models / ".big.gguf.lock") as lock:
        assert lock.acquired
        plan = plan_models(models, models.parent)
    assert not {n for n in _names(plan.remove) if "big" in n}
    assert any(k.path.name == "big.gguf" and "downloaded right now" in k.reason for k in plan.keep)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_another_users_files_stay_even_with_a_record(models: Path) -> None:
    """In a shared folder, a GGUF another user installed (or forged a record for) is theirs."""
    theirs = _installed(models, "theirs.gguf", "theirs:1")
    os.chown(theirs, 4242, 4242)
    for everything in (False, True):
        plan = plan_models(models, models.parent, everything=everything)
        assert not {"theirs.gguf", "theirs.gguf.meta.json"} & _names(plan.remove)
        assert any(k.path == theirs and "another user" in k.reason for k in plan.keep)


def test_unsafe_directories_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "home" / "alice"
    home.mkdir(parents=True)
    (tmp_path / "to-home").symlink_to(home)
    assert "root" in (unsafe_dir_reason(Path("/"), home) or "")
    assert "your home" in (unsafe_dir_reason(home, home) or "")
    assert "your home" in (unsafe_dir_reason(Path(f"{home}/"), home) or "")
    assert "your home" in (unsafe_dir_reason(home / ".." / "alice", home) or "")
    assert "your home" in (unsafe_dir_reason(tmp_path / "to-home", home) or "")
    assert "holds your home" in (unsafe_dir_reason(home.parent, home) or "")
    assert "holds your home" in (unsafe_dir_reason(tmp_path, home) or "")
    assert "relative" in (unsafe_dir_reason(Path("models"), home) or "")
    assert unsafe_dir_reason(home / "Downloads", home) is None
    assert unsafe_dir_reason(home / ".pendra" / "models", home) is None
    with pytest.raises(UnsafeModelsDir) as err:
        plan_models(home, home)
    assert err.value.exit_code == 3 and "refusing to remove models from" in err.value.message


def _teardown(
    args: list[str], env: dict[str, str], cwd: Path, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-m", "installer.teardown", *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_get_sh_runs(models: Path, clean_env: dict[str, str], tmp_path: Path) -> None:
    home = models.parent
    env = {**clean_env, "HOME": str(home), "PENDRA_MODELS_DIR": str(models)}
    before = _snapshot(models)
    planned = _teardown(["plan-models"], env, cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr
    rows = [line.split("\t") for line in planned.stdout.splitlines()]
    assert rows[0] == ["dir", str(models), ""]
    remove = [Path(r[1]) for r in rows if r[0] == "remove"]
    assert _names(remove) == _names(plan_models(models, home).remove)
    assert all(r[2].endswith("B") for r in rows if r[0] == "remove")  # a size for each
    assert any(r[0] == "other" and "5 other entries" in r[2] for r in rows)
    assert _snapshot(models) == before  # planning changes nothing

    shown = "".join(f"{path}\n" for path in remove)
    removed = _teardown(["remove-models"], env, cwd=tmp_path, stdin=shown)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    gone = {Path(line.split("\t")[1]) for line in removed.stdout.splitlines()}
    assert gone == set(remove)
    assert all(not p.exists() for p in remove)
    assert (models / "mine.gguf").exists() and (models / "report.pdf").exists()

    for unsafe in (str(home), "/", str(home.parent), "relative/models"):
        refused = _teardown(["plan-models"], {**env, "PENDRA_MODELS_DIR": unsafe}, cwd=tmp_path)
        assert refused.returncode == 3, unsafe
        assert refused.stderr.startswith("refusing to remove models from"), refused.stderr
        assert "Traceback" not in refused.stderr
