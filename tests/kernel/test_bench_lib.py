"""The bench's own logic, without a kernel: console parsing, kallsyms lookup, initramfs layout, options.

These run with the unit tests (no ``kernel`` marker), so a broken parser is caught before a slow boot
would misreport a module.
"""

from __future__ import annotations

import collections
import gzip
import os
import re
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest

from .bench import (
    ARM64,
    CROSS_KERNELS,
    KERNELS,
    PPC64LE,
    S390X,
    SOURCES,
    X86_64,
    Built,
    Case,
    Chroot,
    _Apt,
    _cross_release,
    _cross_source,
    _init_script,
    _Initramfs,
    _is_static_elf,
    _nested_binds,
    _private_apt_options,
    _series_image_pattern,
    _static_busybox,
    cache_root,
    config_fragment,
    config_mismatches,
    cross_config_digest,
    kallsyms_addresses,
    parse_console,
    parse_series,
    root_environ,
    strip_escapes,
)
from .conftest import boot_summary, unavailable


def test_parse_series() -> None:
    assert parse_series(None) == ("6.1",)
    assert parse_series("") == ("6.1",)
    assert parse_series("all") == (*KERNELS, *CROSS_KERNELS)
    assert parse_series("6.12, 6.1,6.12") == ("6.12", "6.1")
    assert parse_series("7.2") == ("7.2",)
    assert parse_series("all") == ("6.1", "6.12", "7.2", "ppc64le", "arm64", "s390x")
    assert parse_series("ppc64le,6.1") == ("ppc64le", "6.1")
    assert parse_series("arm64") == ("arm64",)
    assert parse_series("s390x,arm64") == ("s390x", "arm64")
    with pytest.raises(ValueError, match=re.escape("unknown kernel series '6.2'")):
        parse_series("6.2")


