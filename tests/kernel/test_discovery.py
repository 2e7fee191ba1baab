"""Symbol sources found without --klp-symbols, for the release the headers build for.

The bench cannot run the guest's kernel on the host, so it lays out the guest's own files
(/proc/kallsyms from a boot of that kernel, its /proc/sys/kernel/osrelease, its /lib/modules
tree) under KLP_LD_TEST_ROOT, which discovery prefixes to the system paths it searches.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from .bench import Bench, BuildError, Case
from .conftest import KMOD

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def guest_root(bench: Bench, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("guest-root")
    (root / "proc" / "sys" / "kernel").mkdir(parents=True)
    shutil.copy(bench.kallsyms(), root / "proc" / "kallsyms")
    (root / "proc" / "sys" / "kernel" / "osrelease").write_text(bench.release + "\n")
    (root / "lib" / "modules").mkdir(parents=True)
    (root / "lib" / "modules" / bench.release).symlink_to(bench.modules_dir)
    return root


def test_vmlinux_positions_come_from_the_running_kernel(bench: Bench, klp_ld: Path, guest_root: Path) -> None:
    built = bench.build(KMOD / "seed", ld=klp_ld, env={"KLP_LD_TEST_ROOT": str(guest_root),
                                                        "KLP_LD_VERBOSE": "1"})
    log = built.log
    assert re.search(rf"klp-ld: symbols: vmlinux: {re.escape(str(guest_root))}/proc/kallsyms \[kallsyms, "
                     r"primary\]", log), log
    assert re.search(r"rename state_show -> \.klp\.sym\.vmlinux\.state_show,3 \(annotated at "
                     r"\.klp\.module_relocs\.vmlinux\+0x0; 3 of \d in vmlinux\)", log), log


def test_wrong_position_fails_without_being_told_the_sources(bench: Bench, klp_ld: Path, guest_root: Path,
                                                             tmp_path: Path) -> None:
    source = tmp_path / "seed"
    shutil.copytree(KMOD / "seed", source)
    b_c = source / "seed_b.c"
    b_c.write_text(b_c.read_text().replace("KLP_SYMPOS(state_show, 3)", "KLP_SYMPOS(state_show, 9)"))
    with pytest.raises(BuildError) as failure:
        bench.build(source, ld=klp_ld, env={"KLP_LD_TEST_ROOT": str(guest_root)})
    assert "position 9 does not exist" in failure.value.log


def test_module_target_from_the_release_tree_loads(bench: Bench, klp_ld: Path, guest_root: Path) -> None:
    built = bench.build(KMOD / "klp_late", ld=klp_ld, env={"KLP_LD_TEST_ROOT": str(guest_root),
                                                            "KLP_LD_VERBOSE": "1"})
    assert re.search(r"klp-ld: symbols: dummy: \S+/drivers/net/dummy\.ko(\.xz)? \[module, primary\]",
                     built.log), built.log
    assert "rename numdummies -> .klp.sym.dummy.numdummies,0 (annotated at .klp.module_relocs.dummy+0x0; " \
           "unique in dummy)" in built.log
    dummy = bench.image_module("drivers/net/dummy")
    result = bench.boot([Case("late", ["insmod /mod/klp_late.ko", f"insmod /mod/{dummy.name} numdummies=5",
                                       "cat /sys/class/net/dummy0/statistics/rx_packets"])],
                        files=[built, dummy])
    case = result["late"]
    assert case.rc == 0 and case.output.strip().splitlines()[-1] == "4205", case.explain()
