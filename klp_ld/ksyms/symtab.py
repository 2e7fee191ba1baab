"""The two ELF symbol sources: a vmlinux (ET_EXEC) and a module (`.ko`, possibly compressed).

Both are read by `klp_ld.elf`, the reader of every object klp-ld links: a vmlinux through its
checked headers only (its sections run to hundreds of megabytes and only `.symtab` matters), a
module into the full object model, whose section and symbol rules it needs. Each `.symtab` is
then cut down to what the kernel counts, in the kernel's counting order.
"""

from __future__ import annotations

import struct

from klp_ld.diag import KlpLdError, fail
from klp_ld.elf.consts import (
    ET_DYN,
    ET_EXEC,
    SHF_EXECINSTR,
    SHN_ABS,
    SHN_UNDEF,
    SHT_NOBITS,
    SHT_SYMTAB,
    STT_FILE,
    STT_SECTION,
)
from klp_ld.elf.headers import read_file_header, read_section_headers, section_bytes
from klp_ld.elf.layout import SYM_SIZE
from klp_ld.elf.model import ElfObject
from klp_ld.elf.read import read_elf
from klp_ld.ksyms.decompress import decompress
from klp_ld.ksyms.kallsyms import is_ignored_symbol, nm_type
from klp_ld.ksyms.tables import Export, ObjectTable, SourceKind, SymbolSource
from klp_ld.names import VMLINUX, module_name_from_file


def parse_vmlinux(data: bytes, path: str) -> SymbolSource:
    """Read the `.symtab` of a vmlinux (ET_EXEC) and keep what kallsyms would, by address."""
    try:
        return _parse_vmlinux(data, path)
    except KlpLdError:
        raise
    except (struct.error, IndexError, ValueError) as exc:
        raise fail(f"malformed vmlinux: {exc}", obj=path) from None


def _parse_vmlinux(data: bytes, path: str) -> SymbolSource:
    ehdr = read_file_header(data, path)
    if ehdr.e_type not in (ET_EXEC, ET_DYN):
        raise fail(f"not a vmlinux (e_type {ehdr.e_type}, expected an executable)", obj=path)
    if ehdr.e_shoff == 0:
        raise fail("vmlinux has no section headers, so no symbol table", obj=path)
    shdrs, _shstrndx = read_section_headers(data, ehdr, path)
    nsec = len(shdrs)
    # (sh_flags, sh_type) by section index: what the nm type letter of a symbol depends on
    kinds = [(sh_flags, sh_type) for _, sh_type, sh_flags, _, _, _, _, _, _, _ in shdrs]
    symtabs = [sh for sh, (_, sh_type) in zip(shdrs, kinds, strict=True) if sh_type == SHT_SYMTAB]
    if not any(sh_flags & SHF_EXECINSTR and sh_type != SHT_NOBITS for sh_flags, sh_type in kinds):
        # Debian's 6.12 headers ship such a vmlinux for pahole: .BTF and a few hundred symbols.
        raise fail("vmlinux has no code sections (a BTF-only vmlinux); use System.map, /proc/kallsyms "
                   "or the debug vmlinux", obj=path)
    if not symtabs:
        raise fail("vmlinux has no .symtab (stripped, or a BTF-only vmlinux); use System.map, "
                   "/proc/kallsyms or the debug vmlinux", obj=path)
    symtab = symtabs[0]
    _, _, _, _, _, _, sh_link, _, _, _ = symtab
    if sh_link >= nsec:
        raise fail(".symtab sh_link names no section", obj=path)
    body = section_bytes(data, symtab, ".symtab", path)
    strtab = section_bytes(data, shdrs[sh_link], ".strtab", path)
    body = body[:len(body) - len(body) % SYM_SIZE]
    rows: list[tuple[int, str, str, str]] = []
    find = strtab.find
    current_file = ""
    for st_name, st_info, _other, shndx, value, _size in ehdr.layout.sym.iter_unpack(body):
        stype = st_info & 0xF
        if shndx == SHN_UNDEF or not st_name or stype == STT_SECTION:
            continue
        end = find(b"\0", st_name)
        if end < 0:
            raise fail(f"symbol name offset {st_name:#x} is outside .strtab", obj=path)
        name = strtab[st_name:end].decode("utf-8", "surrogateescape")
        if stype == STT_FILE:
            current_file = name
            continue
        if 0 < shndx < nsec:
            sh_flags, sh_type = kinds[shndx]
            letter = nm_type(st_info >> 4, stype, 0, sh_flags, sh_type)
        else:
            letter = nm_type(st_info >> 4, stype, shndx, 0, 0)
        if not is_ignored_symbol(name, letter):
            rows.append((value, letter, name, current_file if st_info >> 4 == 0 else ""))
    if not rows:
        raise fail("vmlinux .symtab has no symbols kallsyms would keep", obj=path)
    rows.sort(key=lambda r: r[0])
    table = ObjectTable(VMLINUX, path, SourceKind.VMLINUX, tuple(r[2] for r in rows),
                        "".join(r[1] for r in rows), tuple(r[0] for r in rows),
                        files=tuple(r[3] for r in rows))
    return SymbolSource(path, SourceKind.VMLINUX, (table,))


