"""x86_64: arch/x86/kernel/module.c, as a livepatch relocation meets it.

`apply_relocate_add` applies seven types and refuses a site whose bytes are not zero ("x86/modules:
Detect and skip invalid relocations", 4.16), which is why every klp relocation site must be zero in
the module. Alternatives, paravirt patches, jump labels and static calls are applied by
`module_finalize` and the COMING notifiers before a module-specific klp relocation is written.
"""

from __future__ import annotations

from enum import IntEnum

from klp_ld.arch.model import Arch, speller

EM_X86_64 = 62


class RX86(IntEnum):
    """x86_64 relocation types (psABI); the loader applies only the subset in KERNEL_RELOC_TYPES."""

    NONE = 0
    R64 = 1
    PC32 = 2
    GOT32 = 3
    PLT32 = 4
    COPY = 5
    GLOB_DAT = 6
    JUMP_SLOT = 7
    RELATIVE = 8
    GOTPCREL = 9
    R32 = 10
    R32S = 11
    R16 = 12
    PC16 = 13
    R8 = 14
    PC8 = 15
    DTPMOD64 = 16
    DTPOFF64 = 17
    TPOFF64 = 18
    TLSGD = 19
    TLSLD = 20
    DTPOFF32 = 21
    GOTTPOFF = 22
    TPOFF32 = 23
    PC64 = 24
    GOTOFF64 = 25
    GOTPC32 = 26
    GOT64 = 27
    GOTPCREL64 = 28
    GOTPC64 = 29
    GOTPLT64 = 30
    PLTOFF64 = 31
    SIZE32 = 32
    SIZE64 = 33
    GOTPC32_TLSDESC = 34
    TLSDESC_CALL = 35
    TLSDESC = 36
    IRELATIVE = 37
    RELATIVE64 = 38
    GOTPCRELX = 41
    REX_GOTPCRELX = 42


_SPELLED = {RX86.R64: "64", RX86.R32: "32", RX86.R32S: "32S", RX86.R16: "16", RX86.R8: "8"}
spell = speller("R_X86_64_", {int(t): _SPELLED.get(t, t.name) for t in RX86})


# apply_relocate_add accepts these (and NONE) and nothing else; the width of the field each writes.
WIDTHS: dict[int, int] = {
    RX86.R64: 8, RX86.PC64: 8, RX86.R32: 4, RX86.R32S: 4, RX86.PC32: 4, RX86.PLT32: 4}
PC_RELATIVE = frozenset({RX86.PC32, RX86.PLT32, RX86.PC64})


def klp_type_problem(r_type: int) -> tuple[str, str] | None:
    """Every klp relocation resolves to a kernel or module address, and all of those are
    0xffff...: R_X86_64_32 zero-extends, so it can never hold one (apply_relocate_add's overflow
    check fails at load), although it is a type the loader knows."""
    if r_type == RX86.R32:
        return ("reloc-32", "R_X86_64_32 cannot hold a kernel address: no kernel or module address fits in "
                "32 unsigned bits (they are 0xffff...): the loader refuses it at load with 'overflow in "
                "relocation type 10'; use R_X86_64_32S (a sign-extended imm32, as `mov $sym, %rax` under "
                "-mcmodel=kernel), a 64-bit mov (movabs $sym, %rax) or a RIP-relative lea (R_X86_64_PC32)")
    if r_type not in WIDTHS:
        return ("reloc-type", f"relocation type {spell(r_type)} cannot be a livepatch relocation: "
                "the x86_64 loader applies only R_X86_64_64, 32, 32S, PC32, PLT32 and PC64")
    return None


ARCH = Arch(
    name="x86_64",
    e_machine=EM_X86_64,
    spell=spell,
    none=RX86.NONE,
    abs64=RX86.R64,
    widths=WIDTHS,
    data_fields={t: t in PC_RELATIVE for t in WIDTHS},
    zero_sites=True,
    klp_type_problem=klp_type_problem,
    early_consumed=(".altinstructions", ".altinstr_replacement", ".altinstr_aux", ".parainstructions",
                    "__jump_table", ".static_call_sites"),
    own_code_tables=("__ex_table", "__bug_table", "__mcount_loc", ".orc_unwind", ".orc_unwind_ip",
                     ".orc_header", ".smp_locks", ".return_sites", ".call_sites", ".retpoline_sites",
                     ".ibt_endbr_seal", ".cfi_sites", "__patchable_function_entries", ".kcfi_traps"),
    # the unwind tables (.orc_unwind, .orc_unwind_ip, .orc_header and any later .orc*)
    own_code_prefixes=(".orc",),
    # read by the loader, objtool or ftrace as arrays of naturally aligned fields
    aligned_tables=frozenset({"__jump_table", "__ex_table", ".altinstructions", "__bug_table",
                              ".static_call_sites", ".smp_locks", ".return_sites", ".call_sites",
                              ".retpoline_sites", ".ibt_endbr_seal", "__mcount_loc", ".orc_unwind_ip"}),
    # 6.12 packs struct alt_instr to 14 bytes, so half its PC32 fields sit at 2 mod 4
    table_align={".altinstructions": 2},
    text_module="klp_ld.arch.x86_64_text",
)
