"""``pendra setup``: set up (or change) this worker — control plane, key, name, backends.

On a terminal it opens the app's setup flow, pre-filled from the current settings, also on a
machine that is already configured. Without a terminal (or with ``--plain``) it asks the same
questions as plain prompts on stdin — Enter keeps the value shown in brackets — and with
``--yes`` it asks nothing: what the flags give changes, everything else stays. Either way the
answers are checked as the worker reads them, the key is checked live with the control plane
(unless ``--no-verify``), and everything is written to config.yaml (0600) in one go: the key where
the worker reads it (:func:`worker.keys.store_key`). The worker id is created and saved too.

The key is never taken from the command line: ``--key-file FILE``, ``--key-stdin``, or the hidden
prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from worker.errors import ConfigError, PendraError

if TYPE_CHECKING:
    from worker.keys import WorkerKey
    from worker.settings import Settings

ORDER = 5
PROMPTED_BACKENDS = ("ollama", "lmstudio", "speaches", "vllm")
"""The external backends the plain prompts ask about (the documented ones); ``--backend`` takes
every kind."""
MAX_KEY_INPUT = 4096


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "setup",
        help="set up or change this worker: control plane, key, name, backends",
        description=(
            "Set up this worker, or change how it is set up: the control plane, the worker key, "
            "its name and its backends, saved to $PENDRA_HOME/config.yaml (mode 0600). On a "
            "terminal this opens the setup flow, pre-filled; elsewhere (or with --plain) it asks "
            "plain questions on stdin, where Enter keeps the current value; --yes asks nothing "
            "and changes only what the flags give."
        ),
    )
    parser.add_argument("--plain", action="store_true", help="plain prompts, not the app")
    parser.add_argument(
        "--yes", "-y", action="store_true", help="no questions: apply the flags, keep the rest"
    )
    parser.add_argument("--url", metavar="URL", help="the control plane (app_server_ws_url)")
    parser.add_argument("--name", metavar="NAME", help="the worker's name (worker_name)")
    key = parser.add_mutually_exclusive_group()
    key.add_argument("--key-file", type=Path, metavar="FILE", help="read the worker key from FILE")
    key.add_argument("--key-stdin", action="store_true", help="read the worker key from stdin")
    parser.add_argument(
        "--backend",
        action="append",
        default=[],
        metavar="KIND=VALUE",
        help="a backend endpoint: auto, off or a URL (e.g. ollama=off); repeatable",
    )
    parser.add_argument(
        "--builtin", choices=("on", "off"), help="the built-in llama.cpp backend on or off"
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="do not check the key with the control plane"
    )
    parser.set_defaults(handler=run)


# -- answers ------------------------------------------------------------------------------------


@dataclass
class Answers:
    """What setup will write; ``None`` keeps the current value."""

    server_url: str | None = None
    worker_name: str | None = None
    key: WorkerKey | None = None
    endpoints: dict[str, str] = field(default_factory=dict)
    builtin_enabled: bool | None = None


def parse_backend_flag(text: str) -> tuple[str, str]:
    """``ollama=off`` → ("ollama", "off"); ``auto`` (or nothing) means auto-discover."""
    from worker.settings import BACKEND_KINDS, prepare_value

    kind, sep, value = text.partition("=")
    kind = kind.strip().lower()
    if not sep or kind not in BACKEND_KINDS:
        raise ConfigError(
            f"--backend {text!r}: expected KIND=VALUE with KIND one of {', '.join(BACKEND_KINDS)}",
            hint="e.g. --backend ollama=http://localhost:11434 or --backend vllm=off",
        )
    value = "" if value.strip().lower() == "auto" else value.strip()
    spec = _spec(f"{kind}_endpoint")
    stored, _note = prepare_value(spec, value)
    return kind, str(stored)


def _spec(key: str) -> Any:
    from worker.settings import find_spec

    spec, _nearest = find_spec(key)
    assert spec is not None, key
    return spec


def _read_key_file(path: Path) -> WorkerKey:
    from worker.keys import parse_key

    try:
        with path.open(encoding="utf-8") as handle:
            return parse_key(handle.read(MAX_KEY_INPUT))
    except FileNotFoundError:
        raise ConfigError(f"--key-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--key-file {path}: cannot read it ({exc})") from None


def answers_from_flags(args: argparse.Namespace, stdin: TextIO) -> Answers:
    from worker.keys import parse_key

    answers = Answers()
    if args.url is not None:
        answers.server_url = _checked("app_server_ws_url", args.url)
    if args.name is not None:
        answers.worker_name = _checked("worker_name", args.name)
    if args.key_file is not None:
        answers.key = _read_key_file(args.key_file)
    elif args.key_stdin:
        answers.key = parse_key(stdin.read(MAX_KEY_INPUT))
    for text in args.backend:
        kind, value = parse_backend_flag(text)
        answers.endpoints[kind] = value
    if args.builtin is not None:
        answers.builtin_enabled = args.builtin == "on"
    return answers


def _checked(key: str, raw: str) -> str:
    from worker.settings import prepare_value

    value, _note = prepare_value(_spec(key), raw)
    return str(value)


class Prompter:
    """Plain questions: the prompt on stderr, the answer from ``stdin``; Enter or the end of
    input keeps the default. A bad answer is said and asked again (up to three times)."""

    def __init__(self, stdin: TextIO, err: TextIO, *, secret_reader: Callable[[str], str]):
        self.stdin = stdin
        self.err = err
        self.secret_reader = secret_reader
        self.ended = False

    def ask(self, question: str, default: str, check: Callable[[str], str]) -> str:
        for _attempt in range(3):
            shown = f" [{default}]" if default else ""
            self.err.write(f"{question}{shown}: ")
            self.err.flush()
            line = "" if self.ended else self.stdin.readline()
            if not line and not self.ended:
                self.ended = True
                self.err.write("\n")
            answer = line.strip()
            if not answer:
                return default
            try:
                return check(answer)
            except ConfigError as exc:
                self.err.write(f"  {exc.message}\n")
        raise ConfigError(f"{question}: no usable answer after three tries")

    def ask_secret(self, question: str) -> str:
        if self.ended:
            return ""
        return self.secret_reader(f"{question}: ").strip()


def answers_from_prompts(
    settings: Settings, flags: Answers, prompter: Prompter, has_key: bool
) -> Answers:
    """Ask for everything the flags did not give."""
    from worker.keys import KeyProblem, parse_key
    from worker.settings import EndpointMode

    answers = replace(flags, endpoints=dict(flags.endpoints))
    if answers.server_url is None:
        answers.server_url = prompter.ask(
            "Control plane", settings.server_url, lambda a: _checked("app_server_ws_url", a)
        )
    if answers.key is None:
        keep = " (Enter keeps the stored key)" if has_key else ""
        for _attempt in range(3):
            text = prompter.ask_secret(
                f"Worker private key from the Pendra console, input hidden{keep}"
            )
            if not text:
                break
            try:
                answers.key = parse_key(text)
                break
            except KeyProblem as exc:
                prompter.err.write(f"  {exc.one_line()}\n")
    if answers.worker_name is None:
        answers.worker_name = prompter.ask(
            "Worker name", settings.worker_name, lambda a: _checked("worker_name", a)
        )
    for kind in PROMPTED_BACKENDS:
        if kind in answers.endpoints:
            continue
        current = settings.backend(kind)
        shown = {EndpointMode.AUTO: "auto", EndpointMode.DISABLED: "off"}.get(
            current.mode, current.url or ""
        )
        value = prompter.ask(
            f"{kind} endpoint (auto, off or a URL)",
            shown,
            lambda a, kind=kind: parse_backend_flag(f"{kind}={a}")[1] or "auto",
        )
        if value != shown:
            answers.endpoints[kind] = "" if value == "auto" else value
    if answers.builtin_enabled is None:
        current = "on" if settings.builtin_enabled else "off"
        value = prompter.ask("Built-in llama.cpp backend (on/off)", current, _on_off)
        if value != current:
            answers.builtin_enabled = value == "on"
    return answers


def _on_off(answer: str) -> str:
    word = answer.strip().lower()
    if word in {"on", "yes", "y", "true", "1"}:
        return "on"
    if word in {"off", "no", "n", "false", "0"}:
        return "off"
    raise ConfigError(f"{answer!r}: answer on or off")


# -- applying ----------------------------------------------------------------------------------


def file_edits(answers: Answers) -> dict[str, Any]:
    """The config.yaml edits for ``answers`` (the key is stored separately)."""
    from worker.settings import file_changes

    changes: dict[str, Any] = {}
    if answers.server_url is not None:
        changes.update(file_changes(_spec("app_server_ws_url"), answers.server_url))
    if answers.worker_name is not None:
        changes.update(file_changes(_spec("worker_name"), answers.worker_name))
    for kind, value in answers.endpoints.items():
        changes.update(file_changes(_spec(f"{kind}_endpoint"), value))
    if answers.builtin_enabled is not None:
        changes["builtin.enabled"] = answers.builtin_enabled
    return changes


async def verify(settings: Settings, key: WorkerKey, server_url: str | None) -> tuple[bool, str]:
    """(usable, what to say): refused keys are not usable; an unreachable control plane is."""
    from worker.link.verify import verify_key
    from worker.settings import parse_control_plane_url

    if server_url:
        settings = replace(settings, api_url=parse_control_plane_url(server_url))
    result = await verify_key(settings, key)
    if result.status == "valid":
        return True, f"accepted by the control plane at {settings.server_url}"
    if result.status == "unreachable":
        return True, f"not checked: {result.message}"
    return False, result.message


def run(args: argparse.Namespace) -> int:
    from worker.settings import load_settings

    settings = load_settings()
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive and not (args.plain or args.yes) and not _has_answers(args):
        from worker.cli import _launch_ui

        args.setup = True
        return _launch_ui(args)
    return run_plain(args, settings, sys.stdin, sys.stdout, sys.stderr)


def _has_answers(args: argparse.Namespace) -> bool:
    given = (args.url, args.name, args.key_file, args.builtin)
    return any(v is not None for v in given) or args.key_stdin or bool(args.backend)


def run_plain(
    args: argparse.Namespace, settings: Settings, stdin: TextIO, out: TextIO, err: TextIO
) -> int:
    from worker.config_file import update_config
    from worker.identity import ensure_worker_id
    from worker.keys import backup_note, store_key
    from worker.settings import load_settings

    location = settings.key_location()
    if args.key_stdin and not args.yes:
        raise ConfigError(
            "--key-stdin reads stdin, so there is nothing left there to answer questions with",
            hint="add --yes (and the flags for what to change), or use --key-file",
        )
    answers = answers_from_flags(args, stdin)
    if not args.yes:
        import getpass

        def read_line(question: str) -> str:  # no terminal: nothing is echoed anyway
            err.write(question)
            err.flush()
            return stdin.readline()

        reader = getpass.getpass if stdin.isatty() else read_line
        prompter = Prompter(stdin, err, secret_reader=reader)
        answers = answers_from_prompts(settings, answers, prompter, location.present)
    if answers.key is None and not location.present:
        raise ConfigError(
            "No worker key: this worker cannot connect without one.",
            hint="pass --key-file FILE or --key-stdin, or answer the key question",
        )
    note = ""
    if answers.key is not None and not args.no_verify:
        usable, note = asyncio.run(verify(settings, answers.key, answers.server_url))
        if not usable:
            from worker.keys import KeyProblem

            raise KeyProblem(
                f"The control plane refused the key: {note}. Nothing was changed.",
                hint="copy the key again from the Pendra console",
            )
    notes = update_config(settings.config_file, file_edits(answers))
    saved = load_settings()
    if answers.key is not None:
        stored, key_notes = store_key(saved, answers.key)
        notes.extend([*key_notes, *filter(None, [backup_note(stored)])])
        saved = load_settings()
    saved, id_note = ensure_worker_id(saved)
    _summary(saved, answers, note, out)
    for line in [*notes, *([id_note] if id_note else []), *_env_overrides(answers)]:
        err.write(f"Note: {line}\n")
    return 0


def _summary(settings: Settings, answers: Answers, key_note: str, out: TextIO) -> None:
    from worker.keys import load_configured_key

    location = settings.key_location()
    try:
        key_line = f"{load_configured_key(settings).key_id}, from {location.source}"
    except PendraError as exc:  # a key problem the worker would stop on: say it now
        key_line = f"{location.source}: {exc.message}"
    if answers.key is not None and key_note:
        key_line += f" ({key_note})"
    backends = ", ".join(
        f"{kind}={'off' if b.mode.value == 'disabled' else b.url or 'auto'}"
        for kind, b in settings.backends.items()
        if kind in PROMPTED_BACKENDS or b.mode.value != "auto"
    )
    out.write(
        f"Saved to {settings.config_file} (mode 0600)\n"
        f"  control plane  {settings.server_url}\n"
        f"  worker         {settings.worker_name} ({settings.worker_id})\n"
        f"  key            {key_line}\n"
        f"  built-in       {'on' if settings.builtin_enabled else 'off'}\n"
        f"  backends       {backends}\n"
    )
    if settings.admin_socket.exists():
        out.write("A worker is running on this home: restart it to use these settings.\n")
    else:
        out.write("Next: `pendra service install` (runs it as a service), or `pendra --no-ui`.\n")


def _env_overrides(answers: Answers) -> list[str]:
    import os

    names = []
    if answers.server_url is not None:
        names += ["APP_SERVER_WS_URL", "PENDRA_API_URL"]
    if answers.worker_name is not None:
        names.append("WORKER_NAME")
    if answers.key is not None:
        names += ["GPU_WORKER_PRIVATE_KEY", "PENDRA_WORKER_KEY"]
    names += [f"{kind.upper()}_ENDPOINT" for kind in answers.endpoints]
    return [
        f"{name} is set in this environment and overrides config.yaml while it is set"
        for name in names
        if os.environ.get(name, "").strip()
    ]
