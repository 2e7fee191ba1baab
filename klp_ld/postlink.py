"""What kbuild does to the `.ko` after the final link, and whether the livepatch sections survive it.

When module BTF is on (`CONFIG_DEBUG_INFO_BTF_MODULES=y` and a `vmlinux` in the headers, as in
Debian's), kbuild adds `.BTF` to the finished `.ko` with `$(OBJCOPY) --add-section`: directly in
scripts/gen-btf.sh since 7.0, through pahole's `LLVM_OBJCOPY` before. No `$(LD)` runs after it, so
what objcopy makes of klp-ld's output is the module users load.

BFD reads a `.klp.rela.*` section that shares its target with `.rela.*` as a "secondary" relocation
section (PR 24456). Up to binutils 2.45 objcopy wrote it back intact; since then the x86 back end's
`elf_backend_copy_special_section_fields` claims every section without restoring it, so each
one comes out as type 0x60000004 with sh_link = sh_info = 0. The x86_64 kernel reads neither
sh_type nor sh_link of a livepatch section (ppc64 counts its call stubs in SHT_RELA sections
only), but without sh_info it applies vmlinux relocations nowhere and writes module-specific
ones at address 0 + r_offset.

objcopy copies one thing verbatim whatever the back end does: the sh_info of a section flagged
SHF_GNU_MBIND (bfd/elf.c, _bfd_elf_copy_private_section_data). The kernel ignores that flag.
So klp-ld first runs the very objcopy kbuild will run on a scratch copy of the module, and
compares what the kernel will see; if the plain form does not survive, it tries the form with
SHF_GNU_MBIND; if neither does, the link fails instead of leaving a module that crashes.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from klp_ld.arch import arch_of
from klp_ld.diag import Diagnostic, KlpLdError, error, note
from klp_ld.elf.consts import SHF_ALLOC, SHF_RELA_LIVEPATCH, SHN_LIVEPATCH, SHT_RELA
from klp_ld.elf.layout import RELA_SIZE
from klp_ld.elf.model import ElfObject, Rela, Symbol
from klp_ld.elf.read import read_elf
from klp_ld.elf.write import write_elf
from klp_ld.target import Target

# include/elf/common.h (binutils): a GNU OS-specific flag whose sh_info objcopy keeps verbatim.
SHF_GNU_MBIND = 0x01000000
_BTF_MODULES = "CONFIG_DEBUG_INFO_BTF_MODULES"


@dataclass(frozen=True, slots=True)
class BtfStep:
    """kbuild's module-BTF step that will rewrite the `.ko`: the objcopy it runs, and why we know."""

    objcopy: str
    why: str


def btf_step(target: Target, environ: Mapping[str, str]) -> BtfStep | None:
    """The objcopy kbuild runs on the `.ko` after this link, or None when it runs none.

    Mirrors scripts/Makefile.modfinal: module BTF is made when the configuration enables it,
    the make command line did not turn it off (a command-line variable reaches LD's environment),
    and the headers hold a vmlinux to take the base BTF from.
    """
    if target.headers_dir is None or environ.get(_BTF_MODULES, "y") != "y":
        return None
    try:
        with open(os.path.join(target.headers_dir, "include", "config", "auto.conf"),
                  encoding="utf-8", errors="replace") as f:
            enabled = f"{_BTF_MODULES}=y\n" in f.read()
    except OSError:
        return None
    vmlinux = os.path.join(target.headers_dir, "vmlinux")
    if not enabled or not os.path.isfile(vmlinux):
        return None
    objcopy = environ.get("OBJCOPY") or environ.get("CROSS_COMPILE", "") + "objcopy"
    return BtfStep(objcopy, f"{_BTF_MODULES}=y and {vmlinux} exists: kbuild adds .BTF to the module "
                            f"with {objcopy} --add-section after this link")


# One livepatch relocation as the loader will apply it: where, how, against which symbol.
KlpEntry = tuple[int, int, int, str, int]


