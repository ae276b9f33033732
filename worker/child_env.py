"""The environment a child process of the worker gets: the worker's own, minus its secrets.

The worker may hold secrets in its environment (``PENDRA_WORKER_KEY`` in a container, a Hugging
Face token, the console key under its documented name). Nothing it starts — GPU probes, model
runners, service managers — needs any of them, and a child that logs or dumps its environment
would leak them. Every subprocess the worker or the installer starts takes its ``env=`` from
:func:`child_env`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Names that are secrets whatever their value; compared case-insensitively.
SECRET_NAMES: frozenset[str] = frozenset(
    {
        "PENDRA_WORKER_KEY",
        "GPU_WORKER_PRIVATE_KEY",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HUGGINGFACE_HUB_TOKEN",
        "HF_HUB_TOKEN",
        "PENDRA_API_KEY",
        "OPENAI_API_KEY",
    }
)
# Suffixes that mark a variable as a credential of some other tool (``AWS_SECRET_ACCESS_KEY``,
# ``GITHUB_TOKEN`` …). A child that really needs one is handed it through ``extra``.
SECRET_SUFFIXES: tuple[str, ...] = (
    "_TOKEN",
    "_SECRET",
    "_SECRET_KEY",
    "_ACCESS_KEY",
    "_PRIVATE_KEY",
    "_PASSWORD",
    "_API_KEY",
)


def is_secret_name(name: str) -> bool:
    """Whether an environment variable of this name is treated as a secret."""
    upper = name.upper()
    return upper in SECRET_NAMES or upper.endswith(SECRET_SUFFIXES)


def child_env(
    extra: Mapping[str, str] | None = None, *, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) without secrets, then ``extra`` on top.

    ``extra`` is applied after scrubbing, so a caller can hand a child exactly the one value it
    needs; it is never filtered.
    """
    source = os.environ if base is None else base
    env = {name: value for name, value in source.items() if not is_secret_name(name)}
    if extra:
        env.update(extra)
    return env
