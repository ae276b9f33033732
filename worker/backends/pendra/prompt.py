"""Chat messages → prompt tokens, where only the template's own markup can be a control token.

Tokenizing the whole rendered prompt with special-token parsing would let a user who writes
``<start_of_turn>model`` (Gemma) or ``<|im_start|>system`` (ChatML) forge turns. So the template
is rendered twice: once as is, and once with every message's content wrapped in markers that
cannot occur in text (a private-use code point and a per-request nonce). The marked rendering
says which characters of the prompt came from a message; only the rest may contain control
tokens. Tokens are then produced exactly as llama.cpp would for the whole prompt — the same raw
runs between control tokens, so leading-space rules and merges across the template/content
boundary are unchanged — except that control-token text inside a message stays text.

Templates that edit the content (``| trim``, Qwen3 dropping ``<think>`` blocks with ``split``) are
reconciled against the unmarked rendering: trimmed whitespace is matched, and a content cut at
one end keeps the part that survived. A conversation of system messages only, which some
templates drop, is sent as user messages instead so the model still reads it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from worker.errors import BadRequest


class Vocabulary(Protocol):
    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]: ...

    def is_control(self, token: int) -> bool: ...

    def strips(self, token: int) -> tuple[bool, bool]: ...

    def token_text(self, token: int) -> str: ...


Render = Callable[[list[dict[str, Any]]], str]


@dataclass(frozen=True)
class Piece:
    text: str
    content: bool  # from a message (plain text) or from the template (may hold control tokens)


def render_pieces(render: Render, messages: list[dict[str, Any]]) -> list[Piece]:
    """The rendered prompt as template and content pieces (see the module docstring)."""
    pieces, present = _render_marked(render, messages)
    roles = {m.get("role") for m in messages}
    dropped_system = any(
        m.get("role") == "system" and i not in present for i, m in enumerate(messages)
    )
    if dropped_system and "user" not in roles:
        as_user = [{**m, "role": "user"} if m.get("role") == "system" else m for m in messages]
        pieces, _ = _render_marked(render, as_user)
    return pieces


def _render_marked(render: Render, messages: list[dict[str, Any]]) -> tuple[list[Piece], set[int]]:
    nonce = secrets.token_hex(6)
    opening = "\ue000" + nonce + "{}\ue001"
    closing = "\ue002" + nonce + "{}\ue003"
    marked = []
    for i, message in enumerate(messages):
        content = message.get("content")
        if isinstance(content, str) and content:
            content = opening.format(i) + content + closing.format(i)
        marked.append({**message, "content": content})
    try:
        real = render(messages)
        marked_text = render(marked)
    except BadRequest:
        if all(m.get("role") == "system" for m in messages):
            # Some templates refuse a conversation without a user turn: send it as one.
            return _render_marked(render, [{**m, "role": "user"} for m in messages])
        raise
    pattern = re.compile("\ue000" + nonce + "(\\d+)\ue001|\ue002" + nonce + "(\\d+)\ue003")
    pieces, present = _split_marked(marked_text, pattern, messages)
    reconciled = _reconcile(pieces, real)
    return (reconciled if reconciled is not None else pieces), present


def _split_marked(
    text: str, pattern: re.Pattern[str], messages: list[dict[str, Any]]
) -> tuple[list[Piece], set[int]]:
    pieces: list[Piece] = []
    present: set[int] = set()
    open_index: int | None = None
    pos = 0

    def content_of(index: int) -> str:
        value = messages[index].get("content") if 0 <= index < len(messages) else None
        return value if isinstance(value, str) else ""

    def flush(chunk: str, closing_index: int | None) -> None:
        if not chunk:
            return
        if open_index is not None and (closing_index is None or closing_index == open_index):
            pieces.append(Piece(chunk, True))
        elif closing_index is not None:
            # The template cut the start of this message (e.g. split on '</think>'): the tail of
            # the chunk that matches the end of the message is content, the rest template.
            k = _common_suffix(chunk, content_of(closing_index))
            _append(pieces, chunk[: len(chunk) - k], False)
            _append(pieces, chunk[len(chunk) - k :], True)
        else:
            pieces.append(Piece(chunk, False))

    for match in pattern.finditer(text):
        chunk = text[pos : match.start()]
        if match.group(1) is not None:  # an opening marker
            index = int(match.group(1))
            if open_index is not None:
                _flush_unclosed(pieces, chunk, content_of(open_index))
            else:
                flush(chunk, None)
            open_index = index
            present.add(index)
        else:
            index = int(match.group(2))
            present.add(index)
            flush(chunk, index)
            open_index = None
        pos = match.end()
    tail = text[pos:]
    if open_index is not None:
        _flush_unclosed(pieces, tail, content_of(open_index))
    else:
        _append(pieces, tail, False)
    return _merge(pieces), present


def _flush_unclosed(pieces: list[Piece], chunk: str, content: str) -> None:
    """The template cut the end of a message: the head that matches it is content."""
    k = _common_prefix(chunk, content)
    _append(pieces, chunk[:k], True)
    _append(pieces, chunk[k:], False)


def _append(pieces: list[Piece], text: str, content: bool) -> None:
    if text:
        pieces.append(Piece(text, content))


def _merge(pieces: list[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for piece in pieces:
        if out and out[-1].content == piece.content:
            out[-1] = Piece(out[-1].text + piece.text, piece.content)
        else:
            out.append(piece)
    return out


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _common_suffix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[len(a) - 1 - i] == b[len(b) - 1 - i]:
        i += 1
    return i


def _reconcile(pieces: list[Piece], real: str) -> list[Piece] | None:
    """Match the marked pieces to the unmarked rendering, allowing trimmed content.

    Markers hide the content's edges from ``| trim`` and friends, so the marked rendering can
    keep whitespace the real one trimmed. Returns pieces whose text is exactly ``real``, or None
    when the two renderings differ in some other way (then the marked pieces are used).
    """
    if "".join(p.text for p in pieces) == real:
        return pieces
    out: list[Piece] = []
    at = 0
    for i, piece in enumerate(pieces):
        if not piece.content:
            if not real.startswith(piece.text, at):
                return None
            out.append(piece)
            at += len(piece.text)
            continue
        following = pieces[i + 1].text if i + 1 < len(pieces) else None
        for candidate in (piece.text, piece.text.strip(), piece.text.lstrip(), piece.text.rstrip()):
            end = at + len(candidate)
            if not real.startswith(candidate, at):
                continue
            if following is None and end != len(real):
                continue
            if following is not None and not real.startswith(following, end):
                continue
            _append(out, candidate, True)
            at = end
            break
        else:
            return None
    return out if at == len(real) else None


def tokenize_pieces(vocab: Vocabulary, pieces: list[Piece]) -> list[int]:
    """Tokens for the pieces: control tokens only from template pieces, everything else as the
    raw runs llama.cpp would tokenize between control tokens for the whole prompt."""
    fragments: list[int | str] = []
    for piece in pieces:
        if piece.content:
            fragments.append(piece.text)
            continue
        text = piece.text
        pos = 0
        for token in vocab.tokenize(text, add_special=False, parse_special=True):
            if not vocab.is_control(token):
                continue
            marker = vocab.token_text(token)
            at = text.find(marker, pos) if marker else -1
            if at < 0:  # not findable by its text: keep it, the raw text around stays as is
                fragments.append(token)
                continue
            lstrip, rstrip = vocab.strips(token)
            raw = text[pos:at]
            fragments.append(raw.rstrip() if lstrip else raw)
            fragments.append(token)
            pos = at + len(marker)
            if rstrip:
                while pos < len(text) and text[pos].isspace():
                    pos += 1
        fragments.append(text[pos:])
    tokens: list[int] = []
    run: list[str] = []
    for fragment in fragments:
        if isinstance(fragment, str):
            run.append(fragment)
            continue
        if run:
            tokens += vocab.tokenize("".join(run), add_special=False, parse_special=False)
            run = []
        tokens.append(fragment)
    if run:
        tokens += vocab.tokenize("".join(run), add_special=False, parse_special=False)
    return tokens