@dataclass(frozen=True, slots=True)
class KlpSectionView:
    """A `.klp.rela.*` section as the kernel reads it: flags, sh_info's target, the entries."""

    name: str
    loadable: bool          # SHF_ALLOC | SHF_RELA_LIVEPATCH
    target: str | None      # the section sh_info names, None when it names none
    entries: tuple[KlpEntry, ...]
    uncounted: bool = False  # retyped, so the loader finds no room for some entries (ppc64 stubs)


def _symbol_key(sym: Symbol | None) -> tuple[str, int]:
    """A relocation's symbol by name and reserved index (-1 when it lies in a section)."""
    if sym is None:
        return "", 0
    return sym.name, sym.special if sym.section is None else -1


def klp_view(obj: ElfObject) -> tuple[KlpSectionView, ...]:
    """Every livepatch relocation section the way the loader sees it, whatever its sh_type.

    The loader picks these sections by SHF_RELA_LIVEPATCH and never reads sh_type or sh_link (but
    where it counts entries by section type, ppc64's stubs), so a section that a tool retyped is
    read as the SHT_RELA section it was (`obj` is changed to that end); one whose entries cannot be
    read that way shows none.
    """
    uncounted = {d.section for d in restore_retyped(obj) if d.severity == "error"}
    views = []
    for sec in obj.sections:
        if not sec.name.startswith(".klp.rela.") and not sec.flags & SHF_RELA_LIVEPATCH:
            continue
        loadable = sec.flags & (SHF_ALLOC | SHF_RELA_LIVEPATCH) == SHF_ALLOC | SHF_RELA_LIVEPATCH
        if sec.type == SHT_RELA:
            target = sec.info_section.name if sec.info_section is not None else None
        else:
            target = obj.sections[sec.info].name if 0 < sec.info < len(obj.sections) else None
        entries = tuple((r.offset, r.type, r.addend, *_symbol_key(r.symbol)) for r in sec.relocs)
        views.append(KlpSectionView(sec.name, loadable, target, entries, sec.name in uncounted))
    return tuple(views)


def damage(before: tuple[KlpSectionView, ...], after: tuple[KlpSectionView, ...]) -> list[str]:
    """What the loader would see differently after the rewrite; empty when nothing it reads changed."""
    found = []
    theirs = {v.name: v for v in after}
    for mine in before:
        got = theirs.get(mine.name)
        if got is None:
            found.append(f"{mine.name} is gone")
        elif not got.loadable:
            found.append(f"{mine.name} lost SHF_ALLOC or SHF_RELA_LIVEPATCH")
        elif got.uncounted:
            found.append(f"{mine.name} is no longer SHT_RELA, where the loader counts its calls' stubs")
        elif got.target != mine.target:
            found.append(f"{mine.name} now applies to {got.target or 'no section (sh_info 0)'}, "
                         f"not {mine.target}")
        elif got.entries != mine.entries:
            found.append(f"{mine.name}: its relocations changed (symbols renumbered or rewritten)")
        elif any(e[4] != SHN_LIVEPATCH for e in got.entries):
            found.append(f"{mine.name}: a relocation no longer refers to a SHN_LIVEPATCH symbol")
    return found


def run_objcopy(step: BtfStep, module: bytes, scratch: str) -> bytes:
    """What kbuild's objcopy makes of `module`, run on a copy in `scratch`."""
    copy = os.path.join(scratch, "btf-probe.ko")
    blob = os.path.join(scratch, "btf-probe.BTF")
    with open(copy, "wb") as f:
        f.write(module)
    with open(blob, "wb") as f:
        f.write(b"\0" * 24)
    try:
        proc = subprocess.run([step.objcopy, "--add-section", f".BTF={blob}", copy],
                              capture_output=True, text=True, check=False)
    except OSError as exc:
        raise KlpLdError(error(f"cannot run {step.objcopy} to see what kbuild's module BTF step does to "
                               f"this module: {exc.strerror or exc}", code="postlink-probe")) from None
    if proc.returncode != 0:
        raise KlpLdError(error(f"{step.objcopy} --add-section failed on a copy of this module, as it "
                               f"will when kbuild adds module BTF: {proc.stderr.strip()}",
                               code="postlink-probe"))
    with open(copy, "rb") as f:
        return f.read()


