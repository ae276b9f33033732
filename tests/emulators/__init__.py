"""Emulated inference backends: real aiohttp servers on 127.0.0.1, one module per kind.

See :mod:`tests.emulators.base` for the API (async context manager, ``start(port=0)`` returning the
base URL, ``faults`` knobs, ``requests`` log).
"""

from .base import Emulator, Faults, Recorded
from .llamacpp import LlamaCppEmulator
from .lmstudio import LmStudioEmulator
from .localai import LocalAIEmulator
from .ollama import OllamaEmulator, OllamaModel
from .openai_generic import OpenAIGenericEmulator
from .sglang import SglangEmulator
from .speaches import SpeachesEmulator
from .tgi import TgiEmulator
from .vllm import VllmEmulator

EMULATORS: dict[str, type[Emulator]] = {
    "ollama": OllamaEmulator,
    "lmstudio": LmStudioEmulator,
    "speaches": SpeachesEmulator,
    "vllm": VllmEmulator,
    "llamacpp": LlamaCppEmulator,
    "tgi": TgiEmulator,
    "sglang": SglangEmulator,
    "localai": LocalAIEmulator,
    "openai": OpenAIGenericEmulator,
}

__all__ = [
    "EMULATORS",
    "Emulator",
    "Faults",
    "LlamaCppEmulator",
    "LmStudioEmulator",
    "LocalAIEmulator",
    "OllamaEmulator",
    "OllamaModel",
    "OpenAIGenericEmulator",
    "Recorded",
    "SglangEmulator",
    "SpeachesEmulator",
    "TgiEmulator",
    "VllmEmulator",
]
