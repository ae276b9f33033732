"""Run one backend emulator as its own process, so a test can SIGKILL it like a crashed backend.

Usage: ``python reliability_emulator_proc.py KIND PORT MODEL [CHUNK_DELAY_S]``. Prints
``READY <port>`` on stdout once listening, then serves until killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.emulators import EMULATORS, Faults


async def main(kind: str, port: int, model: str, delay_s: float) -> None:
    emulator = EMULATORS[kind](models=[model], faults=Faults(chunk_delay_s=delay_s))
    await emulator.start(port=port)
    print(f"READY {emulator.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1],
            int(sys.argv[2]),
            sys.argv[3],
            float(sys.argv[4] if len(sys.argv) > 4 else 0),
        )
    )
