"""Run one backend emulator as a process on a given address: ``python emulator_proc.py KIND HOST
PORT``. Prints ``READY <port>`` once listening, then serves until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.emulators import EMULATORS


async def main(kind: str, host: str, port: int) -> None:
    emulator = EMULATORS[kind]()
    await emulator.start(port=port, host=host)
    print(f"READY {emulator.port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await emulator.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