def test_cache_root_prefers_explicit_then_xdg(tmp_path: Path) -> None:
    assert cache_root({"KLP_LD_BENCH_CACHE": str(tmp_path)}) == tmp_path
    assert cache_root({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "klp-ld" / "bench"
    assert cache_root({}) == Path.home() / ".cache" / "klp-ld" / "bench"


@pytest.mark.parametrize(
    ("series", "package", "release"),
    [
        ("6.1", "linux-image-6.1.0-50-amd64-unsigned", "6.1.0-50-amd64"),
        ("6.1", "linux-image-6.1.0-9-amd64-unsigned", "6.1.0-9-amd64"),
        ("6.12", "linux-image-6.12.117+deb12-amd64-unsigned", "6.12.117+deb12-amd64"),
        ("6.1", "linux-image-6.12.117+deb12-amd64-unsigned", None),
        ("6.1", "linux-image-6.1.0-50-rt-amd64-unsigned", None),
        ("6.1", "linux-image-6.1.0-50-cloud-amd64-unsigned", None),
        ("6.12", "linux-image-6.12.117+deb12-amd64", None),
        ("7.2", "linux-binary-7.2.13+deb14-amd64", "7.2.13+deb14-amd64"),
        ("7.2", "linux-binary-7.4.1+deb14-amd64", "7.4.1+deb14-amd64"),  # any 7.x replaces a lost 7.2.13
        ("7.2", "linux-binary-7.2.13+deb14-cloud-amd64", None),
        ("7.2", "linux-binary-7.2.13+deb14-rt-amd64", None),
        ("7.2", "linux-binary-unsigned-7.2.13+deb14-amd64", None),
        ("7.2", "linux-image-7.2.13+deb14-amd64", None),  # a meta package
        ("7.2", "linux-binary-70.1+deb14-amd64", None),
        ("7.2", "linux-binary-6.19.8+deb14-amd64", None),
    ],
)
def test_series_pattern(series: str, package: str, release: str | None) -> None:
    match = re.match(_series_image_pattern(series), package)
    assert (match.group(1) if match else None) == release


def test_sources_describe_every_pinned_kernel() -> None:
    assert list(SOURCES) == list(KERNELS)
    for series, release in KERNELS.items():
        packages = SOURCES[series].image_packages(release)
        match = re.match(_series_image_pattern(series), packages[0])
        assert match and match.group(1) == release, (series, packages)
        assert all(release in package for package in packages)
    assert SOURCES["7.2"].suite == "sid" and SOURCES["6.1"].suite is None


def test_nested_binds_mount_parents_first_and_skip_covered(tmp_path: Path) -> None:
    base = tmp_path / "pytest-1"
    binds = [("rw", base / "bench-7.2-0"), ("ro", tmp_path / "cache"), ("rw", base)]
    binds.append(("cow", base / "x" / "y"))
    assert _nested_binds(binds) == [("ro", tmp_path / "cache"), ("rw", base), ("cow", base / "x" / "y")]


def test_chroot_command_line(tmp_path: Path) -> None:
    chroot = Chroot(tmp_path / "7.2" / "chroot", "sid")
    binds = [("ro", Path("/c")), ("rw", Path("/w"))]
    cmd = chroot.command(["make", "-C", "/usr/src/x"], cwd=Path("/w"), binds=binds)
    assert cmd[1:5] == ["--mount", "--propagation", "private", "--"]
    at = cmd.index("klp-bench")
    assert cmd[at + 1:at + 5] == [str(chroot.tree), str(tmp_path / "7.2" / "mnt"), "overlay", "/w"]
    assert cmd[at + 5:] == ["ro", "/c", "rw", "/w", "--", "make", "-C", "/usr/src/x"]
    assert (tmp_path / "7.2" / "mnt").is_dir()
    assert "tree" in chroot.command(["true"], cwd=Path("/"), writable=True)
    with pytest.raises(ValueError):
        chroot.command(["true"], cwd=Path("/"), binds=[("rx", Path("/c"))])


def test_root_environ_uses_the_chroots_path() -> None:
    env = root_environ({"PATH": "/root/.pyenv/shims:/usr/bin", "PYTHONPATH": "/x", "HOME": "/root", "V": "1"})
    assert env == {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                   "V": "1"}


def test_chroot_runs_in_a_private_namespace_and_leaves_the_tree_alone(tmp_path: Path) -> None:
    """A tree with only a static busybox: the command sees /proc, /dev, the bound directories and a
    writable root; afterwards the tree is unchanged, the host sees no mount and the writes are gone."""
    busybox = _static_busybox()
    if os.geteuid() != 0 or busybox is None or shutil.which("unshare") is None:
        unavailable("the chroot runner needs root, unshare and a static busybox")
    tree = tmp_path / "release" / "chroot"
    for directory in ("bin", "proc", "dev", "etc", "tmp"):
        (tree / directory).mkdir(parents=True)
    shutil.copy(busybox, tree / "bin" / "busybox")
    for applet in ("sh", "cat", "ls", "touch", "echo", "grep"):
        (tree / "bin" / applet).symlink_to("busybox")
    before = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    shared, readonly = tmp_path / "shared", tmp_path / "readonly"
    shared.mkdir()
    readonly.mkdir()
    (readonly / "in").write_text("x")
    script = (f"touch /made-here && touch {shared}/out && ! touch {readonly}/no 2>/dev/null && "
              f"cat {readonly}/in && grep -c . /proc/self/mounts && ls /dev/null")
    cmd = Chroot(tree, "test").command(["/bin/sh", "-c", script], cwd=shared,
                                       binds=[("rw", shared), ("ro", readonly)])
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("x") and "/dev/null" in done.stdout, done.stdout
    assert (shared / "out").is_file() and not (readonly / "no").exists()
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*")) == before
    with open("/proc/self/mounts") as mounts:
        assert str(tmp_path) not in mounts.read()


def test_strip_escapes() -> None:
    raw = "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16)\r\nBooting from ROM..\x1b(B.\r\n"
    assert strip_escapes(raw) == "SeaBIOS (version 1.16)\nBooting from ROM...\n"


CONSOLE = (
    "\x1bc\x1b[2JSeaBIOS\r\nBooting from ROM..\x1bc@@KLPBENCH-INIT 6.1.0-50-amd64@@\r\n"
    "@@KLPBENCH-BEGIN load@@\r\n[    1.5] livepatch: something on the console\r\n"
    "@@KLPBENCH-OUTPUT load@@\r\nline one\r\nno newline at end\r\n@@KLPBENCH-DMESG load@@\r\n"
    "[    1.748136] mod: Unknown symbol x (err -2)\r\n[ 1234.000001] mod: second\r\n\r\n"
    "@@KLPBENCH-END load rc=2@@\r\n"
    "@@KLPBENCH-BEGIN quiet@@\r\n@@KLPBENCH-OUTPUT quiet@@\r\n\r\n@@KLPBENCH-DMESG quiet@@\r\n\r\n"
    "@@KLPBENCH-END quiet rc=0@@\r\n"
    "@@KLPBENCH-BEGIN crash@@\r\n[    2.0] BUG: unable to handle page fault\r\n"
    "[    2.1] Kernel panic - not syncing: Fatal exception\r\n"
)


def test_parse_console_cases() -> None:
    cases = [Case("load", ["insmod /mod/m.ko"]), Case("quiet", "true"), Case("crash", ["insmod /mod/c.ko"])]
    cases.append(Case("never", ["true"]))
    result = parse_console(CONSOLE, cases, release="6.1.0-50-amd64")
    load = result["load"]
    assert load.rc == 2
    assert load.output == "line one\nno newline at end"
    assert load.dmesg == ("mod: Unknown symbol x (err -2)", "mod: second")
    assert load.dmesg_with("Unknown symbol") == ["mod: Unknown symbol x (err -2)"]
    assert "livepatch: something" not in load.output
    assert result["quiet"].ok and result["quiet"].output == "" and result["quiet"].dmesg == ()
    crash = result["crash"]
    assert crash.rc is None and "panicked" in crash.stop_reason
    assert "Kernel panic - not syncing" in crash.explain()
    assert "never started" in result["never"].stop_reason
    assert not result.completed and not result.timed_out
    assert [c.name for c in result.failures()] == ["load", "crash", "never"]


def test_explain_shows_commands_output_and_kernel_log() -> None:
    result = parse_console(CONSOLE, [Case("load", ["insmod /mod/m.ko"])])
    text = result["load"].explain("module refused")
    assert text.splitlines()[0] == "case 'load' exited with status 2: module refused"
    assert "$ insmod /mod/m.ko" in text
    assert "no newline at end" in text
    assert "mod: Unknown symbol x (err -2)" in text


def test_parse_console_timeout() -> None:
    result = parse_console("@@KLPBENCH-INIT x@@\n", [Case("slow", "sleep 999")], timed_out=True, seconds=120)
    assert result["slow"].rc is None
    assert "killed after 120 s" in result["slow"].explain()


def test_kallsyms_addresses() -> None:
    text = (
        "ffffffff81000000 T _text\n"
        "ffffffff81100010 t state_show\n"
        "ffffffff81200020 t state_show\n"
        "ffffffffc0001000 t state_show\t[dummy]\n"
        "ffffffff81300030 t state_show\n"
        "ffffffff81300040 t state_show_extra\n"
    )
    assert kallsyms_addresses(text, "state_show") == [
        0xFFFFFFFF81100010,
        0xFFFFFFFF81200020,
        0xFFFFFFFF81300030,
    ]
    assert kallsyms_addresses(text.splitlines(), "state_show", module="dummy") == [0xFFFFFFFFC0001000]
    assert kallsyms_addresses(text, "missing") == []


def test_kallsyms_addresses_from_file(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms"
    path.write_text("0000000000000000 T a\n0000000000000010 T a\n")
    assert kallsyms_addresses(path, "a") == [0, 0x10]


def _unpack_newc(blob: bytes) -> list[tuple[str, int, bytes, int, int]]:
    data = gzip.decompress(blob)
    entries: list[tuple[str, int, bytes, int, int]] = []
    offset = 0
    while True:
        assert data[offset : offset + 6] == b"070701"
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name_start = offset + 110
        name = data[name_start : name_start + namesize - 1].decode()
        data_start = (name_start + namesize + 3) & ~3
        body = data[data_start : data_start + filesize]
        offset = (data_start + filesize + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries.append((name, fields[1], body, fields[9], fields[10]))


def test_initramfs_is_newc_with_parents_first() -> None:
    archive = _Initramfs()
    archive.file("/mod/x.ko", b"\x7fELF", 0o644)
    archive.symlink("usr/bin/awk", "/bin/busybox")
    archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    entries = _unpack_newc(archive.pack())
    names = [entry[0] for entry in entries]
    assert names == sorted(names)
    for name in names:
        parent = name.rpartition("/")[0]
        assert not parent or names.index(parent) < names.index(name)
    by_name = {entry[0]: entry for entry in entries}
    assert by_name["mod/x.ko"][1:3] == (stat.S_IFREG | 0o644, b"\x7fELF")
    assert by_name["usr/bin/awk"][1:3] == (stat.S_IFLNK | 0o777, b"/bin/busybox")
    assert by_name["dev/console"][1:] == (stat.S_IFCHR | 0o600, b"", 5, 1)
    assert stat.S_ISDIR(by_name["usr"][1])


def test_init_script() -> None:
    script = _init_script([Case("a", "true", timeout=2.5)], dump_kallsyms=True, shell=False)
    assert script.startswith("#!/bin/sh\n")
    assert "echo 0 > /proc/sys/kernel/kptr_restrict" in script
    assert "run_case a /bench/case-0.sh 3" in script
    assert script.index("KALLSYMS-BEGIN") < script.index("run_case a")
    assert script.rstrip().endswith("poweroff -f")
    assert "cttyhack" not in script
    assert "setsid cttyhack sh" in _init_script([], dump_kallsyms=False, shell=True)


def test_case_validation() -> None:
    assert Case("x", "echo hi").commands == ("echo hi",)
    assert Case("x", ["a", "b"]).script() == "set -e\ncd /\na\nb\n"
    for bad in ("", "has space", "a@b", "-lead", "x" * 65):
        with pytest.raises(ValueError):
            Case(bad, ["true"])


def test_built_module_lookup(tmp_path: Path) -> None:
    built = Built(tmp_path, (tmp_path / "klpb_cmdline.ko", tmp_path / "multi.ko"), "log")
    assert built.module("klpb-cmdline") == tmp_path / "klpb_cmdline.ko"
    assert built.module("multi.ko") == tmp_path / "multi.ko"
    assert list(built) == list(built.modules)
    with pytest.raises(KeyError):
        built.module("other")


def test_boot_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    from . import bench

    monkeypatch.setattr(bench, "_BOOTS", collections.Counter())
    assert boot_summary() == "kernel bench: 0 boots"
    bench._BOOTS.update({"7.2": 3, "6.1": 1})
    assert boot_summary() == "kernel bench: 4 boots (6.1: 1, 7.2: 3)"


def test_machines_boot_commands() -> None:
    """x86_64 boots as it always did; ppc64le on pseries with the hypervisor console, arm64 on virt with the
    PL011, s390x on s390-ccw-virtio with the SCLP VT220 terminal; only s390x is big-endian."""
    x86 = [X86_64.qemu, *X86_64.qemu_options]
    assert x86 == ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "1",
                   "-no-reboot", "-nic", "none"]
    assert X86_64.append == "console=ttyS0 panic=-1 quiet loglevel=4"
    assert X86_64.make_vars == () and X86_64.cross_compile == "" and X86_64.host_busybox
    assert PPC64LE.qemu == "qemu-system-ppc64" and PPC64LE.qemu_options[1].startswith("pseries")
    assert PPC64LE.append.startswith("console=hvc0 ")
    assert PPC64LE.cross_compile == "powerpc64le-linux-gnu-" and not PPC64LE.host_busybox
    assert dict(PPC64LE.make_vars)["ARCH"] == "powerpc"
    assert [ARM64.qemu, *ARM64.qemu_options] == ["qemu-system-aarch64", "-M", "virt", "-accel", "tcg",
                                                 "-cpu", "max", "-m", "1024", "-smp", "1", "-no-reboot",
                                                 "-nic", "none"]
    assert ARM64.append == "console=ttyAMA0 panic=-1 quiet loglevel=4"
    assert ARM64.qemu_package == "qemu-system-arm"
    assert ARM64.make_vars == (("ARCH", "arm64"), ("CROSS_COMPILE", "aarch64-linux-gnu-"))
    assert ARM64.kernel_file == "Image" and not ARM64.host_busybox
    assert [S390X.qemu, *S390X.qemu_options] == ["qemu-system-s390x", "-M", "s390-ccw-virtio", "-accel",
                                                 "tcg", "-cpu", "max", "-m", "1024", "-smp", "1",
                                                 "-no-reboot", "-nic", "none"]
    assert S390X.append == "console=ttysclp0 panic=-1 quiet loglevel=4"
    assert S390X.qemu_package == "qemu-system-misc"
    assert S390X.make_vars == (("ARCH", "s390"), ("CROSS_COMPILE", "s390x-linux-gnu-"))
    assert S390X.kernel_file == "bzImage" and not S390X.host_busybox
    assert (S390X.byteorder, S390X.elf_data) == ("big", 2)
    for machine in (X86_64, PPC64LE, ARM64):
        assert (machine.byteorder, machine.elf_data) == ("little", 1), machine.name


def test_init_script_installs_applets_only_when_asked() -> None:
    plain = _init_script([], dump_kallsyms=False, shell=False)
    assert "--install" not in plain
    script = _init_script([], dump_kallsyms=False, shell=False, install_applets=True)
    assert script.splitlines()[:2] == ["#!/bin/sh", "/bin/busybox --install -s"]
    assert script.splitlines()[2:] == plain.splitlines()[1:]


def test_config_fragment_and_mismatches() -> None:
    fragment = "# comment\nCONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=n\nCONFIG_E=\"x y\"\n"
    assert config_fragment(fragment) == {"CONFIG_A": "y", "CONFIG_B": "m", "CONFIG_C": "n", "CONFIG_D": "n",
                                         "CONFIG_E": '"x y"'}
    config = "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_D is not set\nCONFIG_C=y\nCONFIG_E=\"x y\"\n"
    assert config_mismatches(fragment, config) == ["CONFIG_B=m (got: y)", "CONFIG_C=n (got: y)"]
    assert config_mismatches("CONFIG_LIVEPATCH=y\n", "# CONFIG_LIVEPATCH is not set\n") == [
        "CONFIG_LIVEPATCH=y (got: not set)"
    ]


def test_ppc64le_fragment_asks_for_livepatch() -> None:
    spec = CROSS_KERNELS["ppc64le"]
    settings = config_fragment(spec.fragment.read_text())
    for name in ("CONFIG_LIVEPATCH", "CONFIG_MODULES", "CONFIG_MODULE_UNLOAD", "CONFIG_HVC_CONSOLE",
                 "CONFIG_CPU_LITTLE_ENDIAN", "CONFIG_KALLSYMS_ALL", "CONFIG_DYNAMIC_FTRACE_WITH_REGS"):
        assert settings[name] == "y", name
    assert settings["CONFIG_SAMPLE_LIVEPATCH"] == "m" and settings["CONFIG_MODULE_SIG"] == "n"
    assert re.fullmatch(r"[0-9a-f]{12}", cross_config_digest(spec))


def test_arm64_fragment_asks_for_livepatch() -> None:
    spec = CROSS_KERNELS["arm64"]
    assert (spec.source_package, spec.suite, spec.fallback) == ("linux-source-7.2", "sid", "7")
    assert spec.machine is ARM64 and spec.kernel_image == "arch/arm64/boot/Image"
    assert (spec.compiler_package, spec.busybox_arch) == ("gcc-aarch64-linux-gnu", "arm64")
    settings = config_fragment(spec.fragment.read_text())
    for name in ("CONFIG_LIVEPATCH", "CONFIG_MODULES", "CONFIG_MODULE_UNLOAD", "CONFIG_SERIAL_AMBA_PL011",
                 "CONFIG_SERIAL_AMBA_PL011_CONSOLE", "CONFIG_BLK_DEV_INITRD", "CONFIG_DEVTMPFS",
                 "CONFIG_KALLSYMS_ALL", "CONFIG_DYNAMIC_FTRACE_WITH_ARGS", "CONFIG_HAVE_RELIABLE_STACKTRACE"):
        assert settings[name] == "y", name
    assert settings["CONFIG_SAMPLE_LIVEPATCH"] == "m" and settings["CONFIG_MODULE_SIG"] == "n"
    assert settings["CONFIG_DEBUG_INFO_BTF"] == "n" and settings["CONFIG_DEBUG_INFO_NONE"] == "y"
    assert cross_config_digest(spec) != cross_config_digest(CROSS_KERNELS["ppc64le"])


def test_s390x_fragment_asks_for_livepatch() -> None:
    spec = CROSS_KERNELS["s390x"]
    assert (spec.source_package, spec.suite) == ("linux-source-6.1", None)  # the source ppc64le builds
    assert spec.machine is S390X and spec.kernel_image == "arch/s390/boot/bzImage"
    assert (spec.compiler_package, spec.busybox_arch) == ("gcc-s390x-linux-gnu", "s390x")
    settings = config_fragment(spec.fragment.read_text())
    for name in ("CONFIG_LIVEPATCH", "CONFIG_MODULES", "CONFIG_MODULE_UNLOAD", "CONFIG_SCLP_VT220_TTY",
                 "CONFIG_SCLP_VT220_CONSOLE", "CONFIG_BLK_DEV_INITRD", "CONFIG_DEVTMPFS",
                 "CONFIG_KALLSYMS_ALL", "CONFIG_DYNAMIC_FTRACE_WITH_REGS", "CONFIG_HAVE_RELIABLE_STACKTRACE"):
        assert settings[name] == "y", name
    assert settings["CONFIG_SAMPLE_LIVEPATCH"] == "m" and settings["CONFIG_MODULE_SIG"] == "n"
    digests = {cross_config_digest(other) for other in CROSS_KERNELS.values()}
    assert len(digests) == len(CROSS_KERNELS)


def _elf64_executable(path: Path, byteorder: str, *, interp: bool) -> Path:
    """A minimal ELF64 header and one program header (PT_INTERP when ``interp``, else PT_LOAD)."""
    order = "<" if byteorder == "little" else ">"
    ident = b"\x7fELF\x02" + (b"\x01" if byteorder == "little" else b"\x02") + b"\x01" + bytes(9)
    header = ident + struct.pack(order + "HHIQQQIHHHHHH", 2, 22, 1, 0, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    program = struct.pack(order + "IIQQQQQQ", 3 if interp else 1, 5, 0, 0, 0, 0, 0, 0)
    path.write_bytes(header + program)
    return path


def test_static_elf_check_takes_the_machines_byte_order(tmp_path: Path) -> None:
    """The host's busybox is little-endian, s390x's big-endian: each is static only in its own order."""
    little = _elf64_executable(tmp_path / "little", "little", interp=False)
    big = _elf64_executable(tmp_path / "big", "big", interp=False)
    assert _is_static_elf(little) and _is_static_elf(little, "little") and not _is_static_elf(little, "big")
    assert _is_static_elf(big, "big") and not _is_static_elf(big)
    assert not _is_static_elf(_elf64_executable(tmp_path / "dynamic", "big", interp=True), "big")
    assert not _is_static_elf(tmp_path / "missing", "big")


def test_private_apt_state_of_a_suite(tmp_path: Path) -> None:
    """Debian 12's own suites for the guest's busybox; for sid, sid's main alone, verified with the archive
    keyring, in a state directory of the bench's own: nothing of the host's sources, lists or status."""
    base = tmp_path / "host"
    host = _private_apt_options(base, "ppc64el")
    assert host == ["-o", f"Dir::State={base}", "-o", f"Dir::State::status={base / 'status'}",
                    "-o", f"Dir::Cache={base / 'cache'}", "-o", "APT::Architecture=ppc64el",
                    "-o", "APT::Architectures=ppc64el"]
    assert (tmp_path / "host" / "lists" / "partial").is_dir() and (tmp_path / "host" / "status").is_file()
    state = tmp_path / "sid"
    options = _private_apt_options(state, "amd64", "sid")
    same = [word.replace(str(tmp_path / "host"), str(state)).replace("ppc64el", "amd64") for word in host]
    assert options[: len(host)] == same
    settings = dict(word.split("=", 1) for word in options[len(host) + 1 :: 2])
    assert settings["Dir::Etc::SourceList"] == str(state / "sources.list")
    assert settings["Dir::Etc::SourceParts"] == str(state / "sources.list.d")
    assert not any((state / "sources.list.d").iterdir())
    assert settings["Dir::Etc::PreferencesParts"] == str(state / "preferences.d")
    assert settings["Acquire::Languages"] == "none" and settings["APT::Default-Release"] == ""
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    line = f"deb [signed-by={keyring}] http://deb.debian.org/debian sid main\n"
    assert (state / "sources.list").read_text() == line
    assert _private_apt_options(state, "amd64", "sid") == options  # the lists stay for the next run


class _FakeApt(_Apt):
    """An apt that offers ``versions`` (package -> version) and answers searches from them."""

    def __init__(self, versions: dict[str, str]) -> None:
        super().__init__()
        self.versions = versions

    def candidate(self, package: str) -> str | None:
        return self.versions.get(package)

    def offered(self, packages: object) -> set[str]:
        return {package for package in packages if package in self.versions}  # type: ignore[attr-defined]

    def search(self, pattern: str) -> list[str]:
        return [name for name in self.versions if re.match(pattern, name)]


def test_cross_source_falls_back_to_a_newer_source_package() -> None:
    spec = CROSS_KERNELS["arm64"]
    offered = {"linux-source-7.2": "7.2.13-1", "linux-source-7.3": "7.3.1-1", "linux-source-6.19": "6.19.9-1"}
    assert _cross_source(spec, _FakeApt(offered)) == ("linux-source-7.2", "7.2.13-1")
    del offered["linux-source-7.2"]
    offered["linux-source-7.10"] = "7.10.2-1"
    assert _cross_source(spec, _FakeApt(offered)) == ("linux-source-7.10", "7.10.2-1")
    assert _cross_source(spec, _FakeApt({"linux-source-7.1": "7.1.5-1", "linux-source-8.0": "8.0-1"})) is None
    assert _cross_source(CROSS_KERNELS["ppc64le"], _FakeApt({"linux-source-6.2": "6.2-1"})) is None


def test_cross_release_looks_for_the_machines_kernel_file(tmp_path: Path) -> None:
    kernel = tmp_path / "arm64-7.2.13-1-0123456789ab"
    (kernel / "image" / "boot").mkdir(parents=True)
    (kernel / "build").mkdir()
    (kernel / "build" / "Module.symvers").write_text("")
    (kernel / "image" / "boot" / "System.map-7.2.13").write_text("")
    (kernel / "image" / "boot" / "vmlinux-7.2.13").write_text("")
    arm64, ppc64le = CROSS_KERNELS["arm64"], CROSS_KERNELS["ppc64le"]
    assert _cross_release(kernel, arm64) is None  # no marker yet
    (kernel / ".complete").write_text("7.2.13\n")
    assert _cross_release(kernel, arm64) is None and _cross_release(kernel, ppc64le) == "7.2.13"
    (kernel / "image" / "boot" / "Image-7.2.13").write_text("")
    assert _cross_release(kernel, arm64) == "7.2.13"


@pytest.mark.parametrize("series", ["ppc64le", "arm64", "s390x"])
def test_cross_series_without_its_tools_is_unavailable(
    series: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing cross compiler or QEMU with no apt to install it: BenchUnavailable naming the packages
    (which the fixture turns into a skip, or a failure under CI), before anything is downloaded."""
    from . import bench

    spec = CROSS_KERNELS[series]
    absent = {spec.machine.qemu, f"{spec.machine.cross_compile}gcc", "apt-get"}
    real_which = shutil.which

    def which(name: str, *args: object, **kwargs: object) -> str | None:
        return None if name in absent else real_which(name)

    monkeypatch.setattr(shutil, "which", which)
    with pytest.raises(bench.BenchUnavailable) as raised:
        bench.Bench.prepare(series, tmp_path / "work", cache=tmp_path / "cache")
    message = str(raised.value)
    assert spec.compiler_package in message and spec.machine.qemu_package in message, message
    assert "\n" not in message
    assert not (tmp_path / "cache" / "cross").exists()


def test_unavailable_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="a missing prerequisite fails the run"):
        unavailable("no qemu-system-ppc64")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        unavailable("no qemu-system-ppc64")
