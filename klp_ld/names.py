"""The names that carry a livepatch identity through `ld -r`, and the kernel's limits on them.

An identity is (the object whose load gates the relocation, the object that owns the symbol, the
symbol's name, its position). Between the partial and the final link it lives only in the name
of a weak undefined symbol, because that is all `ld -r` and modpost preserve:

- `.klp.sym.<obj>.<name>,<pos>` when both objects are the same: already the kernel's own format;
- `.klp.sym.rela.<lp_obj>.<sym_obj>.<name>,<pos>` when they differ (SUSE's split).

The kernel parses `.klp.sym.%55[^.].%511[^,],%lu` and `.klp.rela.%55[^.]`
(kernel/livepatch/core.c), which fixes every limit checked here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

from klp_ld.diag import fail
from klp_ld.elf.consts import KSYM_NAME_LEN, MODULE_NAME_LEN

KLP_SYM = ".klp.sym."
KLP_SYM_RELA = ".klp.sym.rela."
KLP_RELA = ".klp.rela."
MODULE_RELOCS = ".klp.module_relocs."
VMLINUX = "vmlinux"


@dataclass(frozen=True, slots=True, order=True)
class Identity:
    """Which kernel symbol a reference means, and which object's load applies the relocation.

    `kernel_name` is the SHN_LIVEPATCH symbol name the loader resolves; `link_name` the weak
    undefined name that survives `ld -r` and modpost. Both are spelled once, here: a large
    module asks for them some 100,000 times.
    """

    rela_obj: str
    sym_obj: str
    name: str
    sympos: int
    kernel_name: str = field(init=False, repr=False, compare=False)
    link_name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kernel = f"{KLP_SYM}{self.sym_obj}.{self.name},{self.sympos}"
        link = kernel if self.rela_obj == self.sym_obj else \
            f"{KLP_SYM_RELA}{self.rela_obj}.{self.sym_obj}.{self.name},{self.sympos}"
        object.__setattr__(self, "kernel_name", kernel)
        object.__setattr__(self, "link_name", link)

    def rela_section(self, target: str) -> str:
        return f"{KLP_RELA}{self.rela_obj}.{target}"


@lru_cache(maxsize=65536)
def parse_identity(symbol: str) -> Identity | None:
    """Read an identity back from a symbol name; None when it is not one.

    Accepted spellings: `.klp.sym.<obj>.<name>,<pos>` and SUSE's
    `.klp.sym.rela.<lp_obj>.<sym_obj>.<name>,<pos>` or `....<name>.<pos>` (their v3 used a dot
    because binutils before 2.38 rejected commas in quoted operands).
    """
    if symbol.startswith(KLP_SYM_RELA):
        rest = symbol[len(KLP_SYM_RELA):]
        lp_obj, dot, rest = rest.partition(".")
        sym_obj, dot2, rest = rest.partition(".")
        if not (dot and dot2 and lp_obj and sym_obj):
            return None
        parsed = _split_position(rest, allow_dot=True)
        if parsed is None:
            return None
        return Identity(lp_obj, sym_obj, parsed[0], parsed[1])
    if symbol.startswith(KLP_SYM):
        obj, dot, rest = symbol[len(KLP_SYM):].partition(".")
        if not (dot and obj):
            return None
        parsed = _split_position(rest, allow_dot=False)
        if parsed is None:
            return None
        return Identity(obj, obj, parsed[0], parsed[1])
    return None


def _split_position(text: str, *, allow_dot: bool) -> tuple[str, int] | None:
    name, comma, pos = text.rpartition(",")
    if not comma and allow_dot:
        name, comma, pos = text.rpartition(".")
    if not comma or not name or not pos.isdigit() or not pos.isascii():
        return None
    return name, int(pos)


MODULE_SUFFIXES = (".ko.xz", ".ko.gz", ".ko.zst", ".ko")


@lru_cache(maxsize=8192)
def module_name_from_file(path: str) -> str:
    """`kernel/drivers/net/foo-bar.ko.xz` -> `foo_bar`, as kbuild's KBUILD_MODNAME does.

    Cached: each of a Module.symvers' 25,000 exports asks it for one of a few thousand paths."""
    base = os.path.basename(path)
    for suffix in MODULE_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


@lru_cache(maxsize=4096)
def objname_problem(raw: str) -> str | None:
    """Why the loader would never match this object name, naming the spelling it would match.

    The kernel does not refuse a wrong spelling: the patch just waits forever for a module that
    never appears (kpatch issues #918, #1286), so every spelling a file name suggests is an error.
    """
    name = raw.strip()
    if not name:
        return "empty object name: use vmlinux or a module name such as kvm_intel"
    suggestion = module_name_from_file(name)
    if name.endswith(MODULE_SUFFIXES) or "/" in name:
        return f"object name '{raw}' is a file name; the kernel calls this module '{suggestion}' (mod->name)"
    if "-" in name:
        return (f"object name '{raw}' is not the kernel's module name: mod->name uses '_' for '-', "
                f"so write '{suggestion}'")
    if "." in name:
        return (f"object name '{raw}' contains '.', which ends the object name in the loader's "
                "'.klp.sym.%55[^.]' parse; module names never contain '.'")
    if any(ch.isspace() or ch == "," for ch in name):
        return f"object name '{raw}' contains a blank or ',', which no module name has"
    if len(name) > MODULE_NAME_LEN - 1:
        return (f"object name '{raw}' has {len(name)} characters; the kernel allows at most "
                f"{MODULE_NAME_LEN - 1} (MODULE_NAME_LEN)")
    return None


def normalize_objname(raw: str) -> str:
    """Check a klp object name the way the loader parses it (`%55[^.]`) and return it."""
    problem = objname_problem(raw)
    if problem is not None:
        raise fail(problem)
    return raw.strip()


@lru_cache(maxsize=65536)
def symbol_name_problem(name: str) -> str | None:
    """Why `.klp.sym.<obj>.<name>,<pos>` would not parse for this symbol name."""
    if not name:
        return "empty symbol name"
    if "," in name:
        return f"symbol name '{name}' contains ',', which ends the name in the kernel's parser"
    if len(name) > KSYM_NAME_LEN - 1:
        return f"symbol name is {len(name)} characters; the kernel allows {KSYM_NAME_LEN - 1}"
    return None


@lru_cache(maxsize=65536)
def identity_problems(identity: Identity) -> tuple[tuple[str, str], ...]:
    """(code, message) for every part of `identity` the loader's parser would reject.

    Cached: the objects of one module name the same identities many times over."""
    found = [("objname", p) for obj in dict.fromkeys((identity.rela_obj, identity.sym_obj))
             if (p := objname_problem(obj)) is not None]
    problem = symbol_name_problem(identity.name)
    if problem is not None:
        found.append(("symbol-name", problem))
    return tuple(found)
