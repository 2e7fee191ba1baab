"""s390x (64-bit, big-endian): arch/s390/kernel/module.c (6.1), as a livepatch relocation meets it.

7.2's check_rela and apply_rela are the same (the GOT and PLT moved into the MOD_TEXT region), modules
are still -fPIC and the module area still 2 GiB; what differs is where that area is (below), and that
module_finalize also rewrites the module's `__stack_protector_loc` sites. Only 6.1's has been run here.

What differs from x86_64, and why each rule here exists:
- Modules are built with -fPIC (arch/s390/Makefile: KBUILD_CFLAGS_MODULE), so gcc calls an external
  function with `brasl %r14,func@PLT` (R_390_PLT32DBL on the 32-bit halfword-scaled immediate of a
  6-byte RIL instruction) and reads an external object's address from the module's GOT with
  `lgrl %rN,obj@GOTENT` (R_390_GOTENT); pointers in data are R_390_64.
- The loader has no GOT or PLT sections to fill: module_frob_arch_sections counts one GOT slot and
  one 22-byte PLT entry per symbol that a GOT or PLT type refers to, over every SHT_RELA section,
  `.klp.rela.*` included (check_rela), and adds them to the module's core. A livepatch section that
  is not SHT_RELA finds no slot.
- apply_rela writes a symbol's GOT slot and PLT entry once (got_initialized, plt_initialized) and
  never clears the flags: `.klp.rela.<module>` is applied again when that module is loaded again,
  but its GOT slots keep the address from the first load (no clear_relocate_add on s390, up to 7.2).
  A PLT32DBL call between modules never uses its PLT entry (the module area is 2 GiB, inside the
  +-4 GiB a brasl reaches, and the loader only goes through the PLT when out of range), so only the
  GOT types are affected.
- R_390_NONE is applied (as a no-op), so a converted original is retyped as on x86_64. The loader
  never looks at a site's bytes: every type overwrites its field (12- and 20-bit displacements keep
  the bits around them), and checks the value's range and, for the DBL types, that it is even.
- Late writes (module-specific sections, after the module is formed) go through s390_kernel_write,
  for the GOT slots and PLT entries too: no plain store into read-only memory.
- In 6.1 the kernel image lies in the identity mapping, far below the vmalloc area that holds modules
  (MODULES_VADDR is just below the lowcore alias, arch/s390/boot/startup.c: 4 TiB up in the bench's
  guest). 7.2 puts the module area just below the kernel image (MODULES_END = kernel_start), so there a
  32-bit PC-relative field would reach vmlinux. klp-ld refuses the 32-bit fields for every kernel: a
  module must load on the kernel it was built for whatever its version, gcc's -fPIC code never reaches
  an extern symbol with one, and the GOT (a 64-bit slot) and the PLT (a 64-bit address in the entry)
  reach any kernel address on both.
- module_finalize applies `.altinstructions` (copying `.altinstr_replacement` code over the original)
  and, with expolines, reverts the thunks listed in `.s390_indirect*`/`.s390_return*`; jump_label_add_module
  reads `__jump_table` keys (R_390_PC64): all before a module-specific klp relocation is written.
"""

from __future__ import annotations

from enum import IntEnum

from klp_ld.arch.model import Arch, speller

EM_S390 = 22


class R390(IntEnum):
    """s390 relocation types, named as binutils 2.40's readelf prints them (R_390_ + name)."""

    NONE = 0
    R8 = 1
    R12 = 2
    R16 = 3
    R32 = 4
    PC32 = 5
    GOT12 = 6
    GOT32 = 7
    PLT32 = 8
    COPY = 9
    GLOB_DAT = 10
    JMP_SLOT = 11
    RELATIVE = 12
    GOTOFF32 = 13
    GOTPC = 14
    GOT16 = 15
    PC16 = 16
    PC16DBL = 17
    PLT16DBL = 18
    PC32DBL = 19
    PLT32DBL = 20
    GOTPCDBL = 21
    R64 = 22
    PC64 = 23
    GOT64 = 24
    PLT64 = 25
    GOTENT = 26
    GOTOFF16 = 27
    GOTOFF64 = 28
    GOTPLT12 = 29
    GOTPLT16 = 30
    GOTPLT32 = 31
    GOTPLT64 = 32
    GOTPLTENT = 33
    PLTOFF16 = 34
    PLTOFF32 = 35
    PLTOFF64 = 36
    TLS_LOAD = 37
    TLS_GDCALL = 38
    TLS_LDCALL = 39
    TLS_GD32 = 40
    TLS_GD64 = 41
    TLS_GOTIE12 = 42
    TLS_GOTIE32 = 43
    TLS_GOTIE64 = 44
    TLS_LDM32 = 45
    TLS_LDM64 = 46
    TLS_IE32 = 47
    TLS_IE64 = 48
    TLS_IEENT = 49
    TLS_LE32 = 50
    TLS_LE64 = 51
    TLS_LDO32 = 52
    TLS_LDO64 = 53
    TLS_DTPMOD = 54
    TLS_DTPOFF = 55
    TLS_TPOFF = 56
    R20 = 57
    GOT20 = 58
    GOTPLT20 = 59
    TLS_GOTIE20 = 60
    IRELATIVE = 61
    PC12DBL = 62
    PLT12DBL = 63
    PC24DBL = 64
    PLT24DBL = 65