def _modinfo(obj: ElfObject) -> dict[str, str]:
    sec = obj.section(".modinfo")
    info: dict[str, str] = {}
    if sec is None:
        return info
    for entry in sec.data.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep:
            info.setdefault(key.decode("utf-8", "replace"), value.decode("utf-8", "replace"))
    return info


def parse_module(data: bytes, path: str) -> SymbolSource:
    """Read a module (`.ko`, possibly xz/gzip/zstd-compressed) in `.symtab` order.

    Both counts the kernel may use are kept (module_kallsyms_on_each_symbol): a module already loaded is
    searched over its core symbols only (`is_core_symbol`: named, defined, in an allocated
    non-`.init` section, or per-CPU), a module loading after the patch over every defined symbol.
    """
    obj = read_elf(decompress(data, path), path)
    info = _modinfo(obj)
    objname = info.get("name") or module_name_from_file(path)
    vermagic = info.get("vermagic", "").split()
    pcpu = obj.section(".data..percpu")
    names: list[str] = []
    types: list[str] = []
    values: list[int] = []
    sections: list[str] = []
    files: list[str] = []
    core = bytearray()
    exports: list[Export] = []
    current_file = ""
    for sym in obj.symbols[1:]:
        if sym.type == STT_FILE:
            current_file = sym.name
        if sym.is_undefined or not sym.name or sym.type == STT_SECTION:
            continue
        sec = sym.section
        if sec is not None:
            letter = nm_type(sym.bind, sym.type, 0, sec.flags, sec.type)
            # setup_load_info clears SHF_ALLOC on .modinfo and __versions before layout.
            alloc = sec.is_alloc and sec.name not in (".modinfo", "__versions")
            is_core = sec is pcpu or (alloc and not sec.name.startswith(".init"))
            sections.append(sec.name)
        else:
            letter = nm_type(sym.bind, sym.type, sym.special, 0, 0)
            is_core = False  # SHN_ABS and other reserved indices are >= e_shnum
            sections.append("*ABS*" if sym.special == SHN_ABS else f"[{sym.special:#x}]")
        names.append(sym.name)
        types.append(letter)
        values.append(sym.value)
        files.append(current_file if sym.is_local and sym.type != STT_FILE else "")
        core.append(1 if is_core else 0)
        if sym.name.startswith("__ksymtab_"):
            exports.append(Export(sym.name[len("__ksymtab_"):], None, objname))
    table = ObjectTable(objname, path, SourceKind.MODULE, tuple(names), "".join(types), tuple(values),
                        tuple(sections), bytes(core), order=".symtab order", files=tuple(files))
    return SymbolSource(path, SourceKind.MODULE, (table,), tuple(exports),
                        release=vermagic[0] if vermagic else None)