def objcopy_damage(step: BtfStep, module: bytes, scratch: str) -> list[str]:
    """Run kbuild's objcopy on a copy of `module` and say what the loader would see differently."""
    after = run_objcopy(step, module, scratch)
    return damage(klp_view(read_elf(module, "module")), klp_view(read_elf(after, "module after objcopy")))


def follow_section_order(obj: ElfObject, step: BtfStep, scratch: str) -> None:
    """Put `obj`'s sections in the order objcopy writes them, so that indices survive it.

    objcopy copies an SHF_GNU_MBIND section's sh_info as a number; BFD lays each `.rela` section
    after its target and the symbol and string tables last, while ld.lld, for one, does not, so
    the number would name another section afterwards. In objcopy's own order it names the same.
    """
    after = read_elf(run_objcopy(step, write_elf(obj), scratch), "module after objcopy")
    rank: dict[tuple[str, int], int] = {}
    seen: dict[str, int] = {}
    for position, sec in enumerate(after.sections):
        n = seen[sec.name] = seen.get(sec.name, -1) + 1
        rank[(sec.name, n)] = position
    keys: list[int] = []
    seen.clear()
    for position, sec in enumerate(obj.sections):
        n = seen[sec.name] = seen.get(sec.name, -1) + 1
        keys.append(rank.get((sec.name, n), len(after.sections) + position))
    order = sorted(range(len(obj.sections)), key=keys.__getitem__)
    obj.sections = [obj.sections[i] for i in order]


def mark_kept_by_objcopy(obj: ElfObject) -> None:
    """Flag every livepatch section so that objcopy copies its sh_info verbatim."""
    for sec in obj.sections:
        if sec.flags & SHF_RELA_LIVEPATCH:
            sec.flags |= SHF_GNU_MBIND


def restore_retyped(obj: ElfObject) -> list[Diagnostic]:
    """Read livepatch sections a tool retyped after the link as the SHT_RELA sections they still are.

    The loader picks livepatch sections by SHF_RELA_LIVEPATCH and reads their entries and sh_info,
    never sh_type or sh_link; objcopy (binutils 2.46+) retypes them to 0x60000004 and clears
    sh_link. Such a module loads exactly as it did, so it is checked as the loader sees it, with a
    note; a cleared sh_info stays cleared, and the checks then say what that breaks. Except where
    the loader counts some entries by section type (ppc64's call stubs, arm64's PLT entries): those
    find no room.
    """
    notes: list[Diagnostic] = []
    counted = arch_of(obj).counted_in_rela
    for sec in obj.sections:
        if (not sec.flags & SHF_RELA_LIVEPATCH or sec.type == SHT_RELA or sec.entsize != RELA_SIZE
                or len(sec.data) % RELA_SIZE):
            continue
        relocs = []
        for offset, info, addend in obj.layout.rela.iter_unpack(sec.data):
            index = info >> 32
            if index >= len(obj.symbols):
                break
            relocs.append(Rela(offset, info & 0xFFFFFFFF, obj.symbols[index] if index else None, addend))
        else:
            lost = sorted({r.type for r in relocs if r.type in counted})
            if lost:
                names = ", ".join(arch_of(obj).reloc_name(t) for t in lost)
                why = arch_of(obj).counted_in_rela_why.format(types=names)
                notes.append(error(f"section type {sec.type:#x}, not SHT_RELA: retyped after the link "
                                   f"(objcopy); {why}", code="klp-section-type", obj=obj.path,
                                   section=sec.name))
            else:
                notes.append(note(f"section type {sec.type:#x} and sh_link "
                                  f"{sec.link.name if sec.link else 0}: retyped after the link (objcopy); "
                                  "the loader reads neither, so it is checked as the SHT_RELA section it "
                                  "was", obj=obj.path, section=sec.name))
            sec.type = SHT_RELA
            sec.link = obj.symtab
            sec.info_section = obj.sections[sec.info] if 0 < sec.info < len(obj.sections) else None
            sec.relocs = relocs
            sec.data = b""
    return notes
