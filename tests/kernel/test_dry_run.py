"""`--dry-run` with the exact command lines kbuild ran (as V=1 shows them): a plan, and no files."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from .bench import Bench
from .conftest import KMOD

pytestmark = pytest.mark.kernel


def _ld_commands(log: str, klp_ld: Path) -> list[list[str]]:
    """The klp-ld invocations in a V=1 log, each cut at the end of its shell command."""
    found = []
    for line in log.splitlines():
        at = line.find(str(klp_ld))
        if at < 0 or " -r " not in line:
            continue
        words = shlex.split(re.split(r";|&&", line[at:])[0])
        found.append(words[1:])
    return found


def test_dry_run_replays_kbuild_links(bench: Bench, klp_ld: Path) -> None:
    built = bench.build(KMOD / "seed", ld=klp_ld, make_vars={"V": "1"})
    partial, final = _ld_commands(built.log, klp_ld)
    assert "-T" not in partial and "-T" in final
    # kbuild's linker script: arch/x86/module.lds from the headers (6.1, 6.12), its full path from the
    # module's directory (6.13 and later, where kbuild links in M=).
    script = final[final.index("-T") + 1]
    assert script.endswith("arch/x86/module.lds"), final
    m_o, ko = built.directory / "klp_seed.o", built.directory / "klp_seed.ko"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLP_LD")}
    cwd = bench.link_cwd(built.directory)  # where kbuild ran them

    ko.unlink()
    plan = bench.run([str(klp_ld), "--dry-run", *final], cwd=cwd, env=env)
    assert plan.returncode == 0, plan.stderr
    assert not ko.exists()
    assert "klp-ld: final link -> " in plan.stdout
    converted = (r"\.text\+0x[0-9a-f]+ R_X86_64_PC32 \.klp\.sym\.vmlinux\.state_show,2-4 -> "
                 r"\.klp\.rela\.vmlinux\.\.text \.klp\.sym\.vmlinux\.state_show,2")
    assert re.search(converted, plan.stdout), plan.stdout
    assert "klp-ld: would run: ld -r " in plan.stdout and f"-T {script}" in plan.stdout
    assert "klp-ld: validated 6 site(s), 0 problem(s)" in plan.stdout

    m_o.unlink()
    plan = bench.run([str(klp_ld), "--dry-run", *partial], cwd=cwd, env=env)
    assert plan.returncode == 0, plan.stderr
    assert not m_o.exists()
    for obj, pos in (("seed_a.o", 2), ("seed_b.o", 3)):
        assert f"{obj}: rename state_show -> .klp.sym.vmlinux.state_show,{pos}" in plan.stdout
        assert re.search(rf"{obj}: \.text\+0x[0-9a-f]+ R_X86_64_32S state_show -> "
                         rf"\.klp\.sym\.vmlinux\.state_show,{pos} ", plan.stdout)
