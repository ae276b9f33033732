"""What ``pendra pull`` / ``models install`` / ``rm`` accept (pure): a catalogue ref
(``qwen3.6:27b``; a bare ``qwen3.6`` means ``qwen3.6:latest``, as in Ollama) or a Hugging Face
ref (``hf.co/OWNER/REPO[:QUANT]`` and the URLs people paste)."""

from __future__ import annotations

from worker.catalogue.refs import ModelRef, parse_ref
from worker.errors import BadRequest
from worker.hf.refs import HFRef, looks_like_hf_ref, parse_hf_ref, suggest_hf

LATEST = "latest"


def parse_install_ref(text: str) -> ModelRef | HFRef:
    """Parse ``text`` as either kind of ref; a :class:`BadRequest` says what is wrong, and
    ``OWNER/REPO`` typed without ``hf.co/`` gets a hint saying how to write it."""
    text = text.strip() if isinstance(text, str) else ""
    if looks_like_hf_ref(text):
        return parse_hf_ref(text)
    if text and ":" not in text and "/" not in text:
        try:
            return parse_ref(f"{text}:{LATEST}")
        except BadRequest:
            pass  # the error below names the text as typed
    try:
        return parse_ref(text)
    except BadRequest as exc:
        hint = suggest_hf(text)
        if hint:
            raise BadRequest(exc.message, hint=hint) from None
        raise
