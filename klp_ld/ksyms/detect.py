"""Tell which kind of symbol source a file is, from its content first and its name second.

Users point `--klp-symbols` at whatever they have, and the kinds count positions differently:
a wrong guess does not fail, it silently changes which symbol a position names.
"""

from __future__ import annotations

import os
import re

from klp_ld.diag import fail
from klp_ld.elf.consts import ELFMAG, ET_DYN, ET_EXEC, ET_REL
from klp_ld.elf.layout import EI_DATA, EI_NIDENT, LSB, layout_of
from klp_ld.ksyms.decompress import decompress
from klp_ld.ksyms.tables import SourceKind
from klp_ld.ksyms.text import DEBIAN_PLACEHOLDER, SYMBOLS_LIST_MAGIC


def detect_format(data: bytes, path: str) -> SourceKind:
    """Tell the source kinds apart by content (and, for look-alike text, by name).

    kallsyms and System.map share one line shape, but System.map has what kallsyms drops
    (`U`/`N`/`a`/`w` types, `__crc_` names), and parsing a dump as System.map would drop the
    per-CPU symbols kallsyms marks `A`, so a wrong guess changes positions: the name decides first.
    """
    data = decompress(data, path)
    if data[:len(ELFMAG)] == ELFMAG:
        if len(data) < EI_NIDENT + 2:
            raise fail("file is truncated inside the ELF header", obj=path)
        order = layout_of(data[EI_DATA]) or LSB  # a bad byte order is the reader's to report
        e_type = int.from_bytes(data[EI_NIDENT:EI_NIDENT + 2], order.byteorder)
        if e_type == ET_REL:
            return SourceKind.MODULE
        if e_type in (ET_EXEC, ET_DYN):
            return SourceKind.VMLINUX
        raise fail(f"ELF file of type {e_type} is neither a module nor a vmlinux", obj=path)
    head = data[:4096].decode("utf-8", "surrogateescape")
    first = next((ln for ln in head.splitlines() if ln.strip()), "")
    if not first:
        raise fail("empty symbol source", obj=path)
    if first.strip().startswith("klp-convert-symbol-data."):
        if first.strip() != SYMBOLS_LIST_MAGIC:
            raise fail(f"unsupported Symbols.list version '{first.strip()}' (klp-ld reads "
                       f"{SYMBOLS_LIST_MAGIC})", obj=path)
        return SourceKind.SYMBOLS_LIST
    if DEBIAN_PLACEHOLDER in first:
        return SourceKind.SYSTEM_MAP
    tabbed = first.split("\t")
    if len(tabbed) in (4, 5) and tabbed[0].startswith("0x"):
        return SourceKind.SYMVERS
    parts = first.split()
    if len(parts) in (3, 4) and len(parts[1]) == 1:
        base = os.path.basename(path)
        if base.startswith("System.map"):
            return SourceKind.SYSTEM_MAP
        if "kallsyms" in base or len(parts) == 4:
            return SourceKind.KALLSYMS
        text = data.decode("utf-8", "surrogateescape")
        if "\t[" in text:
            return SourceKind.KALLSYMS
        if re.search(r"^\S+ [aNUwun] |^\S+ \S (?:__crc_|__kstrtab|\.L|\$)", text, re.M):
            return SourceKind.SYSTEM_MAP
        return SourceKind.KALLSYMS
    shown = first if len(first) <= 60 else first[:57] + "..."
    raise fail(f"not a symbol source klp-ld knows (a /proc/kallsyms dump, System.map, vmlinux, a .ko, "
               f"Symbols.list or Module.symvers); it starts with {shown!r}", obj=path)
