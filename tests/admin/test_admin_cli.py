"""`pendra status`, `pendra logs` and `pendra attach` as real subprocesses, with and without a
running worker (the worker side is the real admin server in this test's event loop)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from admin_status_schema import check_status_document
from admin_test_worker import TestWorker

from worker.admin import AdminServer
from worker.cli._status_text import render_status
from worker.cli.logs import read_tail
from worker.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


async def pendra(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str, str]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout)
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


@pytest.fixture
async def running(pendra_home: Path) -> AsyncIterator[TestWorker]:
    worker = TestWorker()
    async with AdminServer(worker, load_settings().admin_socket):
        yield worker


# -- without a worker ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["attach"]])
async def test_commands_needing_a_worker_say_how_to_start_one(
    clean_env: dict[str, str], command: list[str]
) -> None:
    code, out, err = await pendra(clean_env, *command)
    assert code == 3
    assert out == "", "nothing on stdout, so --json consumers never parse an error"
    assert "No Pendra worker is running" in err
    assert "start it with `pendra --no-ui`" in err
    assert "Traceback" not in err


async def test_logs_without_a_worker_read_the_log_file(
    clean_env: dict[str, str], pendra_home: Path
) -> None:
    logs = pendra_home / "logs"
    logs.mkdir()
    (logs / "worker.log.1").write_text("".join(f"old {i}\n" for i in range(5)))
    (logs / "worker.log").write_text("".join(f"new {i}\n" for i in range(3)))
    code, out, err = await pendra(clean_env, "logs", "-n", "5")
    assert (code, err) == (0, "")
    assert out.splitlines() == ["old 3", "old 4", "new 0", "new 1", "new 2"]


async def test_logs_follow_without_a_worker_prints_the_file_then_says_why_it_stops(
    clean_env: dict[str, str], pendra_home: Path
) -> None:
    (pendra_home / "logs").mkdir()
    (pendra_home / "logs" / "worker.log").write_text("last words\n")
    code, out, err = await pendra(clean_env, "logs", "-f")
    assert code == 3
    assert out == "last words\n"
    assert "nothing to follow" in err


async def test_logs_without_worker_or_file(clean_env: dict[str, str]) -> None:
    code, out, err = await pendra(clean_env, "logs")
    assert code == 3 and out == ""
    assert "no log file at" in err and "pendra --no-ui" in err


async def test_logs_rejects_a_negative_count(clean_env: dict[str, str]) -> None:
    code, _, err = await pendra(clean_env, "logs", "-n", "-4")
    assert code == 2 and "must be 0 or more" in err


# -- with a worker ---------------------------------------------------------------------------------


async def test_status_json_is_exactly_the_document(
    clean_env: dict[str, str], running: TestWorker
) -> None:
    code, out, err = await pendra(clean_env, "status", "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert check_status_document(document) == []
    expected = running.status()
    document["worker"].pop("uptime_s"), expected["worker"].pop("uptime_s")
    assert document == expected


async def test_status_summary_is_readable(clean_env: dict[str, str], running: TestWorker) -> None:
    running.step_s = 5.0
    await running.install("qwen3.6:27b", None)
    code, out, err = await pendra(clean_env, "status")
    assert (code, err) == (0, "")
    assert out.startswith("Worker    connected · v")
    assert "Requests  1 in flight · 1,234 served · 2 failed · 41.5 tok/s" in out
    assert "pendra  ready        1 model   built-in" in out
    assert "ollama  unreachable  0 models  http://localhost:11434" in out
    assert "NVIDIA H100 80GB HBM3  37%  2.5 GiB / 79.6 GiB  37°C  80 W" in out
    assert "qwen3.6:27b  → pendra  queued  0 B / 4.0 KB (0%)" in out


async def test_logs_from_the_running_worker_and_follow(
    clean_env: dict[str, str], running: TestWorker
) -> None:
    logger = logging.getLogger("pendra.test.cli")
    logger.setLevel(logging.INFO)
    logger.addHandler(running.log_handler)
    try:
        for i in range(3):
            logger.info("before %d", i)
        code, out, _ = await pendra(clean_env, "logs", "-n", "2")
        assert code == 0
        assert [line.rsplit(": ", 1)[1] for line in out.splitlines()] == ["before 1", "before 2"]

        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "worker",
            "logs",
            "-f",
            "-n",
            "1",
            env=clean_env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert child.stdout is not None
            first = await asyncio.wait_for(child.stdout.readline(), 30)
            assert first.decode().rstrip().endswith("before 2")
            for _ in range(300):  # the follower subscribes before it prints the tail
                if running.events.subscriber_count:
                    break
                await asyncio.sleep(0.01)
            logger.info("live line")
            live = await asyncio.wait_for(child.stdout.readline(), 30)
            assert live.decode().rstrip().endswith("pendra.test.cli: live line")
        finally:
            child.terminate()
            await asyncio.wait_for(child.wait(), 30)
    finally:
        logger.removeHandler(running.log_handler)


# -- pure formatting -------------------------------------------------------------------------------


def test_render_status_says_why_the_link_is_down_and_counts_cancelled() -> None:
    text = render_status(
        {
            "worker": {
                "state": "offline",
                "version": "1",
                "uptime_s": 60,
                "link": {"reason": "cannot reach wss://x: refused", "retry_in_s": 38.7},
            },
            "requests": {"in_flight": 0, "served": 3, "failed": 1, "cancelled": 2},
            "gpus": [],
            "host": {"cpu_percent": 12.0, "memory_used": 2**31, "memory_total": 2**33},
        }
    )
    assert "          link: cannot reach wss://x: refused; retrying in 38s" in text
    assert "3 served · 1 failed · 2 cancelled" in text
    assert "Host      CPU 12% · RAM 2.0 GiB / 8.0 GiB · worker —" in text


def test_render_status_survives_missing_and_null_values() -> None:
    text = render_status({"worker": {"state": "offline"}, "gpus": [{"index": 0, "name": None}]})
    assert text.splitlines()[0] == "Worker    offline · v— · up —"
    assert "Backends  none found" in text
    assert "0  GPU  —  — / —  —  —" in text
    assert render_status({}).startswith("Worker    unknown")


def test_render_status_shows_loaded_models() -> None:
    entry = {
        "id": "gemma", "pid": 4242, "state": "ready", "weights_bytes": 253_113_024,
        "kv_type": "f16", "kv_tokens": 32768, "kv_bytes": 140_509_184, "kv_tokens_in_use": 1234,
        "context_length": 8192, "slots": 4, "slots_in_use": 1, "queued": 2,
        "idle_unload_in_s": None,
    }  # fmt: skip
    idle = {**entry, "id": "emb", "slots_in_use": 0, "queued": 0, "idle_unload_in_s": 840.0}
    doc = {"backends": [{"name": "pendra", "status": "ready", "loaded": [entry, idle, "old"]}]}
    lines = render_status(doc).splitlines()
    start = lines.index("Loaded")
    gemma, emb, old = lines[start + 1 : start + 4]
    assert gemma.split() == [
        "gemma", "ready", "241", "MiB", "+", "KV", "134", "MiB", "(f16)", "KV", "1,234", "/",
        "32,768", "tok", "1/4", "busy,", "2", "queued",
    ]  # fmt: skip
    assert emb.rstrip().endswith("unloads in 14m 00s")
    assert old.strip() == "old"  # a list of ids from an older worker still renders
    assert "Loaded" not in render_status({"backends": [{"name": "pendra", "loaded": []}]})


def test_read_tail_across_rotated_files(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    assert read_tail(log, 5) == []
    (tmp_path / "worker.log.2").write_text("a\nb\n")
    (tmp_path / "worker.log.1").write_text("c\n")
    log.write_text("d\ne\n")
    assert read_tail(log, 4) == ["b", "c", "d", "e"]
    assert read_tail(log, 100) == ["a", "b", "c", "d", "e"]
    assert read_tail(log, 0) == []


async def test_attach_with_a_worker_goes_on_to_open_the_app(
    clean_env: dict[str, str], running: TestWorker
) -> None:
    """Past the worker check, attach hands over to the app launcher, which needs a terminal."""
    code, out, err = await pendra(clean_env, "attach")
    assert code == 2 and out == ""
    assert "No terminal here" in err
    assert "No Pendra worker" not in err
