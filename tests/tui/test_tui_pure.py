"""Plain unit tests of the app's pure parts: formatting, the dashboard model, catalogue rows,
the setup decisions, the config writer and the key store (real files in the test's PENDRA_HOME)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from pendra_tui.backend_config import (
    AUTO,
    OFF,
    backend_changes,
    identity_changes,
    save_backend_choices,
)
from pendra_tui.catalogue_rows import (
    CatalogueRow,
    default_backend,
    filter_rows,
    next_task,
    rows_from_catalogue,
)
from pendra_tui.dashboard_model import (
    FINISHED_INSTALLS_KEPT,
    BackendView,
    DashboardModel,
    PrivateInferenceView,
    capability_summary,
)
from pendra_tui.formatting import (
    format_bytes,
    format_context,
    format_duration,
    format_mib,
    format_percent,
    format_progress,
    format_rate,
    install_eta,
    progress_fraction,
    verdict_label,
)
from pendra_tui.reconnect import backoff_delay
from pendra_tui.screens.prereqs import blocked_text, check_line, check_text, checks_summary
from pendra_tui.screens.review import review_text
from pendra_tui.services import BackendCandidate, CatalogueData, Check, SettingsKeyStore
from pendra_tui.setup_state import SetupState, backend_enabled, install_plan, usable_backends
from pendra_tui.widgets.backends_table import BackendsTable, backend_cells, shown_backends
from pendra_tui.widgets.gpu_panel import (
    gpu_title,
    load_level,
    mem_label,
    short_gpu_name,
    util_label,
)
from pendra_tui.widgets.installs_panel import install_line, row_id
from pendra_tui.widgets.key_input import clean_key
from pendra_tui.widgets.link_bar import LinkInfo, link_text, private_text
from pendra_tui.widgets.sortable_table import fit_columns
from worker.errors import ConfigError
from worker.settings import EndpointMode, load_settings

DATA = Path(__file__).parent / "data"


# -- formatting --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (-1, "—"),
        (0, "0 B"),
        (999, "999 B"),
        (1500, "1.5 KB"),
        (5_027_783_488, "5.0 GB"),
        (19_762_149_376, "19.8 GB"),
        (250_000_000, "250 MB"),
        (3 * 10**15, "3.0 PB"),
    ],
)
def test_format_bytes(value: int | None, text: str) -> None:
    assert format_bytes(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (-5, "—"),
        (float("nan"), "—"),
        (0, "0s"),
        (45.9, "45s"),
        (185, "3m 05s"),
        (8040, "2h 14m"),
        (3 * 86400 + 4 * 3600 + 59, "3d 4h"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_small_formatters() -> None:
    assert format_rate(None) == "—" and format_rate(0) == "—"
    assert format_rate(48_200_000) == "48.2 MB/s"
    assert format_mib(int(22.5 * 2**30)) == "22.5 GiB"
    assert format_mib(512 * 2**20) == "512 MiB"
    assert format_mib(None) == "—"
    assert format_percent(41.6) == "42%"
    assert format_context(32768) == "32k" and format_context(2**20) == "1M"
    assert format_context(None) == "—" and format_context(512) == "512"
    assert verdict_label("gpu") == "✓ fits GPU"
    assert verdict_label("no") == "✗ too big"
    assert verdict_label(None) == "? unknown"
    assert verdict_label("maybe") == "? maybe"


def test_progress_and_eta() -> None:
    assert progress_fraction(50, 200) == 0.25
    assert progress_fraction(500, 200) == 1.0
    assert progress_fraction(5, None) is None
    assert install_eta(100, 1100, 100.0) == 10.0
    assert install_eta(100, None, 100.0) is None
    assert install_eta(100, 1000, 0) is None


def test_backoff_grows_and_is_capped() -> None:
    delays = [backoff_delay(n) for n in range(8)]
    assert delays[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert delays[5:] == [10.0, 10.0, 10.0]
    assert backoff_delay(10_000) == 10.0


# -- dashboard model ---------------------------------------------------------------------------
def _status() -> dict:
    import tui_fakes

    return tui_fakes.running_status(gpus=2, installs=True)


def test_apply_status_fills_every_panel() -> None:
    model = DashboardModel()
    changed = model.apply_status(_status(), now=100.0)
    assert changed == {"link", "backends", "gpus", "host", "installs", "requests", "models"}
    assert model.reachable and model.state == "connected" and model.version == "0.1.0"
    assert [b.name for b in model.backends] == ["pendra", "ollama", "speaches"]
    assert model.backends[0].model_ids == ["gemma3:270m", "qwen3:8b", "phi4-mini:3.8b"]
    assert [m.id for m in model.backends[0].loaded] == ["qwen3:8b", "gemma3:270m"]
    assert model.backends[0].unusable[0]["file"] == "llama-2-7b.Q4_0.bin"
    assert model.requests.cancelled == 3 and model.host and model.host.cpu_count == 16
    assert sorted(model.gpus) == [0, 1]
    assert model.gpus[1].memory_percent == pytest.approx(100 * 32.5 / 80)
    assert model.installs[("qwen3:32b", "pendra")].job_id == "job-1"
    assert model.requests.served == 12873 and model.requests.tokens_per_s == 184.6
    assert model.uptime(now=110.0) == pytest.approx(8050.0)


def test_events_update_only_their_panel() -> None:
    model = DashboardModel()
    model.apply_status(_status(), now=0.0)
    assert model.apply_event({"kind": "state", "state": "draining"}, 1.0) == {"link"}
    assert model.state == "draining"
    changed = model.apply_event(
        {
            "kind": "install",
            "ref": "qwen3:32b",
            "backend": "pendra",
            "phase": "verifying",
            "bytes_done": 19_762_149_376,
            "bytes_total": 19_762_149_376,
        },
        1.0,
    )
    assert changed == {"installs"}
    assert model.installs[("qwen3:32b", "pendra")].phase == "verifying"
    assert model.apply_event({"kind": "requests", "in_flight": 0, "served": 13000}, 1.0) == {
        "requests"
    }
    assert (model.requests.in_flight, model.requests.served, model.requests.failed) == (
        0,
        13000,
        14,
    )
    assert model.apply_event(
        {"kind": "log", "level": "warning", "logger": "pendra.link", "message": "reconnecting"}, 1.0
    ) == {"logs"}
    assert model.logs[-1] == "WARNING pendra.link: reconnecting"
    assert model.apply_event({"kind": "something-new", "x": 1}, 1.0) == set()


def test_backends_and_models_events_resync_when_they_carry_no_list() -> None:
    model = DashboardModel()
    model.apply_status(_status(), now=0.0)
    assert model.apply_event({"kind": "backends"}, 1.0) == {"resync"}
    assert model.apply_event(
        {
            "kind": "backends",
            "backends": [{"name": "pendra", "status": "ready", "capabilities": {}, "models": []}],
        },
        1.0,
    ) == {"backends", "models"}
    assert [b.name for b in model.backends] == ["pendra"]
    assert model.apply_event(
        {"kind": "models", "backend": "pendra", "models": ["a", {"id": "b"}]}, 1.0
    ) == {"backends", "models"}
    assert model.backends[0].model_ids == ["a", "b"]
    assert model.apply_event({"kind": "models", "backend": "ollama", "models": []}, 1.0) == {
        "resync"
    }


def test_a_models_event_brings_the_files_the_backend_cannot_serve() -> None:
    model = DashboardModel()
    model.apply_status(_status(), now=0.0)
    bad = {"file": "late.gguf", "id": "late", "error": "not a GGUF file"}
    event = {"kind": "models", "backend": "pendra", "models": [], "unusable": [bad, "junk"]}
    assert model.apply_event(event, 1.0) == {"backends", "models"}
    assert model.backends[0].unusable == [bad]
    # an event without the key (an older worker) leaves the list as it was
    model.apply_event({"kind": "models", "backend": "pendra", "models": []}, 1.0)
    assert model.backends[0].unusable == [bad]
    model.apply_event({"kind": "models", "backend": "pendra", "models": [], "unusable": []}, 1.0)
    assert model.backends[0].unusable == []


def test_gpus_can_disappear_and_unreadable_values_stay_unknown() -> None:
    model = DashboardModel()
    reading = {"index": 0, "name": "A", "utilization": 40, "memory_used": 1, "memory_total": 2}
    assert model.apply_event({"kind": "gpu", "gpus": [reading]}, 0.0) == {"gpus"}
    assert model.gpus[0].memory_percent == 50.0
    model.apply_event({"kind": "gpu", "gpus": []}, 0.0)
    assert model.gpus == {}
    # Unreadable values stay None (shown as —).
    model.apply_event(
        {
            "kind": "gpu",
            "gpus": [
                {
                    "index": 3,
                    "name": "B",
                    "utilization": None,
                    "memory_used": None,
                    "memory_total": None,
                }
            ],
        },
        0.0,
    )
    assert model.gpus[3].utilization is None and model.gpus[3].memory_percent is None


def test_finished_installs_are_trimmed_to_the_newest() -> None:
    model = DashboardModel()
    for n in range(FINISHED_INSTALLS_KEPT + 3):
        model.apply_event(
            {"kind": "install", "ref": f"m:{n}", "backend": "pendra", "phase": "done"}, 0.0
        )
    model.apply_event(
        {"kind": "install", "ref": "x:1", "backend": "pendra", "phase": "downloading"}, 0.0
    )
    refs = [v.ref for v in model.installs.values()]
    assert len(refs) == FINISHED_INSTALLS_KEPT + 1
    assert refs[0] == "m:3" and refs[-1] == "x:1"


def test_unreachable_keeps_data_and_stops_uptime() -> None:
    model = DashboardModel()
    model.apply_status(_status(), now=0.0)
    model.mark_unreachable("No Pendra worker is running for this PENDRA_HOME.")
    assert model.state == "not running" and not model.reachable
    assert model.uptime(now=5.0) is None
    assert model.backends  # last known data stays on screen, dimmed


def test_small_dashboard_helpers() -> None:
    assert capability_summary({"chat": True, "transcription": True, "install": True}) == (
        "chat speech"
    )
    assert capability_summary({}) == "—"
    assert (
        load_level(None) == "light" and load_level(50) == "moderate" and load_level(75) == "heavy"
    )
    assert short_gpu_name("NVIDIA H100 80GB HBM3") == "H100 80GB HBM3"
    assert short_gpu_name("NVIDIA GeForce RTX 4090") == "RTX 4090"


def test_widget_text_functions() -> None:
    model = DashboardModel()
    model.apply_status(_status(), now=0.0)
    assert backend_cells(model.backends[0]) == {
        "backend": "pendra (built-in)",
        "status": "ready",
        "endpoint": "in-process",
        "models": "3",
        "capabilities": "chat embed",
        "detail": "",
    }
    assert backend_cells(model.backends[2])["endpoint"] == "http://localhost:8000"
    line = install_line(model.installs[("qwen3:32b", "pendra")]).plain
    assert line == "qwen3:32b → pendra  downloading\n7.9/19.8 GB  48.2 MB/s  ETA 4m 06s"
    # queued: nothing to measure yet, so no "0 B / ?" line (and no bar)
    assert install_line(model.installs[("gemma3:27b", "ollama")]).plain == (
        "gemma3:27b → ollama  queued"
    )
    assert row_id(model.installs[("gemma3:27b", "ollama")]) == "install-gemma3_27b-ollama"
    assert gpu_title(model.gpus[0]).plain == "GPU 0 H100 80GB HBM3  53°C  210 W"
    assert util_label(model.gpus[0]) == "util   35%"
    assert mem_label(model.gpus[1]) == "mem 32/80 GiB"
    model.gpus[1].memory_total = None
    assert mem_label(model.gpus[1]) == "mem 32.5 GiB/—"
    connected = LinkInfo("connected", 8040, "0.1.0")
    assert link_text(connected).plain == "Pendra worker  ● connected  ·  up 2h 14m  ·  v0.1.0"
    stopped = link_text(LinkInfo("not running", drained=True)).plain
    assert (
        stopped == "Pendra worker  ✗ not running  ·  stopped after draining  ·  R start it  r retry"
    )
    named = LinkInfo("connected", 8040, "0.1.0", name="lab-1", worker_id="wrk-5f3a")
    assert link_text(named).plain == (
        "Pendra worker lab-1  ● connected  ·  up 2h 14m  ·  v0.1.0  ·  wrk-5f3a"
    )
    assert "wrk-5f3a" not in link_text(named, 60).plain  # the id is the first to give way
    long_name = LinkInfo("connected", name="a-very-long-worker-name-from-a-hostname")
    assert "a-very-long-worker-name…" in link_text(long_name).plain


def test_the_bar_shows_private_inference_from_status_and_events() -> None:
    import tui_fakes

    model = DashboardModel()
    model.apply_status(tui_fakes.running_status(), now=0.0)
    assert model.private == PrivateInferenceView(True, "3f9a1c2b7d4e5f60" + "0" * 48, 1204, 0)
    info = LinkInfo("connected", 8040, "0.1.0", private=model.private)
    assert link_text(info).plain == (
        "Pendra worker  ● connected  ·  up 2h 14m  ·  private 3f9a1c2b · 1,204 served  ·  v0.1.0"
    )
    event = {"kind": "private_inference", "enabled": True, "fingerprint": "ab" * 32, "served": 2}
    assert model.apply_event(event, now=1.0) == {"link"}
    assert private_text(model.private).plain == "private abababab · 2 served"
    off = {"kind": "private_inference", "enabled": False, "fingerprint": None}
    model.apply_event(off, now=2.0)
    assert private_text(model.private).plain == "private off"
    # Not shown while the worker is not running, nor for a worker that does not report it.
    assert "private" not in link_text(LinkInfo("not running", private=model.private)).plain
    assert private_text(None).plain == ""


# -- catalogue ---------------------------------------------------------------------------------
def _rows() -> list[CatalogueRow]:
    doc = json.loads((DATA / "catalogue.json").read_text())
    return rows_from_catalogue(doc["models"], lambda m, v: "gpu" if v["tag"] == "8b" else None)


def test_rows_flatten_variants_and_skip_malformed_entries() -> None:
    rows = _rows()
    assert [r.ref for r in rows] == [
        "qwen3:8b",
        "qwen3:32b",
        "gemma3:270m",
        "gemma3:27b",
        "nomic-embed-text:v1.5",
        "flux-schnell:12b",
        "whisper:large-v3-turbo",
    ]
    assert rows[0].verdict == "gpu" and rows[1].verdict is None
    assert rows[0].backends == ("pendra", "ollama", "lmstudio")
    assert (
        rows_from_catalogue(
            [{"id": "x", "task": "chat", "variants": [{"tag": "1b", "size_bytes": "not a number"}]}]
        )
        == []
    )


def test_objects_work_as_well_as_json() -> None:
    class Variant:
        tag, parameters, quantisation, context_length, size_bytes = "1b", "1B", "Q8_0", 4096, 10
        backends = ("pendra",)

    class Model:
        id, name, task, family, description = "tiny", "Tiny", "chat", "t", ""
        variants = (Variant(),)

    [row] = rows_from_catalogue([Model()])
    assert row.ref == "tiny:1b" and row.quantisation == "Q8_0"


def test_filter_by_words_and_task() -> None:
    rows = _rows()
    assert [r.ref for r in filter_rows(rows, "", None)] == [r.ref for r in rows]
    assert [r.ref for r in filter_rows(rows, "GEMMA", None)] == ["gemma3:270m", "gemma3:27b"]
    assert [r.ref for r in filter_rows(rows, "qwen 32b", None)] == ["qwen3:32b"]
    assert [r.ref for r in filter_rows(rows, "speaches", None)] == ["whisper:large-v3-turbo"]
    assert [r.ref for r in filter_rows(rows, "", "embedding")] == ["nomic-embed-text:v1.5"]
    assert filter_rows(rows, "qwen", "image") == []


def test_task_cycle_and_default_backend() -> None:
    assert [next_task(t) for t in (None, "chat", "embedding", "image", "transcription")] == [
        "chat",
        "embedding",
        "image",
        "transcription",
        None,
    ]
    rows = {r.ref: r for r in _rows()}
    assert default_backend(rows["qwen3:8b"], ["pendra", "ollama"]) == "pendra"
    assert default_backend(rows["qwen3:8b"], ["ollama"]) == "ollama"
    assert default_backend(rows["flux-schnell:12b"], ["pendra"]) is None


# -- setup decisions ---------------------------------------------------------------------------
def test_blocking_checks_and_their_text() -> None:
    import tui_fakes

    failing = [c for c in tui_fakes.FAILING_CHECKS if c.blocks]
    assert [c.id for c in failing] == ["disk"]
    assert "Free disk for models" in (blocked_text(failing) or "")
    assert blocked_text([]) is None
    from rich.console import Console

    def plain(renderable: object, width: int = 60) -> str:
        console = Console(width=width, record=True, color_system=None)
        console.print(renderable)
        return console.export_text()

    text = plain(check_text(failing[0]))
    assert text.startswith("✗ Free disk for models  required")
    assert "fix: free at least 10 GB" in text
    # wrapped lines keep their indent under the text they continue
    narrow = plain(check_text(failing[0]), width=40).splitlines()
    assert all(line.startswith("  ") for line in narrow[1:] if line.strip())
    ok = plain(check_text(Check("x", "Fine", "ok", True, "all good", "never shown")))
    assert "fix" not in ok
    ordered = [check_line(c).key for c in tui_fakes.FAILING_CHECKS]
    assert ordered == ["python", "disk", "memory", "gpu"]  # the table sorts them: see below
    from pendra_tui.widgets.sortable_table import sort_rows

    rows = sort_rows([check_line(c) for c in tui_fakes.FAILING_CHECKS], "mark", False)
    assert [r.key for r in rows] == ["disk", "gpu", "python", "memory"]
    summary = checks_summary(tui_fakes.FAILING_CHECKS).plain
    assert summary.startswith("1 failed · 1 warning · 2 passed")


def test_usable_backends_and_install_plan() -> None:
    state = SetupState(
        candidates=[
            BackendCandidate("ollama", "http://localhost:11434", "ready"),
            BackendCandidate("vllm", None, "unreachable"),
            BackendCandidate("lmstudio", None, "disabled"),
        ]
    )
    assert usable_backends(state) == ["pendra", "ollama"]
    assert backend_enabled(state, "vllm") and not backend_enabled(state, "lmstudio")
    assert backend_enabled(state, "tgi")  # not found is still auto-discovered later
    state.endpoints["ollama"] = OFF
    state.builtin_enabled = False
    assert usable_backends(state) == []
    state.endpoints["speaches"] = "http://box:8000"
    state.verified["speaches"] = BackendCandidate("speaches", "http://box:8000", "ready")
    assert usable_backends(state) == ["speaches"]
    rows = {r.ref: r for r in _rows()}
    planned, impossible = install_plan(
        ["qwen3:8b", "whisper:large-v3-turbo", "gone:1b"], rows, ["pendra"]
    )
    assert planned == [("qwen3:8b", "pendra")]
    assert impossible == ["whisper:large-v3-turbo", "gone:1b"]


def test_review_text_lists_what_will_happen() -> None:
    state = SetupState(
        key_path=Path("/home/u/.pendra/worker.key"),
        key_note="stored; accepted",
        catalogue=CatalogueData(_rows()),
        selected=["qwen3:8b", "flux-schnell:12b"],
        candidates=[],
    )
    text = review_text(state, ["start the worker"]).plain
    assert "/home/u/.pendra/worker.key (stored; accepted)" in text
    assert "qwen3:8b → pendra" in text
    assert "✗ flux-schnell:12b: no enabled backend here can install it" in text
    assert "• start the worker" in text


# -- config writer and key store (real files) ---------------------------------------------------
def test_backend_changes_replace_every_spelling() -> None:
    changes = backend_changes({"ollama": OFF, "vllm": "http://b:8000"}, False)
    assert changes == {
        "backends.ollama": None,
        "backends.ollama_endpoint": None,
        "ollama_endpoint": "off",
        "backends.vllm": None,
        "backends.vllm_endpoint": None,
        "vllm_endpoint": "http://b:8000",
        "builtin.enabled": False,
    }


def test_identity_changes_are_checked_like_the_worker_reads_them() -> None:
    changes = identity_changes("https://cp.example/", "  lab box ")
    assert changes["app_server_ws_url"] == "wss://cp.example"
    assert changes["api_url"] is None  # the old name goes, so two never disagree
    assert changes["worker_name"] == "lab box"
    with pytest.raises(ConfigError, match="app_server_ws_url"):
        identity_changes("ftp://x", "a")
    with pytest.raises(ConfigError, match="worker_name"):
        identity_changes("wss://x", "   ")


def test_saved_choices_are_what_the_worker_reads(pendra_home: Path) -> None:
    config = pendra_home / "config.yaml"
    config.write_text(
        "# my settings\nlog_level: debug\nbackends:\n  ollama_endpoint: http://old:1\n"
    )
    config.chmod(0o644)
    save_backend_choices(
        config,
        {"ollama": "http://gpu-box.lan:11434", "vllm": OFF, "lmstudio": AUTO},
        builtin_enabled=True,
    )
    settings = load_settings()
    assert settings.log_level == "debug"
    assert settings.backend("ollama").url == "http://gpu-box.lan:11434"
    assert settings.backend("vllm").mode is EndpointMode.DISABLED
    assert settings.backend("lmstudio").mode is EndpointMode.AUTO
    assert settings.builtin_enabled is True
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert sorted(p.name for p in pendra_home.iterdir()) == [".config.lock", "config.yaml"]


def test_broken_config_is_left_alone_with_a_clear_error(pendra_home: Path) -> None:
    config = pendra_home / "config.yaml"
    config.write_text("backends: [not yaml")
    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        save_backend_choices(config, {"ollama": OFF}, True)
    assert caught.value.hint
    assert config.read_text() == "backends: [not yaml"


def test_a_local_control_plane_is_recognised() -> None:
    from rich.console import Console
    from rich.text import Text

    from pendra_tui.screens.key import is_local, sandbox_hint, shown_path

    assert is_local("http://127.0.0.1:8787") and is_local("http://localhost:8787/")
    assert is_local("http://[::1]:8787") and is_local("http://127.1.2.3")
    assert not is_local("https://api.pendra.ai") and not is_local("not a url")
    key = Path("/home/ada/.pendra/sandbox/worker.key")
    assert shown_path(key, Path("/home/ada/.pendra"), Path("/home/ada")) == (
        "~/.pendra/sandbox/worker.key"
    )
    elsewhere = Path("/srv/pendra/sandbox/worker.key")
    assert shown_path(elsewhere, Path("/srv/pendra"), Path("/home/ada")) == (
        "$PENDRA_HOME/sandbox/worker.key"
    )
    hint = sandbox_hint("~/.pendra/sandbox/worker.key", True)
    assert "~/.pendra/sandbox/worker.key" in hint and "ctrl+o" in hint
    for exists in (True, False):  # it fits where the two-line explanation was, at 80 columns
        longest = Text(sandbox_hint("$PENDRA_HOME/sandbox/worker.key", exists))
        assert len(longest.wrap(Console(width=76), 76)) == 2, longest  # 76: the step's width


def test_key_store_writes_0600_atomically(pendra_home: Path) -> None:
    from worker.keys import generate_key

    key = generate_key(console_form=True)
    store = SettingsKeyStore(load_settings())
    assert not store.has_key() and store.where() is None
    path = store.store(key.text).path
    assert path == pendra_home / "config.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"gpu_worker_private_key: {key.text}" in path.read_text()
    assert store.has_key() and "config.yaml" in (store.where() or "")
    assert sorted(p.name for p in pendra_home.iterdir()) == [".config.lock", "config.yaml"]


def test_clean_key_strips_pasted_whitespace() -> None:
    assert clean_key("  pwk_test_ab\ncd\r\n\t") == "pwk_test_abcd"
    assert clean_key("\n \n") == ""


def test_dashboard_shows_only_backends_the_worker_has() -> None:
    def view(name: str, status: str, endpoint: str | None) -> BackendView:
        return BackendView(name, endpoint, status, {}, [])

    backends = [
        view("pendra", "ready", "/models"),
        view("ollama", "ready", "http://localhost:11434"),
        view("vllm", "unreachable", "http://gpu-box:8000"),  # configured, failing: shown
        view("lmstudio", "unreachable", None),  # auto-discovery found nothing
        view("speaches", "unreachable", None),
        view("tgi", "disabled", None),
    ]
    shown, note = shown_backends(backends)
    assert [b.name for b in shown] == ["pendra", "ollama", "vllm"]
    assert note == "2 unreachable (not found) · 1 disabled"
    assert shown_backends(backends[:2]) == (backends[:2], "")


def test_backend_columns_give_way_least_telling_first() -> None:
    cells = backend_cells(BackendView("ollama", "http://localhost:11434", "ready", {}, []))
    columns = BackendsTable.COLUMNS
    widths = {c.key: max(len(c.label) + 2, len(cells[c.key])) for c in columns}
    assert widths["endpoint"] == len("http://localhost:11434")
    everything = sum(w + 2 for w in widths.values())
    keys = [c.key for c in columns]
    assert fit_columns(columns, widths, everything) == keys
    assert fit_columns(columns, widths, everything - 1) == keys[:-1]
    assert fit_columns(columns, widths, 30) == ["backend", "status"]


def test_events_as_the_real_worker_sends_them() -> None:
    """Shapes from worker.installs.manager, worker.admin.log_events and the admin stream."""
    model = DashboardModel()
    job = {"kind": "install", "job_id": "j1", "ref": "gemma3:270m", "backend": "pendra"}
    assert model.apply_event({**job, "phase": "downloading", "bytes_done": 5}, 0) == {"installs"}
    assert model.installs[("gemma3:270m", "pendra")].job_id == "j1"
    # done changes the backend's model list: the screen fetches the status again (once)
    assert model.apply_event({**job, "phase": "done"}, 0) == {"installs", "resync"}
    assert model.apply_event({**job, "phase": "done"}, 0) == {"installs"}
    removed = {"kind": "install", "ref": "gemma3:270m", "backend": "pendra", "phase": "removed"}
    assert model.apply_event(removed, 0) == {"installs", "resync"}
    assert model.installs[("gemma3:270m", "pendra")].finished
    failed = {**job, "phase": "failed", "error": "SHA-256 mismatch.", "hint": "install it again"}
    model.apply_event(failed, 0)
    line = install_line(model.installs[("gemma3:270m", "pendra")]).plain
    assert line.endswith("failed  SHA-256 mismatch.  → install it again")
    # the worker's own formatted line, as the log tail has it
    log = {"kind": "log", "level": "info", "logger": "worker.x", "message": "m", "line": "L 1\n"}
    assert model.apply_event(log, 0) == {"logs"} and model.logs[-1] == "L 1"
    assert model.apply_event({"kind": "log", "level": "warning", "message": "m"}, 0) == {"logs"}
    assert model.logs[-1] == "WARNING pendra: m"
    # events were dropped for this slow client: also resync
    dropped = {"kind": "requests", "served": 3, "dropped_before": 12}
    assert model.apply_event(dropped, 0) == {"requests", "resync"}
    assert model.requests.served == 3


def test_progress_amounts_share_a_unit_when_they_can() -> None:
    assert format_progress(7_900_000_000, 19_800_000_000) == "7.9/19.8 GB"
    assert format_progress(512_000_000, 19_800_000_000) == "512 MB/19.8 GB"
    assert format_progress(0, None) == "0 B / ?"


def test_a_backend_with_one_model_says_model() -> None:
    from pendra_tui.screens.backends import models_text

    assert [models_text(n) for n in (0, 1, 3)] == ["0 models", "1 model", "3 models"]
