"""First real checks: modules linked through wrappers/klp-ld load (or fail to) in a real kernel.

All modules are built first and loaded in a single boot (the ``run`` fixture), because a boot under TCG
costs more than every build together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from .bench import Bench, BootResult, Built, Case, kallsyms_addresses
from .conftest import KMOD

pytestmark = pytest.mark.kernel

# Must match KLPB_CMDLINE_TEXT in testdata/kmod/klpb_cmdline/klpb_cmdline.c.
PATCHED_CMDLINE = "klp-ld bench: cmdline_proc_show is patched"
LIVEPATCH_DIR = "/sys/kernel/livepatch/klpb_cmdline"


@dataclass(frozen=True)
class Run:
    cmdline: Built
    multi: Built
    unknown: Built
    result: BootResult


@pytest.fixture(scope="module")
def run(bench: Bench, klp_ld: Path) -> Run:
    cmdline = bench.build(KMOD / "klpb_cmdline", ld=klp_ld)
    multi = bench.build(KMOD / "multi", ld=klp_ld)
    # On a host that runs the target kernel, klp-ld would find its symbols and convert the
    # reference by itself: this case is about an unconverted one, so discovery is off.
    unknown = bench.build(KMOD / "klpb_unknown", ld=klp_ld, make_vars={"KBUILD_MODPOST_WARN": "1"},
                          env={"KLP_LD_NO_DISCOVER": "1"})
    cases = [
        Case(
            "cmdline-patch",
            ["insmod /mod/klpb_cmdline.ko", "cat /proc/cmdline", f"cat {LIVEPATCH_DIR}/enabled"],
        ),
        Case(
            "cmdline-unpatch",
            [
                f"echo 0 > {LIVEPATCH_DIR}/enabled",
                # The transition to unpatched runs from a worker; the sysfs directory goes when it is done.
                f"i=0; while [ -e {LIVEPATCH_DIR} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done",
                "rmmod klpb_cmdline",
                "cat /proc/cmdline",
            ],
        ),
        Case("multi", ["insmod /mod/multi.ko seed=7", "cat /sys/module/multi/parameters/result"]),
        Case("unknown-symbol", ["insmod /mod/klpb_unknown.ko"]),
        Case("kallsyms-live", ["grep -w -e cmdline_proc_show -e saved_command_line /proc/kallsyms"]),
    ]
    result = bench.boot(cases, files=[cmdline, multi, unknown])
    return Run(cmdline, multi, unknown, result)


def test_livepatch_sample_replaces_cmdline_proc_show(run: Run) -> None:
    case = run.result["cmdline-patch"]
    assert case.rc == 0, case.explain()
    assert case.output.splitlines() == [PATCHED_CMDLINE, "1"], case.explain("/proc/cmdline is not patched")
    assert case.dmesg_with("livepatch: enabling patch 'klpb_cmdline'"), case.explain("no enabling message")


def test_livepatch_disables_and_unloads(run: Run) -> None:
    case = run.result["cmdline-unpatch"]
    assert case.rc == 0, case.explain()
    assert "console=ttyS0" in case.output, case.explain("/proc/cmdline still patched after disabling")


def test_multi_object_module_through_klp_ld(run: Run) -> None:
    case = run.result["multi"]
    assert case.rc == 0, case.explain()
    expected = 7 * 7 + 3 * 7 + 11
    assert case.output.strip() == str(expected), case.explain(f"expected result={expected}")
    assert case.dmesg_with(f"multi: seed=7 result={expected}"), case.explain("no result in the kernel log")


def test_unexported_symbol_without_conversion_is_refused(run: Run) -> None:
    assert 'WARNING: modpost: "saved_command_line"' in run.unknown.log, run.unknown.log[-3000:]
    case = run.result["unknown-symbol"]
    assert case.rc not in (0, None), case.explain("the kernel accepted an unresolvable reference")
    assert case.dmesg_with("klpb_unknown: Unknown symbol saved_command_line"), case.explain()


def test_failure_report_quotes_the_kernel(run: Run) -> None:
    """A failing case's explain() carries the kernel's own message, so a pytest failure shows it."""
    case = run.result["unknown-symbol"]
    report = case.explain()
    assert f"exited with status {case.rc}" in report
    assert "$ insmod /mod/klpb_unknown.ko" in report
    assert "klpb_unknown: Unknown symbol saved_command_line" in report
    assert run.result.failures() == [case], [c.explain() for c in run.result.failures()]


def test_kallsyms_dump_matches_the_running_kernel(bench: Bench, run: Run) -> None:
    cached = bench.kallsyms()
    for name in ("cmdline_proc_show", "saved_command_line"):
        assert len(kallsyms_addresses(cached, name)) == 1, name
    assert len(kallsyms_addresses(cached, "state_show")) >= 2
    case = run.result["kallsyms-live"]
    assert case.rc == 0, case.explain()
    live = kallsyms_addresses(case.output, "cmdline_proc_show")
    assert len(live) == 1 and live[0] != 0, case.explain("kptr_restrict still hides addresses?")