_SPELLED = {R390.R8: "8", R390.R12: "12", R390.R16: "16", R390.R20: "20", R390.R32: "32", R390.R64: "64"}
spell = speller("R_390_", {int(t): _SPELLED.get(t, t.name) for t in R390})

# apply_rela (module.c, 6.1) applies these and nothing else (COPY, GLOB_DAT, JMP_SLOT and RELATIVE
# fail the load without a message), -> the bytes at r_offset it reads or writes: the whole field, or
# for the 12- and 20-bit displacements the big-endian halfword or word it masks them into.
WIDTHS: dict[int, int] = {
    R390.R8: 1, R390.R12: 2, R390.R16: 2, R390.R20: 4, R390.R32: 4, R390.R64: 8,
    R390.PC16: 2, R390.PC16DBL: 2, R390.PC32DBL: 4, R390.PC32: 4, R390.PC64: 8,
    R390.GOT12: 2, R390.GOT16: 2, R390.GOT20: 4, R390.GOT32: 4, R390.GOT64: 8, R390.GOTENT: 4,
    R390.GOTPLT12: 2, R390.GOTPLT16: 2, R390.GOTPLT20: 4, R390.GOTPLT32: 4, R390.GOTPLT64: 8,
    R390.GOTPLTENT: 4,
    R390.PLT16DBL: 2, R390.PLT32DBL: 4, R390.PLT32: 4, R390.PLT64: 8,
    R390.PLTOFF16: 2, R390.PLTOFF32: 4, R390.PLTOFF64: 8,
    R390.GOTOFF16: 2, R390.GOTOFF32: 4, R390.GOTOFF64: 8, R390.GOTPC: 4, R390.GOTPCDBL: 4,
}
# Of those, the whole data fields (pointers, DWARF), and whether the value is relative to the site.
DATA_FIELDS: dict[int, bool] = {R390.R64: False, R390.R32: False, R390.PC64: True, R390.PC32: True}
# The types that take a GOT slot or a PLT entry for their symbol (check_rela).
GOT_TYPES = frozenset({R390.GOT12, R390.GOT16, R390.GOT20, R390.GOT32, R390.GOT64, R390.GOTENT,
                       R390.GOTPLT12, R390.GOTPLT16, R390.GOTPLT20, R390.GOTPLT32, R390.GOTPLT64,
                       R390.GOTPLTENT})
PLT_TYPES = frozenset({R390.PLT16DBL, R390.PLT32DBL, R390.PLT32, R390.PLT64, R390.PLTOFF16, R390.PLTOFF32,
                       R390.PLTOFF64})
# The 32-bit halfword-scaled immediates of RIL instructions: the site is 2 bytes into a 6-byte
# instruction, and the CPU adds twice the field to the instruction's address.
RIL_TYPES = frozenset({R390.PC32DBL, R390.PLT32DBL, R390.GOTENT, R390.GOTPLTENT, R390.GOTPCDBL})
# What a livepatch relocation can be: a call to a kernel function, its address through a GOT slot,
# or a pointer in data.
KLP_TYPES = frozenset({R390.PLT32DBL, R390.GOTENT, R390.GOTPLTENT, R390.R64, R390.PC64})

# The dynamic types: apply_rela returns -ENOEXEC for them without a message.
_DYNAMIC = frozenset({R390.COPY, R390.GLOB_DAT, R390.JMP_SLOT, R390.RELATIVE})
_CAN_BE = ("R_390_PLT32DBL (brasl or brcl to a kernel function), R_390_GOTENT or R_390_GOTPLTENT (lgrl/larl "
           "of the GOT slot holding its address, as -fPIC code reads an extern object) and R_390_64 or "
           "R_390_PC64 (data)")


