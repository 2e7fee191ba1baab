"""The architectures klp-ld supports, by ELF `e_machine`; their rules are in one module each."""

from __future__ import annotations

from typing import Protocol

from klp_ld.arch import arm64, ppc64le, s390x, x86_64
from klp_ld.arch.model import Arch

__all__ = ["ARCHES", "Arch", "arch_of", "for_machine", "reloc_name", "supported_names"]


class _HasMachine(Protocol):
    @property
    def e_machine(self) -> int: ...
    @property
    def path(self) -> str: ...

ARCHES: tuple[Arch, ...] = (x86_64.ARCH, ppc64le.ARCH, s390x.ARCH, arm64.ARCH)
_BY_MACHINE = {a.e_machine: a for a in ARCHES}


def for_machine(e_machine: int) -> Arch | None:
    """The architecture of an ELF `e_machine`, or None when klp-ld does not support it."""
    return _BY_MACHINE.get(e_machine)


def reloc_name(e_machine: int, r_type: int) -> str:
    """readelf's name for a relocation type of `e_machine`, also for numbers without a name."""
    arch = _BY_MACHINE.get(e_machine)
    return arch.reloc_name(r_type) if arch is not None else f"<relocation type {r_type}>"


def arch_of(obj: _HasMachine) -> Arch:
    """The architecture of an object the reader accepted (it refuses every other machine)."""
    arch = _BY_MACHINE.get(obj.e_machine)
    if arch is None:
        raise ValueError(f"{obj.path}: e_machine {obj.e_machine} passed the reader unsupported")
    return arch


def supported_names() -> str:
    """The supported architectures, as a message lists them."""
    return ", ".join(a.name for a in ARCHES)
