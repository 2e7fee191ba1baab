"""Give each annotated reference of one object a name that carries its identity.

`ld -r` merges undefined symbols by name. Renaming `state_show` in a.o to the weak undefined
`.klp.sym.vmlinux.state_show,2` and in b.o to `...,3` makes equal identities merge and different
ones stay apart. Weak, because modpost ignores weak undefined names and fails on global ones;
STT_NOTYPE, because objtool rejects undefined STT_FUNC names containing `.cold`.
"""

from __future__ import annotations

from dataclasses import dataclass

from klp_ld.elf.consts import STB_WEAK, STT_NOTYPE
from klp_ld.elf.model import ElfObject
from klp_ld.names import Identity


@dataclass(frozen=True, slots=True)
class Rename:
    """One symbol of one object renamed; `reason` says why, for the decision log."""

    obj: str
    old: str
    new: str
    identity: Identity
    reason: str


def apply_renames(obj: ElfObject, wanted: dict[str, tuple[Identity, str]]) -> list[Rename]:
    """Rename the undefined symbols named in `wanted` (name -> (identity, reason)) in place."""
    done: list[Rename] = []
    for sym in obj.symbols[1:]:
        if not sym.is_undefined or sym.name not in wanted:
            continue
        identity, reason = wanted[sym.name]
        new = identity.link_name
        if sym.name == new and sym.bind == STB_WEAK and sym.type == STT_NOTYPE:
            continue
        done.append(Rename(obj.path, sym.name, new, identity, reason))
        sym.name = new
        sym.name_offset = None
        sym.bind = STB_WEAK
        sym.type = STT_NOTYPE
    return done