def klp_type_problem(r_type: int) -> tuple[str, str] | None:
    """Why the loader would refuse or mis-apply a livepatch relocation of this type.

    A klp symbol resolves to a kernel address: vmlinux in the identity mapping, modules in a 2 GiB
    area at the top of the vmalloc area, hundreds of GiB apart on a large machine. Only a 64-bit
    field holds one; the GOT and PLT are how 32-bit PC-relative code reaches one."""
    name = spell(r_type)
    if r_type in KLP_TYPES:
        return None
    instead = ("reach it through the GOT (lgrl of sym@GOTENT, what -fPIC code does for an extern object), "
               "a call through the PLT (R_390_PLT32DBL) or a 64-bit field")
    if r_type == R390.R32:
        return ("reloc-32", f"{name} holds a kernel address only when the symbol lies below 4 GiB: 6.1's "
                "kernel image does unless KASLR or a large machine puts it higher, 7.2's never does (it runs "
                "at the top of the address space), and apply_rela refuses the module then ('relocation error "
                f"for symbol'); {instead}")
    if r_type in (R390.PC32, R390.PC32DBL):
        return ("reloc-32", f"{name} reaches a kernel symbol only within 4 GiB of the site: on 6.1 vmlinux "
                "sits in the identity mapping and modules at the top of the vmalloc area (4 TiB apart on the "
                "bench's guest), and apply_rela's range check refuses the module ('relocation error for "
                f"symbol'); {instead}")
    if r_type in (R390.R8, R390.R12, R390.R16, R390.R20, R390.PC16, R390.PC16DBL, R390.PLT16DBL):
        return ("reloc-16", f"{name} is too narrow for a kernel address (a PLT16DBL branch reaches the "
                "module's own PLT only within 64 KiB); use a call through R_390_PLT32DBL or a 64-bit field")
    if r_type in (R390.PLT32, R390.PLT64):
        return ("reloc-type", f"{name} stores the distance from the site to the symbol's PLT entry (always "
                "the entry, never the symbol): not the symbol's address, and gcc calls with PLT32DBL; a "
                f"livepatch relocation can be {_CAN_BE}")
    if r_type in GOT_TYPES or r_type in PLT_TYPES or r_type in (R390.GOTOFF16, R390.GOTOFF32, R390.GOTOFF64,
                                                                 R390.GOTPC, R390.GOTPCDBL):
        return ("reloc-type", f"{name} is an offset within, or from, the module's GOT or PLT, which needs a "
                f"GOT pointer kernel modules do not set up (-fPIC on s390x uses GOTENT); a livepatch "
                f"relocation can be {_CAN_BE}")
    if r_type == R390.NONE:
        applied = " (apply_rela applies it as a no-op)"
    elif r_type in _DYNAMIC:
        applied = " (apply_rela refuses the module without a message: it takes no -shared modules)"
    else:
        applied = "" if r_type in WIDTHS else " (apply_rela: 'unknown relocation')"
    return ("reloc-type", f"relocation type {name} cannot be a livepatch relocation{applied}: it can be "
            f"{_CAN_BE}")


ARCH = Arch(
    name="s390x",
    e_machine=EM_S390,
    spell=spell,
    none=R390.NONE,
    abs64=R390.R64,
    widths=WIDTHS,
    data_fields=DATA_FIELDS,
    zero_sites=False,
    klp_type_problem=klp_type_problem,
    # module_finalize: apply_alternatives copies .altinstr_replacement code over the original;
    # jump_label_add_module reads __jump_table keys (R_390_PC64).
    early_consumed=(".altinstructions", ".altinstr_replacement", "__jump_table"),
    # entries hold offsets or addresses of the module's own code: sort_extable, the bug table,
    # ftrace's call sites (and the hotpatch trampolines module_finalize allocates for them), and 7.2's
    # stack protector sites (module_finalize: stack_protector_apply)
    own_code_tables=("__ex_table", "__bug_table", "__mcount_loc", "__patchable_function_entries",
                     "__stack_protector_loc"),
    # nospec_revert reads these (expolines) at module_finalize: offsets of the module's own branches
    own_code_prefixes=(".s390_indirect", ".s390_return"),
    aligned_tables=frozenset({"__jump_table", "__ex_table", "__bug_table", "__mcount_loc"}),
    # struct alt_instr is packed (11 bytes): its s32 offsets sit at any byte
    table_align={".altinstructions": 1},
    text_module="klp_ld.arch.s390x_text",
    byteorder="big",
    # apply_rela writes GOT slots, PLT entries and sites late through s390_kernel_write
    plain_store_types=frozenset(),
    # no type is refused when a patched module loads again (nothing checks a site's old bytes), but
    # see `slot_types`
    rewrite_refused_types=frozenset(),
    counted_in_rela=GOT_TYPES | PLT_TYPES,
    counted_in_rela_why=("the loader makes room for the GOT slots and PLT entries of {types} entries by "
                         "counting them in SHT_RELA sections only (module_frob_arch_sections -> check_rela), "
                         "so these find none: their slot offset stays -1 and apply_rela writes the slot or "
                         "entry one byte before the module's memory"),
    slot_types=GOT_TYPES,
    slot_why=("the s390x loader writes each symbol's address into a GOT slot of the patch module once, and "
              "when {module} is unloaded and loaded again while this patch is loaded, applies "
              ".klp.rela.{module}.* again but leaves the slot as it was (got_initialized): the patch keeps "
              "reading the address of the first load; reach it through a pointer in data instead (R_390_64, "
              "written again at every load), or do not reload {module} under this patch"),
    # module_frob_arch_sections defines the first as SHN_ABS 0 itself; with CONFIG_EXPOLINE_EXTERN the
    # expoline thunks a module branches through come from arch/s390/lib/expoline/expoline.o, which
    # kbuild adds to the final link (KBUILD_LDFLAGS_MODULE): vmlinux's copies are never the ones meant
    linker_defined=("_GLOBAL_OFFSET_TABLE_", "__s390_indirect_jump_"),
)
