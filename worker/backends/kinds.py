"""The external backend kinds by name, in routing-priority order (README)."""

from __future__ import annotations

from worker.backends.external import HttpBackend
from worker.backends.llamacpp import LlamaCppBackend
from worker.backends.lmstudio import LmStudioBackend
from worker.backends.localai import LocalAIBackend
from worker.backends.ollama import OllamaBackend
from worker.backends.openai import OpenAIBackend
from worker.backends.sglang import SglangBackend
from worker.backends.speaches import SpeachesBackend
from worker.backends.tgi import TgiBackend
from worker.backends.vllm import VllmBackend
from worker.settings import BACKEND_KINDS

KINDS: dict[str, type[HttpBackend]] = {
    cls.kind: cls
    for cls in (
        OllamaBackend,
        LmStudioBackend,
        SpeachesBackend,
        VllmBackend,
        LlamaCppBackend,
        TgiBackend,
        SglangBackend,
        LocalAIBackend,
        OpenAIBackend,
    )
}

assert tuple(KINDS) == BACKEND_KINDS, "KINDS must follow worker.settings.BACKEND_KINDS"
