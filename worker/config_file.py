"""``$PENDRA_HOME/config.yaml``: reading it, and changing keys in it without losing the rest.

Reading: YAML with every scalar kept as text (PyYAML's ``BaseLoader``), so ``worker_name: 007``
stays ``"007"`` and ``ollama_endpoint: off`` stays ``"off"``; the settings table types each value
itself and says which key and file a bad one came from. Nested mappings are flattened into dotted
keys, so ``builtin: {parallel: 4}`` and ``builtin.parallel: 4`` mean the same. A key written twice
is an error, not a silent "last one wins".

Writing: :func:`update_config` edits only the top-level lines of the keys it changes, so the
user's comments, order and other keys stay as they were. It holds an exclusive lock while it
reads, edits and writes (the worker persisting its id and ``pendra config set`` never lose each
other's change), and writes atomically with mode 0600: the file may hold the worker key.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from worker.atomic_files import write_atomic
from worker.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; one writer at a time there
    fcntl = None  # type: ignore[assignment]

CONFIG_NAME = "config.yaml"
PRIVATE_MODE = 0o600
HEADER = (
    "# Pendra worker settings. Environment variables override these; `pendra config list` shows\n"
    "# every key with its value and where it came from. This file can hold the worker key: 0600.\n"
)
_TOP_KEY = re.compile(
    r"""^(?P<key>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s#'"\-?:,\[\]{}&*!|>%@`][^#]*?)\s*:(?:\s|$)"""
)
_PLAIN = re.compile(r"[A-Za-z0-9_./+=][A-Za-z0-9_./:+=@~ -]*")


# -- reading ---------------------------------------------------------------------------------------


def _loader() -> Any:
    """PyYAML's text-only loader (the C one when present), refusing duplicate keys."""
    import yaml

    base = getattr(yaml, "CBaseLoader", yaml.BaseLoader)

    class StrictTextLoader(base):  # type: ignore[misc,valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _value in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is written twice", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return StrictTextLoader


def parse_yaml_text(text: str, path: Path) -> dict[str, Any]:
    """Parse config.yaml text into flat dotted keys; a syntax error names the file and line."""
    import yaml

    try:
        data = yaml.load(text, Loader=_loader())  # a text-only loader: no objects
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"{path} is not valid YAML{where}: {problem}",
            hint="fix that line, or see `pendra config list` for the keys it can hold",
        ) from None
    if data is None or data == "":
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must hold `key: value` lines (a YAML mapping), not a {type(data).__name__}",
            hint="e.g.  app_server_ws_url: wss://api.pendra.ai",
        )
    return dict(flatten(data))


