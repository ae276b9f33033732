"""A generic OpenAI-compatible endpoint (``OPENAI_ENDPOINT``), optionally requiring a bearer key."""

from __future__ import annotations

from .openai_surface import Flavour, OpenAIEmulator


class OpenAIGenericEmulator(OpenAIEmulator):
    kind = "openai"
    flavour = Flavour(owned_by="system")
    serves_images = True
    serves_transcription = True
