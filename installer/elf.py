"""What a Linux shared library needs from the system it is loaded on, read from its ELF headers.

The worker image is assembled from wheels built on this host, so before building it the installer
checks that the base image can load them: the shared libraries they link (``DT_NEEDED``, e.g.
``libgomp.so.1`` for llama.cpp) and the newest glibc symbol version they use (``GLIBC_2.34``).
Only the standard library is used: hosts do not always have binutils' ``readelf``.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
_SHT_DYNAMIC = 6
_DT_NULL = 0
_DT_NEEDED = 1
_GLIBC_VERSION = re.compile(rb"GLIBC_(\d+)\.(\d+)(?:\.(\d+))?\x00")


class NotElf(ValueError):
    """The file is not an ELF shared object this reader understands."""


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == ELF_MAGIC
    except OSError:
        return False


def needed_libraries(path: Path) -> list[str]:
    """The ``DT_NEEDED`` sonames of an ELF file, in link order."""
    data = path.read_bytes()
    if data[:4] != ELF_MAGIC:
        raise NotElf(f"{path} is not an ELF file")
    bits = {1: 32, 2: 64}.get(data[4])
    order = {1: "<", 2: ">"}.get(data[5])
    if bits is None or order is None:
        raise NotElf(f"{path}: unknown ELF class or byte order")
    if bits == 64:
        (shoff,) = struct.unpack_from(order + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(order + "HH", data, 0x3A)
        section = struct.Struct(order + "IIQQQQIIQQ")  # name type flags addr offset size link …
        entry = struct.Struct(order + "qQ")
    else:
        (shoff,) = struct.unpack_from(order + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(order + "HH", data, 0x2E)
        section = struct.Struct(order + "IIIIIIIIII")
        entry = struct.Struct(order + "iI")
    sections = [section.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
    names: list[str] = []
    for sec in sections:
        if sec[1] != _SHT_DYNAMIC:
            continue
        offset, size, link = sec[4], sec[5], sec[6]
        strtab_offset = sections[link][4]
        for pos in range(offset, offset + size, entry.size):
            tag, value = entry.unpack_from(data, pos)
            if tag == _DT_NULL:
                break
            if tag == _DT_NEEDED:
                end = data.index(b"\x00", strtab_offset + value)
                names.append(data[strtab_offset + value : end].decode("ascii", "replace"))
    return names


def glibc_requirement(path: Path) -> tuple[int, ...] | None:
    """The newest ``GLIBC_x.y`` symbol version the file refers to (None: it names none)."""
    found = [
        tuple(int(part) for part in match.groups() if part is not None)
        for match in _GLIBC_VERSION.finditer(path.read_bytes())
    ]
    return max(found) if found else None