def flatten(data: Mapping[Any, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` → ``("a.b", 1)``; lists and scalars are leaves."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, name + ".")
        else:
            yield name, value


def read_config(path: Path) -> dict[str, Any]:
    """The flat keys of ``path``; ``{}`` when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a settings file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text", hint="save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return parse_yaml_text(text, path)


def file_mode(path: Path) -> int | None:
    """The permission bits of ``path``, or None when it does not exist."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return None


# -- writing ---------------------------------------------------------------------------------------


def render_value(value: Any) -> str:
    """A value as YAML that reads back (with the text-only loader) as exactly the same text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), ensure_ascii=False)  # JSON is YAML flow style
    text = str(value)
    if (
        _PLAIN.fullmatch(text)
        and ": " not in text
        and " #" not in text
        and not text.endswith((":", " "))
    ):
        return text
    return yaml_quoted(text)


def render_key(key: str) -> str:
    plain = _PLAIN.fullmatch(key) and not any(ch in key for ch in ": ")
    return key if plain else yaml_quoted(key)


def _yaml_printable(code: int) -> bool:
    return (
        code in (0x09, 0x0A, 0x0D, 0x85)
        or 0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def yaml_quoted(text: str) -> str:
    """A YAML double-quoted scalar: escapes for quotes, backslashes, line breaks and every
    character YAML does not allow raw."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code == 0x85 or not _yaml_printable(code):
            out.append(f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        with contextlib.suppress(ValueError):
            return str(json.loads(raw))
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1].replace("''", "'")
    return raw


def _top_level_blocks(lines: list[str]) -> list[tuple[str, int, int]]:
    """``(key, first line, end line)`` of each top-level key; a block runs over the value's
    continuation lines (indented, or ``- `` items), not over trailing blank lines or comments."""
    blocks: list[tuple[str, int, int]] = []
    index = 0
    while index < len(lines):
        match = _TOP_KEY.match(lines[index])
        if match is None:
            index += 1
            continue
        end = index + 1
        last = index + 1
        while end < len(lines):
            line = lines[end]
            if line.strip() == "":
                end += 1
                continue
            if line[:1] in (" ", "\t") or line.startswith("-"):
                end += 1
                last = end
                continue
            break
        blocks.append((_unquote(match.group("key").strip()), index, last))
        index = last
    return blocks


def edit_text(text: str, changes: Mapping[str, Any]) -> str | None:
    """``text`` with each key in ``changes`` set (a value) or removed (``None``), touching only
    those keys' lines. ``None`` when a key to change lives inside a nested section, which a line
    edit cannot reach (the caller then rewrites the file flat)."""
    lines = text.splitlines()
    blocks = _top_level_blocks(lines)
    top = {key for key, _start, _end in blocks}
    nested = {key for key in parse_yaml_text(text, Path("config.yaml")) if key not in top}
    if any(key in nested for key in changes):
        return None
    replaced: dict[int, list[str]] = {}
    removed: set[int] = set()
    done: set[str] = set()
    for key, start, end in blocks:
        if key not in changes:
            continue
        value = changes[key]
        if value is None or key in done:  # unset, or a duplicate the loader would refuse anyway
            removed.update(range(start, end))
        else:
            replaced[start] = [f"{render_key(key)}: {render_value(value)}"]
            removed.update(range(start + 1, end))
        done.add(key)
    out: list[str] = []
    for number, line in enumerate(lines):
        if number in replaced:
            out.extend(replaced[number])
        elif number not in removed:
            out.append(line)
    for key, value in changes.items():
        if key not in done and value is not None:
            out.append(f"{render_key(key)}: {render_value(value)}")
    return "\n".join(out).rstrip("\n") + "\n" if out else ""


def render_flat(data: Mapping[str, Any]) -> str:
    """A whole config.yaml from flat keys, with the header comment."""
    body = "".join(f"{render_key(k)}: {render_value(v)}\n" for k, v in data.items())
    return HEADER + body


@contextlib.contextmanager
def config_lock(path: Path) -> Iterator[None]:
    """Exclusive lock for a read-modify-write of ``path`` (a sibling ``.config.lock`` file)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path.with_name(".config.lock"), os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
    except OSError as exc:  # a read-only home, a mount owned by someone else …
        raise ConfigError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint=f"check that {path.parent} is writable by this user",
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update_config(path: Path, changes: Mapping[str, Any]) -> list[str]:
    """Set (value) or remove (``None``) keys of ``path`` atomically, mode 0600; returns notes for
    the user (a tightened mode, a file rewritten flat)."""
    notes: list[str] = []
    with config_lock(path):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        mode = file_mode(path)
        new_text = edit_text(text, changes) if text.strip() else None
        if new_text is None:
            data = parse_yaml_text(text, path) if text.strip() else {}
            if text.strip():
                notes.append(
                    f"rewrote {path} with one `key: value` line per setting (a key to change was "
                    "inside a nested section); comments were not kept"
                )
            for key, value in changes.items():
                if value is None:
                    data.pop(key, None)
                else:
                    data[key] = value
            new_text = render_flat(data)
        if mode is not None and mode & 0o077:
            notes.append(f"{path} was readable by other users (mode {mode:o}); it is 0600 now")
        try:
            write_atomic(path, new_text.encode("utf-8"), mode=PRIVATE_MODE)
        except OSError as exc:
            raise ConfigError(
                f"cannot write {path}: {exc.strerror or exc}",
                hint=f"check that {path.parent} is writable by this user",
            ) from None
    return notes
