"""Give each annotated reference of one object a name that carries its identity.

`ld -r` merges undefined symbols by name. Renaming `state_show` in a.o to the weak undefined
`.klp.sym.vmlinux.state_show,2` and in b.o to `...,3` makes equal identities merge and different
ones stay apart. Weak, because modpost ignores weak undefined names and fails on global ones;
STT_NOTYPE, because objtool rejects undefined STT_FUNC names containing `.cold`.

A name objtool knows to be noreturn (`do_exit`) is only weakened at the partial link when every
object means the same identity by it: objtool runs on the partial link's output from 6.12 on, and
under a `.klp.sym` name the call would look as if it returned ("falls through to next function").
The final link renames it like a single-object module's reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from klp_ld.elf.consts import STB_WEAK, STT_NOTYPE
from klp_ld.elf.model import ElfObject
from klp_ld.names import Identity

# Callees objtool treats as noreturn by name alone (global_noreturns: tools/objtool/noreturns.h and
# arch/x86/include/arch/noreturns.h, read from Debian 6.12's objtool binary plus the names its string
# table stores as tails of others). objtool checks them on STB_GLOBAL and STB_WEAK symbols.
OBJTOOL_NORETURNS = frozenset((
    "__fortify_panic", "__ia32_sys_exit", "__ia32_sys_exit_group", "__kunit_abort",
    "__module_put_and_kthread_exit", "__reiserfs_panic", "__stack_chk_fail", "__tdx_hypercall_failed",
    "__ubsan_handle_builtin_unreachable", "__x64_sys_exit", "__x64_sys_exit_group", "arch_cpu_idle_dead",
    "bch2_trans_in_restart_error", "bch2_trans_restart_error", "bch2_trans_unlocked_error",
    "cpu_bringup_and_idle", "cpu_startup_entry", "do_exit", "do_group_exit", "do_task_dead",
    "ex_handler_msr_mce", "hlt_play_dead", "hv_ghcb_terminate", "kthread_complete_and_exit",
    "kthread_exit", "kunit_try_catch_throw", "machine_real_restart", "make_task_dead",
    "mpt_halt_firmware", "nmi_panic_self_stop", "panic", "panic_smp_self_stop", "rest_init",
    "rewind_stack_and_make_dead", "rust_helper_BUG", "sev_es_terminate", "snp_abort", "start_kernel",
    "stop_this_cpu", "usercopy_abort", "x86_64_start_kernel", "x86_64_start_reservations",
    "xen_cpu_bringup_again", "xen_start_kernel",
))
KEPT_FOR_OBJTOOL = "kept for objtool, a noreturn callee; renamed at the final link"


@dataclass(frozen=True, slots=True)
class Rename:
    """One symbol of one object renamed; `reason` says why, for the decision log.

    `was_weak`: the reference was weak already (a partial link's output), so modpost saw nothing.
    """

    obj: str
    old: str
    new: str
    identity: Identity
    reason: str
    was_weak: bool = False


def apply_renames(obj: ElfObject, wanted: dict[str, tuple[Identity, str]],
                  keep: frozenset[str] = frozenset()) -> list[Rename]:
    """Rename the undefined symbols named in `wanted` (name -> (identity, reason)) in place;
    names in `keep` are only made weak and STT_NOTYPE."""
    done: list[Rename] = []
    for sym in obj.symbols[1:]:
        if not sym.is_undefined or sym.name not in wanted:
            continue
        identity, reason = wanted[sym.name]
        new = sym.name if sym.name in keep else identity.link_name
        if sym.name == new and sym.bind == STB_WEAK and sym.type == STT_NOTYPE:
            continue
        if sym.name in keep:
            reason = f"{reason}; {KEPT_FOR_OBJTOOL}"
        done.append(Rename(obj.path, sym.name, new, identity, reason, sym.bind == STB_WEAK))
        sym.name = new
        sym.name_offset = None
        sym.bind = STB_WEAK
        sym.type = STT_NOTYPE
    return done
