"""The kernel bench: build modules with kbuild and let a real Debian kernel, booted under QEMU, judge them.

Unit tests can check the ELF that klp-ld writes, but only the kernel's module loader and livepatch core can
say whether a module is right: whether its relocations resolve, its symbols are found and its patch
enables. So this bench builds external modules exactly as users do (``make -C <headers> M=<dir> LD=...``),
packs them into a busybox initramfs and boots the matching Debian kernel under QEMU. QEMU has to emulate
the CPU (TCG; KVM is unavailable on the hosts this runs on), so a boot costs 5-15 s: many *cases* run in one
boot, each fenced by markers on the serial console, with the kernel messages it caused.

Everything comes from Debian packages. Kernels of the host's release (Debian 12) build on the host: the
headers are installed with apt-get, the kernel image is only downloaded and unpacked into a cache, never
installed. Kernels whose headers need a newer toolchain (sid's 7.x needs gcc-16 and glibc 2.38) build in a
chroot of that suite, made once with debootstrap and cached beside the image; each build runs in a private
mount namespace over a throw-away copy of it (see :class:`Chroot`), with the checkout's klp-ld and the
test's directories at their host paths, so logs, reports and ``Built`` paths read the same on every
kernel. When a piece cannot be had (no root, no apt, no network, no qemu), :class:`BenchUnavailable` says
why in one line; the pytest fixtures turn it into a skip (a failure under CI).

Debian has no ppc64el kernel with CONFIG_LIVEPATCH, so the ppc64le series is a kernel the bench builds
itself (see :class:`CrossKernel`): Debian 12's ``linux-source-6.1`` cross-compiled with Debian's
``gcc-powerpc64le-linux-gnu`` from allnoconfig plus ``configs/ppc64le.config``, cached once built, and
booted on QEMU's pseries machine with Debian's ppc64el busybox. The arm64 series is built the same way
from Debian sid's ``linux-source-7.2`` (arm64 has livepatch since 6.17), fetched through an apt state of
the bench's own, with Debian 12's ``gcc-aarch64-linux-gnu``, and booted on QEMU's virt machine. The s390x
series is Debian 12's ``linux-source-6.1`` again, cross-compiled with ``gcc-s390x-linux-gnu`` from
``configs/s390x.config`` and booted on QEMU's s390-ccw-virtio machine with Debian's s390x busybox: the one
big-endian guest, so nothing here takes an ELF file's byte order for granted. Everything after the setup
(building external modules, booting, cases, results) is the same code for every series; :class:`Machine`
holds what differs between the architectures.

Nothing here imports pytest, so the bench can be driven from a Python prompt while debugging.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import fcntl
import functools
import gzip
import hashlib
import math
import os
import re
import shlex
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

# The single place that names the kernels the bench supports: series -> pinned Debian kernel release.
# How each series is had is in SOURCES below. When the archive stops offering a pinned release, the bench
# falls back to the newest release of the same series (for sid: of the same major version) that it offers.
KERNELS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "6.1": "6.1.0-50-amd64",
        "6.12": "6.12.117+deb12-amd64",
        "7.2": "7.2.13+deb14-amd64",
    }
)


@dataclass(frozen=True)
class KernelSource:
    """How the bench gets the kernels of one series.

    ``suite`` None means the host's own apt (Debian 12): headers installed on the host, builds on the host.
    Otherwise builds run in a debootstrapped chroot of that Debian suite, where apt also finds the image
    packages. ``images`` are the packages unpacked into the cached image tree (``{release}`` filled in);
    the first one names the release when searching for a fallback. ``fallback`` is the release prefix
    a fallback must have ("6.1" does not take 6.12; "7" takes any 7.x).
    """

    suite: str | None
    images: tuple[str, ...]
    fallback: str

    def image_packages(self, release: str) -> tuple[str, ...]:
        return tuple(template.format(release=release) for template in self.images)


_HOST_SOURCE: Final = ("linux-image-{release}-unsigned",)
SOURCES: Final[Mapping[str, KernelSource]] = MappingProxyType(
    {
        "6.1": KernelSource(None, _HOST_SOURCE, "6.1"),
        "6.12": KernelSource(None, _HOST_SOURCE, "6.12"),
        # Split image packages (linux-image-<release> is only a meta package): linux-binary has
        # usr/lib/modules/<release>/vmlinuz, linux-modules the .ko.xz files, linux-base System.map.
        "7.2": KernelSource(
            "sid", ("linux-binary-{release}", "linux-modules-{release}", "linux-base-{release}"), "7"
        ),
    }
)
DEFAULT_SERIES: Final = "6.1"


@dataclass(frozen=True)
class Machine:
    """What booting one architecture's kernels under QEMU and building modules for them takes.

    ``qemu_options`` come before ``-kernel``; ``console`` is the kernel's console device; ``kernel_file``
    names the booted file in an image tree (``boot/<kernel_file>-<release>``); ``make_vars`` go on every
    kbuild command line (ARCH and CROSS_COMPILE of a cross build). ``host_busybox`` says whether the
    guest's busybox runs on the host: then its applet list is read there, otherwise the guest's /init
    installs the applet links itself. ``byteorder`` is the guest's, and so its ELF files' (``EI_DATA``):
    "big" on s390x.
    """

    name: str
    qemu: str
    qemu_package: str
    qemu_options: tuple[str, ...]
    console: str
    kernel_file: str
    make_vars: tuple[tuple[str, str], ...] = ()
    host_busybox: bool = True
    byteorder: Literal["little", "big"] = "little"

    @property
    def append(self) -> str:
        """The kernel parameters of every boot (a test's ``append`` comes after them)."""
        return f"console={self.console} panic=-1 quiet loglevel=4"

    @property
    def cross_compile(self) -> str:
        """The CROSS_COMPILE prefix ("" for a native build)."""
        return dict(self.make_vars).get("CROSS_COMPILE", "")

    @property
    def elf_data(self) -> int:
        """The ``EI_DATA`` byte of the machine's ELF files: 1 (ELFDATA2LSB) or 2 (ELFDATA2MSB)."""
        return 1 if self.byteorder == "little" else 2


_QEMU_COMMON: Final = ("-accel", "tcg")
X86_64: Final = Machine(
    "x86_64", "qemu-system-x86_64", "qemu-system-x86",
    (*_QEMU_COMMON, "-cpu", "max", "-m", "1024", "-smp", "1", "-no-reboot", "-nic", "none"),
    console="ttyS0", kernel_file="vmlinuz",
)  # fmt: skip
# pseries boots the ELF vmlinux through SLOF. TCG cannot emulate the speculation-barrier workarounds the
# machine asks for by default: turning them off spares a warning per boot. POWER9: the kernel is built for
# POWER8 and up (Debian's ppc64el baseline), and TCG emulates POWER9 well.
_PSERIES: Final = "pseries,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off"
PPC64LE: Final = Machine(
    "ppc64le", "qemu-system-ppc64", "qemu-system-ppc",
    ("-M", _PSERIES, *_QEMU_COMMON, "-cpu", "POWER9", "-m", "1024", "-smp", "1", "-no-reboot",
     "-nic", "none", "-vga", "none"),
    console="hvc0", kernel_file="vmlinux",
    make_vars=(("ARCH", "powerpc"), ("CROSS_COMPILE", "powerpc64le-linux-gnu-")), host_busybox=False,
)  # fmt: skip
# virt boots the raw arch/arm64/boot/Image (QEMU loads it as the arm64 boot protocol asks and passes the
# device tree) with the PL011 UART as ttyAMA0; PSCI powers the machine off.
ARM64: Final = Machine(
    "arm64", "qemu-system-aarch64", "qemu-system-arm",
    ("-M", "virt", *_QEMU_COMMON, "-cpu", "max", "-m", "1024", "-smp", "1", "-no-reboot", "-nic", "none"),
    console="ttyAMA0", kernel_file="Image",
    make_vars=(("ARCH", "arm64"), ("CROSS_COMPILE", "aarch64-linux-gnu-")), host_busybox=False,
)  # fmt: skip
# s390-ccw-virtio IPLs arch/s390/boot/bzImage straight from -kernel (no firmware in the way) and puts the
# -initrd and -append where the kernel's parameter area says; -serial (and -nographic's stdio) is the SCLP
# VT220 terminal, ttysclp0. Powering off stops the only CPU, which ends QEMU. A panic never gets to
# panic=-1's reboot: s390's on_panic action (stop) puts the CPU in a disabled wait first, which QEMU takes
# for a guest panic and, by default (-action panic=shutdown), exits on; -no-reboot covers a re-IPL.
S390X: Final = Machine(
    "s390x", "qemu-system-s390x", "qemu-system-misc",
    ("-M", "s390-ccw-virtio", *_QEMU_COMMON, "-cpu", "max", "-m", "1024", "-smp", "1", "-no-reboot",
     "-nic", "none"),
    console="ttysclp0", kernel_file="bzImage",
    make_vars=(("ARCH", "s390"), ("CROSS_COMPILE", "s390x-linux-gnu-")), host_busybox=False,
    byteorder="big",
)  # fmt: skip

CONFIGS: Final = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class CrossKernel:
    """A kernel series the bench builds itself, for an architecture Debian's kernel images cannot serve.

    ``source_package`` is Debian's kernel source package (its ``usr/src/<package>.tar.xz``), built with
    the cross compiler of ``compiler_package`` from allnoconfig plus the ``fragment`` (every line of which
    must hold in the result); ``kernel_image`` is the file of the build tree QEMU boots (made by the make
    target of its name). The guest's busybox is Debian's ``busybox-static`` of ``busybox_arch``, from the
    host's suites. ``suite`` None takes the source package from the host's apt sources; otherwise from
    that Debian suite through an apt state of the bench's own (see :func:`_suite_apt`), where, once the
    suite no longer offers ``source_package``, the newest ``linux-source-<fallback>.N`` not older than it
    takes its place. The cache key is the source package's version and a digest of the fragment and the
    build recipe.
    """

    source_package: str
    fragment: Path
    machine: Machine
    compiler_package: str
    busybox_arch: str
    kernel_image: str = "vmlinux"
    suite: str | None = None
    fallback: str = ""


CROSS_KERNELS: Final[Mapping[str, CrossKernel]] = MappingProxyType(
    {
        "ppc64le": CrossKernel(
            "linux-source-6.1", CONFIGS / "ppc64le.config", PPC64LE, "gcc-powerpc64le-linux-gnu", "ppc64el"
        ),
        # HAVE_LIVEPATCH came to arm64 in 6.17: Debian 12 has no such source, sid's 7.2 is built with
        # Debian 12's cross gcc 12 and binutils 2.40 (7.2 asks for gcc 8.1 and binutils 2.30).
        "arm64": CrossKernel(
            "linux-source-7.2", CONFIGS / "arm64.config", ARM64, "gcc-aarch64-linux-gnu", "arm64",
            kernel_image="arch/arm64/boot/Image", suite="sid", fallback="7",
        ),
        # The source ppc64le builds, for the big-endian machine; bzImage is the kernel with its
        # decompressor, which QEMU IPLs.
        "s390x": CrossKernel(
            "linux-source-6.1", CONFIGS / "s390x.config", S390X, "gcc-s390x-linux-gnu", "s390x",
            kernel_image="arch/s390/boot/bzImage",
        ),
    }
)  # fmt: skip
# Every series, in the order `all` runs them and the boot summary lists them.
SERIES: Final = (*KERNELS, *CROSS_KERNELS)

ENV_CACHE: Final = "KLP_LD_BENCH_CACHE"
ENV_SHELL: Final = "KLP_LD_BENCH_SHELL"
ENV_KEEP: Final = "KLP_LD_BENCH_KEEP"
ENV_KERNEL: Final = "KLP_LD_KERNEL"

# Host tools the bench runs, with the Debian package that provides each. busybox is checked apart: it must
# be the static build, because the initramfs holds no shared libraries.
_HOST_TOOLS: Final = (
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("cpio", "cpio"),
    ("xz", "xz-utils"),
    ("make", "make"),
)
# What a chroot series needs on the host besides those: debootstrap, and the keyring that verifies the
# suite's Release file (Debian 12's keyring verifies sid's). unshare, mount and chroot are always there.
_CHROOT_HOST_TOOLS: Final = (("debootstrap", "debootstrap"),)
_ARCHIVE_KEYRING: Final = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
_ARCHIVE_KEYRING_PACKAGE: Final = "debian-archive-keyring"
DEBIAN_MIRROR: Final = "http://deb.debian.org/debian"
# Installed into a chroot beside the headers: kbuild's make, and klp-ld with its Python modules. lld and
# llvm give the chroot what LLVM=1 and the ld.lld tests need, as Debian 12's lld and llvm do on the host.
_CHROOT_PACKAGES: Final = (
    "make", "binutils", "xz-utils", "python3", "python3-pyelftools", "python3-capstone", "lld", "llvm",
)  # fmt: skip
# apt settings of the chroot. A mirror or an archive snapshot may serve a Release file past its Valid-Until
# date; that alone is allowed: signatures are still verified (by the suite's own keyring package).
_CHROOT_APT_CONF: Final = """\
// klp-ld kernel bench
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
"""
_CHROOT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Where modules land in the guest. Tests write `insmod /mod/<name>.ko` in their cases.
GUEST_MODULE_DIR: Final = "/mod"

DEFAULT_BOOT_TIMEOUT: Final = 120.0
_KALLSYMS_DUMP_TIME: Final = 90.0

_CASE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
# CSI sequences, OSC strings, charset selection, then any other two-character escape (SeaBIOS sends ESC c).
_ESCAPES: Final = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()*+][0-9A-Za-z]|[ -/]*[0-~])"
)
_DMESG_TIME: Final = re.compile(r"^\[\s*\d+\.\d+\] ?")
_CASE_RESULT: Final = re.compile(
    r"@@KLPBENCH-OUTPUT (?P<name>[^@\n]+)@@\n(?P<output>.*?)\n@@KLPBENCH-DMESG (?P=name)@@\n"
    r"(?P<dmesg>.*?)\n@@KLPBENCH-END (?P=name) rc=(?P<rc>\d+)@@",
    re.S,
)
_KALLSYMS_DUMP: Final = re.compile(r"@@KLPBENCH-KALLSYMS-BEGIN@@\n(.*?)\n@@KLPBENCH-KALLSYMS-END@@", re.S)
_KBUILD_OUTPUTS: Final = (
    "*.o", "*.ko", "*.ko.xz", "*.mod", "*.mod.c", ".*.cmd", "*.cmd", "modules.order", "Module.symvers",
    ".tmp_versions", "build.log",
)  # fmt: skip


# Kernel boots this process made, by series (see boot_counts()).
_BOOTS: Final[collections.Counter[str]] = collections.Counter()


def boot_counts() -> dict[str, int]:
    """How many times this process booted each series' kernel, in SERIES order (series never booted
    are left out)."""
    return {series: _BOOTS[series] for series in SERIES if _BOOTS[series]}


class BenchUnavailable(Exception):
    """The bench cannot run on this machine; the message is one line naming what is missing."""


class BenchError(RuntimeError):
    """The bench itself went wrong (not the module under test): a broken dump, a malformed case list."""


class BuildError(RuntimeError):
    """kbuild failed. The message ends with the log tail; ``log`` holds all of it for finer assertions."""

    def __init__(self, message: str, *, log: str, returncode: int | None) -> None:
        super().__init__(message)
        self.log = log
        self.returncode = returncode


# --------------------------------------------------------------------------------------------------------
# Small helpers


def headers_package(release: str) -> str:
    return f"linux-headers-{release}"


def image_packages(series: str, release: str) -> tuple[str, ...]:
    """The packages unpacked into the image tree of ``release`` (a release of ``series``)."""
    return SOURCES[series].image_packages(release)


def headers_dir(release: str) -> Path:
    return Path("/usr/src") / f"linux-headers-{release}"


def parse_series(value: str | None) -> tuple[str, ...]:
    """Turn a ``--kernel``/``KLP_LD_KERNEL`` value ("6.1", "6.12", "ppc64le", "arm64", "s390x", "all",
    "6.1,arm64") into series names.

    Raises ValueError for an unknown series, so a typo fails loudly instead of testing nothing.
    """
    text = (value or "").strip() or DEFAULT_SERIES
    if text == "all":
        return SERIES
    chosen: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if item not in SERIES:
            raise ValueError(f"unknown kernel series {item!r}: choose {', '.join(SERIES)} or all")
        if item not in chosen:
            chosen.append(item)
    return tuple(chosen)


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(name, "")
    return value.strip().lower() not in ("", "0", "no", "false", "off")


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """The directory holding one subdirectory per kernel release (image tree, kallsyms dump)."""
    env = os.environ if environ is None else environ
    explicit = env.get(ENV_CACHE, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "klp-ld" / "bench"


def strip_escapes(text: str) -> str:
    """Drop terminal escapes and carriage returns, which SeaBIOS and the tty add around console lines."""
    return _ESCAPES.sub("", text).replace("\r", "")


def kallsyms_addresses(source: Path | str | Iterable[str], name: str, module: str | None = None) -> list[int]:
    """Addresses of every symbol called ``name`` in /proc/kallsyms order.

    ``source`` is a kallsyms file, the text of one (e.g. a case's output) or its lines. ``module=None``
    keeps vmlinux symbols only (lines without a ``[module]`` field), as livepatch's object "vmlinux" does;
    otherwise only that module's. Position N (klp's sympos) is index N-1 of the result; addresses move with
    KASLR on every boot, positions do not.
    """
    if isinstance(source, Path):
        lines: Iterable[str] = source.read_text().splitlines()
    elif isinstance(source, str):
        lines = source.splitlines()
    else:
        lines = source
    found: list[int] = []
    for line in lines:
        fields = line.split()
        if len(fields) < 3 or fields[2] != name:
            continue
        owner = fields[3].strip("[]") if len(fields) > 3 else None
        if owner == module:
            found.append(int(fields[0], 16))
    return found


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def _is_root() -> bool:
    return os.geteuid() == 0


def _run(
    cmd: Sequence[str], *, timeout: float, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a host command with stdout and stderr merged, never raising for a missing tool or a timeout.

    Setup failures must become one-line skip reasons, so the caller looks at the return code only.
    """
    try:
        return subprocess.run(
            list(cmd), cwd=cwd, env=None if env is None else dict(env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", timeout=timeout,
            check=False,
        )  # fmt: skip
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess(list(cmd), 127, f"{exc}\n")
    except subprocess.TimeoutExpired as exc:
        out = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else exc.output or ""
        return subprocess.CompletedProcess(list(cmd), 124, f"{out}\ntimed out after {timeout:.0f} s\n")


def _reason(output: str) -> str:
    """The line of a failed command's output most worth quoting in a one-line skip reason."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("E:", "dpkg:", "error", "Err:"))]
    return (errors or lines or ["(no output)"])[-1]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise setup between pytest processes (xdist workers, two terminals) sharing one cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _is_static_elf(path: Path, byteorder: Literal["little", "big"] = "little") -> bool:
    """True for an ELF64 executable of ``byteorder`` without PT_INTERP: only such a busybox runs in a bare
    initramfs (the host's is little-endian; s390x's is big-endian)."""
    data, order = (1, "<") if byteorder == "little" else (2, ">")
    try:
        with path.open("rb") as handle:
            header = handle.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != data:
                return False
            (phoff,) = struct.unpack_from(order + "Q", header, 0x20)
            phentsize, phnum = struct.unpack_from(order + "HH", header, 0x36)
            handle.seek(phoff)
            table = handle.read(phentsize * phnum)
    except OSError:
        return False
    if phentsize < 4 or len(table) < phentsize * phnum:
        return False
    pt_interp = 3
    entries = (struct.unpack_from(order + "I", table, i * phentsize)[0] for i in range(phnum))
    return all(p_type != pt_interp for p_type in entries)


def _static_busybox() -> Path | None:
    for candidate in (shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox"):
        if candidate and _is_static_elf(Path(candidate)):
            return Path(candidate).resolve()
    return None


def _missing_host_packages(*, chroot: bool = False) -> list[str]:
    """Host packages the bench still needs; ``chroot``: for a series that builds in a chroot."""
    tools = _HOST_TOOLS + (_CHROOT_HOST_TOOLS if chroot else ())
    missing = [package for tool, package in tools if shutil.which(tool) is None]
    if _static_busybox() is None:
        missing.append("busybox-static")
    if chroot and not _ARCHIVE_KEYRING.is_file():
        missing.append(_ARCHIVE_KEYRING_PACKAGE)
    return missing


def _release_key(release: str) -> tuple[int, ...]:
    return tuple(int(number) for number in re.findall(r"\d+", release))


def _series_image_pattern(series: str) -> str:
    """A regex valid both for `apt-cache search` (POSIX ERE) and Python, matching the first image package
    of the series' releases, generic amd64 flavour only (not -rt-/-cloud-, and "6.1" must not match
    "6.12"); group 1 is the release."""
    source = SOURCES[series]
    release = rf"({re.escape(source.fallback)}(\.[0-9]+)*(-[0-9]+)?(\+deb[0-9]+)?-amd64)"
    anchor = source.images[0]
    if not re.fullmatch(r"[a-z0-9-]*\{release\}[a-z0-9-]*", anchor):
        raise ValueError(f"image package template {anchor!r} needs escaping in a regex")
    return "^" + anchor.replace("{release}", release) + "$"


# --------------------------------------------------------------------------------------------------------
# apt


@dataclass
class _Apt:
    """apt-get and apt-cache, plus the single `apt-get update` that a machine with empty lists needs.

    With ``chroot`` they run in that chroot (``writable``: on the tree itself, else over a throw-away
    copy of it, where an update or a download leaves nothing behind but what went to a bound directory).
    ``options`` go to every apt-get and apt-cache: the ``-o`` settings of an apt state of the bench's own
    (see :func:`_private_apt_options`), which needs no root to update.
    """

    updated: bool = False
    chroot: Chroot | None = None
    writable: bool = False
    options: tuple[str, ...] = ()

    def present(self) -> bool:
        return self.chroot is not None or all(shutil.which(tool) for tool in ("apt-get", "apt-cache", "dpkg"))

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        return env if self.chroot is None else root_environ(env)

    def _run(
        self, cmd: Sequence[str], *, timeout: float, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        if self.options and cmd and cmd[0] in ("apt-get", "apt-cache"):
            cmd = [cmd[0], *self.options, *cmd[1:]]
        if self.chroot is None:
            return _run(cmd, timeout=timeout, cwd=cwd, env=self._env())
        binds = () if cwd is None else (("rw", cwd),)
        wrapped = self.chroot.command(cmd, cwd=cwd or Path("/"), binds=binds, writable=self.writable)
        return _run(wrapped, timeout=timeout, env=self._env())

    def update(self) -> bool:
        """Refresh the package lists once per setup; False when that is impossible or already done (or
        pointless: over a throw-away copy of a chroot the lists would be gone for the next command)."""
        if self.updated or not self.present() or not (_is_root() or self.options):
            return False
        if self.chroot is not None and not self.writable:
            return False
        self.updated = True
        return self._run(["apt-get", "update"], timeout=900).returncode == 0

    def offered(self, packages: Sequence[str]) -> set[str]:
        """The packages among ``packages`` that apt has an install candidate for."""
        if not packages:
            return set()
        proc = self._run(["apt-cache", "policy", *packages], timeout=300)
        found: set[str] = set()
        current: str | None = None
        for line in proc.stdout.splitlines():
            if line and not line[0].isspace() and line.endswith(":"):
                current = line[:-1]
            elif current and line.strip().startswith("Candidate:"):
                if line.split(":", 1)[1].strip() not in ("", "(none)"):
                    found.add(current)
                current = None
        return found

    def candidate(self, package: str) -> str | None:
        """The version apt would install of ``package`` (None: not offered, even after an update)."""
        for _ in range(2):
            proc = self._run(["apt-cache", "policy", package], timeout=300)
            for line in proc.stdout.splitlines():
                if line.strip().startswith("Candidate:"):
                    version = line.split(":", 1)[1].strip()
                    if version not in ("", "(none)"):
                        return version
            if not self.update():
                break
        return None

    def search(self, pattern: str) -> list[str]:
        proc = self._run(["apt-cache", "search", "--names-only", pattern], timeout=300)
        return [line.split(" - ", 1)[0].strip() for line in proc.stdout.splitlines() if " - " in line]

    def install(self, packages: Sequence[str]) -> None:
        if not packages:
            return
        wanted = " ".join(packages)
        where = "" if self.chroot is None else f" in the {self.chroot.suite} chroot"
        if not self.present():
            raise BenchUnavailable(f"{wanted} missing and there is no apt-get to install it")
        if not _is_root():
            raise BenchUnavailable(f"{wanted} missing and not root, so apt-get cannot install it")
        # Wait for a concurrent apt/dpkg (another worker, an unattended upgrade) instead of failing at once.
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600"]
        if self.chroot is not None:  # a tree being made: nothing to lose if the machine crashes meanwhile
            cmd += ["-o", "DPkg::Options::=--force-unsafe-io"]
        cmd += packages
        proc = self._run(cmd, timeout=1800)
        if proc.returncode != 0 and self.update():
            proc = self._run(cmd, timeout=1800)
        if proc.returncode != 0:
            raise BenchUnavailable(f"apt-get install {wanted}{where} failed: {_reason(proc.stdout)}")

    def download(self, packages: Sequence[str], directory: Path) -> list[Path]:
        cmd = ["apt-get", "download", *packages]
        if self.chroot is not None and not self.writable:  # stale lists: update in the same namespace
            script = 'apt-get download "$@" || { apt-get update && apt-get download "$@"; }'
            cmd = ["sh", "-c", script, "sh", *packages]
        proc = self._run(cmd, cwd=directory, timeout=1800)
        if proc.returncode != 0 and self.update():
            proc = self._run(cmd, cwd=directory, timeout=1800)
        debs = [sorted(directory.glob(f"{package}_*.deb")) for package in packages]
        if proc.returncode != 0 or not all(debs):
            raise BenchUnavailable(f"apt-get download {' '.join(packages)} failed: {_reason(proc.stdout)}")
        return [found[-1] for found in debs]

    def unpack(self, deb: Path, directory: Path) -> None:
        """``dpkg-deb -x`` with the dpkg of the suite that made the package (``directory``'s parent is
        made available to a chroot)."""
        binds = (("rw", directory.parent),) if self.chroot is not None else ()
        cmd = ["dpkg-deb", "-x", str(deb), str(directory)]
        if self.chroot is not None:
            cmd = self.chroot.command(cmd, cwd=Path("/"), binds=binds, writable=self.writable)
        proc = _run(cmd, timeout=900, env=self._env())
        if proc.returncode != 0:
            raise BenchUnavailable(f"dpkg-deb -x {deb.name} failed: {_reason(proc.stdout)}")


def _headers_installed(release: str, chroot: Path | None = None) -> bool:
    """The headers of ``release`` are on the host (``chroot`` None) or in that chroot tree."""
    headers = headers_dir(release)
    return ((chroot / headers.relative_to("/")) if chroot else headers).joinpath("Makefile").is_file()


def _image_file(image: Path, release: str, name: str) -> Path:
    """``vmlinuz`` or ``System.map`` of an unpacked image tree: ``boot/<name>-<release>`` in Debian 12's
    image packages, ``usr/lib/modules/<release>/<name>`` in sid's linux-binary. The first place when none
    exists."""
    candidates = [image / "boot" / f"{name}-{release}"]
    candidates += [image / base / "modules" / release / name for base in ("usr/lib", "lib")]
    return next((path for path in candidates if path.is_file()), candidates[0])


def _image_modules(image: Path, release: str) -> Path | None:
    for base in ("lib", "usr/lib"):
        candidate = image / base / "modules" / release / "kernel"
        if candidate.is_dir():
            return candidate.parent
    return None


def _image_ready(release_cache: Path, release: str) -> bool:
    image = release_cache / "image"
    return (
        _image_file(image, release, "vmlinuz").is_file()
        and _image_file(image, release, "System.map").is_file()
        and _image_modules(image, release) is not None
    )


def _resolve_release(series: str, root: Path, apt: _Apt, *, chroot: Path | None = None) -> str:
    """The pinned release when it is usable, else the newest release of the series that apt offers.

    A release is usable when its headers are installed or offered and its image is cached or offered; a
    cached, installed pinned release needs no apt at all, so a prepared machine works offline. ``chroot``
    is the tree whose headers count as installed (the host's when None).
    """
    pinned = KERNELS[series]
    if _headers_installed(pinned, chroot) and _image_ready(root / pinned, pinned):
        return pinned
    if not apt.present():
        raise BenchUnavailable(f"{pinned}: headers not installed or image not cached, and no apt to get them")

    def wanted(release: str) -> list[str]:
        return [headers_package(release), *image_packages(series, release)]

    def usable(release: str, offered: set[str]) -> bool:
        headers = _headers_installed(release, chroot) or headers_package(release) in offered
        image = _image_ready(root / release, release) or set(image_packages(series, release)) <= offered
        return headers and image

    pattern = _series_image_pattern(series)
    for _ in range(2):
        if usable(pinned, apt.offered(wanted(pinned))):
            return pinned
        matches = (re.match(pattern, name) for name in apt.search(pattern))
        releases = sorted({m.group(1) for m in matches if m}, key=_release_key, reverse=True)
        offered = apt.offered([p for r in releases for p in wanted(r)])
        for release in releases:
            if usable(release, offered):
                return release
        if not apt.update():
            break
    where = "" if chroot is None else f" ({SOURCES[series].suite})"
    pair = " + ".join(wanted(pinned))
    raise BenchUnavailable(f"apt{where} offers neither {pair} nor another {series} release")


def _ensure_image(series: str, release: str, release_cache: Path, apt: _Apt) -> Path:
    """Download and unpack the image packages into the cache (never install them) and return the tree.

    The tree is unpacked beside its final place and renamed into it, so a killed run leaves no half tree.
    """
    image = release_cache / "image"
    if _image_ready(release_cache, release):
        return image
    packages = image_packages(series, release)
    if not apt.present():
        raise BenchUnavailable(f"{' '.join(packages)} not cached and there is no apt-get to fetch it")
    release_cache.mkdir(parents=True, exist_ok=True)
    for stale in release_cache.glob(".unpack-*"):  # a killed run's; setup holds the lock
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=release_cache))
    try:
        for deb in apt.download(packages, staging):
            apt.unpack(deb, staging / "image")
        if image.exists():
            shutil.rmtree(image)
        (staging / "image").rename(image)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not _image_ready(release_cache, release):
        raise BenchUnavailable(f"{' + '.join(packages)}: no vmlinuz, System.map or modules for {release}")
    return image


# --------------------------------------------------------------------------------------------------------
# Chroots for kernels the host's toolchain cannot build for


# Runs on the host in a fresh mount namespace (unshare -m, private propagation: nothing is seen outside and
# every mount goes when the last process of the namespace exits, even a killed one), then chroots.
# $1 the chroot tree, $2 an empty directory to mount the namespace's tmpfs on, $3 "overlay" (run over a
# throw-away copy: the tree stays as it is) or "tree" (run on the tree itself, while making it), $4 the
# working directory inside; then MODE PATH pairs up to "--": host paths shown at the same path inside,
# read-only ("ro"), writable ("rw") or writable with the writes thrown away ("cow"); then the command.
_CHROOT_SCRIPT: Final = r"""set -eu
tree=$1 mnt=$2 layer=$3 cwd=$4
shift 4
mount -t tmpfs -o mode=0755 klp-bench "$mnt"
if [ "$layer" = overlay ]; then
    mkdir "$mnt/upper" "$mnt/work" "$mnt/root"
    mount -t overlay -o "lowerdir=$tree,upperdir=$mnt/upper,workdir=$mnt/work" klp-bench "$mnt/root"
    root=$mnt/root
else
    root=$tree
fi
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
if [ -f /etc/resolv.conf ]; then
    rm -f "$root/etc/resolv.conf"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
fi
n=0
while [ "$1" != -- ]; do
    mode=$1 path=$2
    shift 2
    mkdir -p "$root$path"
    case $mode in
    ro) mount --bind "$path" "$root$path"; mount -o remount,bind,ro "$root$path" ;;
    rw) mount --bind "$path" "$root$path" ;;
    cow) n=$((n + 1)); mkdir "$mnt/upper$n" "$mnt/work$n"
         options="lowerdir=$path,upperdir=$mnt/upper$n,workdir=$mnt/work$n"
         mount -t overlay -o "$options" klp-bench "$root$path" ;;
    esac
done
shift
exec chroot "$root" /bin/sh -c 'cd "$1" && shift && exec "$@"' klp-bench "$cwd" "$@"
"""

# The checkout whose klp-ld the bench tests (this file is its tests/kernel/bench.py).
CHECKOUT: Final = Path(__file__).resolve().parents[2]


def root_environ(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a command in a chroot: the chroot's PATH, and none of the host's Python settings."""
    dropped = ("PATH", "PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "LD_LIBRARY_PATH", "LD_PRELOAD")
    out = {name: value for name, value in env.items() if name not in dropped}
    out["PATH"] = _CHROOT_PATH
    return out


@dataclass(frozen=True)
class Chroot:
    """A Debian chroot in the cache (``<cache>/<release>/chroot``) that builds for ``release`` run in.

    It is made once by :meth:`make` (debootstrap, then apt-get of the headers and tools into a temporary
    tree that is renamed into place, so an interrupted run leaves no half chroot) and never changed
    after: every command runs over a throw-away overlay copy in its own mount namespace, with /proc and
    /dev mounted for that command only. Host directories a command needs (the checkout's klp_ld/ and
    wrappers/, the release's cache, build and test directories) appear at their host paths.
    """

    tree: Path
    suite: str

    @property
    def mountpoint(self) -> Path:
        """An empty directory where each command's namespace mounts its tmpfs (invisible elsewhere)."""
        return self.tree.with_name("mnt")

    def ready(self, release: str) -> bool:
        return _headers_installed(release, self.tree)

    def command(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        binds: Iterable[tuple[str, Path]] = (),
        writable: bool = False,
    ) -> list[str]:
        """The host command line that runs ``argv`` in the chroot from ``cwd`` (a path inside).

        ``binds`` are (mode, host path) with mode "ro", "rw" or "cow" (writable, writes thrown away).
        ``writable`` runs on the tree itself instead of an overlay copy (only while making it).
        """
        unshare = shutil.which("unshare") or "unshare"
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        layer = "tree" if writable else "overlay"
        cmd = [unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _CHROOT_SCRIPT]
        cmd += ["klp-bench", str(self.tree), str(self.mountpoint), layer, str(cwd)]
        for mode, path in _nested_binds(binds):
            if mode not in ("ro", "rw", "cow"):
                raise ValueError(f"bind mode {mode!r}")
            cmd += [mode, str(path)]
        return [*cmd, "--", *argv]

    @classmethod
    def make(cls, series: str, cache: Path) -> tuple[str, Chroot]:
        """A ready chroot for ``series``: the pinned release's if cached, else a new one for the release
        :func:`_resolve_release` picks in the fresh chroot's archive. Call with the setup lock held."""
        source = SOURCES[series]
        if source.suite is None:
            raise ValueError(f"{series} builds on the host")
        pinned = KERNELS[series]
        cached = cls(cache / pinned / "chroot", source.suite)
        if cached.ready(pinned):
            return pinned, cached
        # A fallback made when the archive had lost the pinned release (never an older release: that
        # is one cached before the pin moved on).
        pattern = _series_image_pattern(series)
        fallbacks = [
            release for release in (path.parent.name for path in cache.glob("*/chroot"))
            if re.match(pattern, source.image_packages(release)[0])
            and _release_key(release) > _release_key(pinned)
            and cls(cache / release / "chroot", source.suite).ready(release)
            and _image_ready(cache / release, release)
        ]  # fmt: skip
        if fallbacks:
            newest = max(fallbacks, key=_release_key)
            return newest, cls(cache / newest / "chroot", source.suite)
        for stale in cache.glob(".chroot-*"):  # a killed run's; setup holds the lock
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".chroot-{series}-", dir=cache))
        try:
            fresh = cls(staging / "chroot", source.suite)
            fresh._debootstrap()
            apt = _Apt(chroot=fresh, writable=True)
            if not apt.update():
                raise BenchUnavailable(f"apt-get update in the {source.suite} chroot failed")
            release = _resolve_release(series, cache, apt, chroot=fresh.tree)
            final = cls(cache / release / "chroot", source.suite)
            if final.ready(release):
                return release, final
            apt.install([headers_package(release), *_CHROOT_PACKAGES])
            apt._run(["apt-get", "clean"], timeout=300)
            if not fresh.ready(release):
                raise BenchUnavailable(f"{headers_package(release)} installed no {headers_dir(release)}")
            final.tree.parent.mkdir(parents=True, exist_ok=True)
            if final.tree.exists():  # not ready: an older layout, or a tree someone broke
                shutil.rmtree(final.tree)
            fresh.tree.rename(final.tree)
            return release, final
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _debootstrap(self) -> None:
        if not _ARCHIVE_KEYRING.is_file():
            raise BenchUnavailable(f"{_ARCHIVE_KEYRING} is missing: it verifies the {self.suite} archive")
        cmd = ["unshare", "--mount", "--propagation", "private", "--", "debootstrap", "--variant=minbase"]
        cmd += [f"--keyring={_ARCHIVE_KEYRING}", self.suite, str(self.tree), DEBIAN_MIRROR]
        proc = _run(cmd, timeout=1800, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if proc.returncode != 0:
            raise BenchUnavailable(f"debootstrap {self.suite} failed: {_reason(proc.stdout)}")
        conf = self.tree / "etc" / "apt" / "apt.conf.d" / "80klp-ld-bench"
        conf.write_text(_CHROOT_APT_CONF)


def _nested_binds(binds: Iterable[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """Binds in mount order (parents first), without those a writable bind already covers."""
    unique: dict[Path, str] = {}
    for mode, path in binds:
        unique.setdefault(Path(os.path.abspath(path)), mode)
    ordered = sorted(unique.items(), key=lambda item: len(item[0].parts))
    kept: list[tuple[str, Path]] = []
    for path, mode in ordered:
        if any(m == "rw" and path.is_relative_to(p) and mode == "rw" for m, p in kept):
            continue
        kept.append((mode, path))
    return kept


# --------------------------------------------------------------------------------------------------------
# Kernels the bench builds itself (CROSS_KERNELS)


# Host tools a cross-built series needs besides its compiler and QEMU (kbuild's own tools: make, the host
# compiler for scripts/, flex and bison for Kconfig, bc for kernel/time; xz for the source tarball).
_CROSS_HOST_TOOLS: Final = (
    ("make", "make"), ("gcc", "gcc"), ("flex", "flex"), ("bison", "bison"), ("bc", "bc"), ("xz", "xz-utils"),
    ("dpkg-deb", "dpkg"),
)  # fmt: skip
# Bumped when the way the kernel is built changes, so that cached builds made the old way are not used. Its
# text is only hashed (the kernel target is the CrossKernel's image: vmlinux on ppc64le, Image on arm64,
# bzImage on s390x).
_CROSS_RECIPE: Final = "allnoconfig + KCONFIG_ALLCONFIG fragment; vmlinux modules; modules_install; 1"
_CROSS_MARKER: Final = ".complete"
_CROSS_BUILD_TIMEOUT: Final = 4 * 3600.0


def _missing_cross_packages(spec: CrossKernel) -> list[str]:
    """Host packages the cross-built series ``spec`` still needs."""
    tools = (
        *_CROSS_HOST_TOOLS,
        (f"{spec.machine.cross_compile}gcc", spec.compiler_package),
        (spec.machine.qemu, spec.machine.qemu_package),
    )
    missing = [package for tool, package in tools if shutil.which(tool) is None]
    if not Path("/usr/include/stdio.h").is_file():  # kbuild's host programs (fixdep, kconfig, modpost)
        missing.append("libc6-dev")
    if spec.suite is not None and not _ARCHIVE_KEYRING.is_file():  # verifies the suite's Release file
        missing.append(_ARCHIVE_KEYRING_PACKAGE)
    return missing


def cross_config_digest(spec: CrossKernel) -> str:
    """12 hex digits naming the configuration and recipe of a cross build (part of its cache key)."""
    digest = hashlib.sha256(_CROSS_RECIPE.encode() + b"\0" + spec.fragment.read_bytes())
    return digest.hexdigest()[:12]


def config_fragment(text: str) -> dict[str, str]:
    """A config fragment's settings: ``CONFIG_X=value`` lines, and ``# CONFIG_X is not set`` as "n"."""
    settings: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        unset = re.fullmatch(r"# (CONFIG_[A-Za-z0-9_]+) is not set", line)
        if unset:
            settings[unset.group(1)] = "n"
        elif line.startswith("CONFIG_") and "=" in line:
            name, value = line.split("=", 1)
            settings[name] = value.strip()
    return settings


def config_mismatches(fragment: str, config: str) -> list[str]:
    """Settings of ``fragment`` that ``config`` (a whole .config) does not have, one line each.

    Kconfig drops a setting whose dependencies are not met without a word, so a fragment line that did
    not survive (``CONFIG_LIVEPATCH=y`` without DYNAMIC_FTRACE_WITH_REGS) must be caught here."""
    have = config_fragment(config)
    wrong = []
    for name, value in config_fragment(fragment).items():
        got = have.get(name, "n")
        if got != value:
            wrong.append(f"{name}={value} (got: {'not set' if got == 'n' else got})")
    return wrong


def _path_safe(version: str) -> str:
    """A Debian version as part of a directory name that make accepts (no ':' of an epoch)."""
    return re.sub(r"[^A-Za-z0-9.+~-]", "_", version)


def _cross_release(kernel: Path, spec: CrossKernel) -> str | None:
    """The kernel release of a completed cross build directory (None: incomplete or broken)."""
    try:
        release = (kernel / _CROSS_MARKER).read_text().strip()
    except OSError:
        return None
    image = kernel / "image"
    ready = (
        release != ""
        and (image / "boot" / f"{spec.machine.kernel_file}-{release}").is_file()
        and (image / "boot" / f"System.map-{release}").is_file()
        and (kernel / "build" / "Module.symvers").is_file()
    )
    return release if ready else None


def _foreign_busybox(arch: str, cross: Path, byteorder: Literal["little", "big"] = "little") -> Path:
    """Debian's static busybox of Debian architecture ``arch`` (from the host's suites: Debian 12's on
    Debian 12), unpacked once into ``cross``; ``byteorder`` is that architecture's (big for s390x).

    apt downloads it with the host's sources and keys but a private state directory whose architecture is
    ``arch``: the host's dpkg architectures, package lists and status stay as they are (no
    ``dpkg --add-architecture``). The lists are thrown away once the package is unpacked.
    """
    tree = cross / f"busybox-{arch}"
    busybox = tree / "bin" / "busybox"
    if _is_static_elf(busybox, byteorder):
        return busybox
    package = f"busybox-static:{arch}"
    if shutil.which("apt-get") is None:
        raise BenchUnavailable(f"{package} not cached and there is no apt-get to fetch it")
    with _file_lock(cross / f".busybox-{arch}.lock"):
        if _is_static_elf(busybox, byteorder):
            return busybox
        for stale in cross.glob(f".busybox-{arch}-*"):  # a killed run's; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".busybox-{arch}-", dir=cross))
        try:
            _download_foreign(arch, "busybox-static", staging)
            debs = sorted(staging.glob("busybox-static_*.deb"))
            proc = _run(["dpkg-deb", "-x", str(debs[-1]), str(staging / "tree")], timeout=300)
            if proc.returncode != 0 or not _is_static_elf(staging / "tree" / "bin" / "busybox", byteorder):
                raise BenchUnavailable(f"{debs[-1].name}: no static bin/busybox ({_reason(proc.stdout)})")
            if tree.exists():
                shutil.rmtree(tree)
            (staging / "tree").rename(tree)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return busybox


def _private_apt_options(state: Path, arch: str, suite: str | None = None) -> list[str]:
    """``-o`` settings that give apt-get and apt-cache a state directory of their own (``state``: package
    lists, status, caches) for Debian architecture ``arch``, made here if missing. The host's dpkg
    architectures, package lists and status stay as they are.

    With ``suite`` None the host's sources and keys are used (its own suites). Otherwise the only source
    is that suite's main component on the Debian mirror, verified with the archive keyring (Debian 12's
    verifies sid, as for the chroots); the host's other sources and apt preferences are left out,
    translations are not fetched, and a Release file past its Valid-Until date is accepted (signatures
    are still verified)."""
    for sub in (state / "lists" / "partial", state / "cache" / "archives" / "partial"):
        sub.mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    options = ["-o", f"Dir::State={state}", "-o", f"Dir::State::status={state / 'status'}"]
    options += ["-o", f"Dir::Cache={state / 'cache'}", "-o", f"APT::Architecture={arch}"]
    options += ["-o", f"APT::Architectures={arch}"]
    if suite is None:
        return options
    sources = state / "sources.list"
    line = f"deb [signed-by={_ARCHIVE_KEYRING}] {DEBIAN_MIRROR} {suite} main\n"
    if not sources.is_file() or sources.read_text() != line:
        sources.write_text(line)
    for empty in ("sources.list.d", "preferences.d"):
        (state / empty).mkdir(exist_ok=True)
    options += ["-o", f"Dir::Etc::SourceList={sources}"]
    options += ["-o", f"Dir::Etc::SourceParts={state / 'sources.list.d'}"]
    options += ["-o", f"Dir::Etc::Preferences={state / 'preferences'}"]
    options += ["-o", f"Dir::Etc::PreferencesParts={state / 'preferences.d'}"]
    options += ["-o", "APT::Default-Release=", "-o", "Acquire::Languages=none"]
    options += ["-o", "Acquire::Check-Valid-Until=false"]
    return options


def _download_foreign(arch: str, package: str, directory: Path) -> None:
    """``apt-get download`` of ``package`` for Debian architecture ``arch`` into ``directory``, with the
    host's sources and keys and a state directory of its own under ``directory/apt``."""
    apt = ["apt-get", *_private_apt_options(directory / "apt", arch)]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = _run([*apt, "update"], timeout=900, env=env)
    if proc.returncode != 0:
        raise BenchUnavailable(f"apt-get update for {arch} failed: {_reason(proc.stdout)}")
    proc = _run([*apt, "download", package], cwd=directory, timeout=900, env=env)
    if proc.returncode != 0 or not any(directory.glob(f"{package}_*.deb")):
        raise BenchUnavailable(f"apt-get download {package}:{arch} failed: {_reason(proc.stdout)}")


def _suite_apt(suite: str, cross: Path) -> tuple[_Apt, Path]:
    """An apt for Debian ``suite`` with a state of the bench's own, ``<cross>/apt-<suite>/``, and the lock
    to hold while using it. Its package lists stay there between runs, so a cached build is found with
    no network; they are fetched when missing and refreshed before a build (see
    :func:`_ensure_cross_kernel`). Delete the directory to look for a newer upload at once."""
    lock = cross / f".apt-{suite}.lock"
    arch = _run(["dpkg", "--print-architecture"], timeout=60).stdout.strip() or "amd64"
    with _file_lock(lock):
        options = _private_apt_options(cross / f"apt-{suite}", arch, suite)
    return _Apt(options=tuple(options)), lock


def _locked(lock: Path | None) -> contextlib.AbstractContextManager[None]:
    return _file_lock(lock) if lock is not None else contextlib.nullcontext()


def _cross_source(spec: CrossKernel, apt: _Apt) -> tuple[str, str] | None:
    """The source package a cross build takes and its version: ``spec.source_package`` as apt offers it,
    else (with a ``fallback``) the newest ``linux-source-<fallback>.N`` apt offers that is not older."""
    version = apt.candidate(spec.source_package)
    if version is not None:
        return spec.source_package, version
    if not spec.fallback:
        return None
    pattern = rf"^linux-source-{re.escape(spec.fallback)}\.[0-9]+$"
    floor = _release_key(spec.source_package)
    names = {name for name in apt.search(pattern) if re.match(pattern, name)}
    newer = sorted((name for name in names if _release_key(name) >= floor), key=_release_key, reverse=True)
    offered = apt.offered(newer)
    for name in newer:
        version = apt.candidate(name) if name in offered else None
        if version is not None:
            return name, version
    return None


def _ensure_cross_kernel(series: str, cross: Path, host_apt: _Apt) -> tuple[str, Path]:
    """The release and directory of a completed build of ``series``, building it first if needed.

    The directory is ``<cross>/<series>-<source version>-<config digest>``: the version apt offers of the
    source package (without apt, or when it offers none, the newest completed build of this
    configuration), so a new Debian point release is built once and then reused. The host's apt
    (``host_apt``) offers it, or for a series of another suite the bench's own apt state of that suite
    (:func:`_suite_apt`), whose lists are refreshed before a build. A build runs under a lock of its own,
    so concurrent pytest processes build it once; the others wait and use it.
    """
    spec = CROSS_KERNELS[series]
    digest = cross_config_digest(spec)
    cross.mkdir(parents=True, exist_ok=True)
    apt, lock = (host_apt, None) if spec.suite is None else _suite_apt(spec.suite, cross)

    def directory(version: str) -> Path:
        return cross / f"{series}-{_path_safe(version)}-{digest}"

    with _locked(lock):
        source = _cross_source(spec, apt) if apt.present() else None
        if (
            source is not None and spec.suite is not None
            and _cross_release(directory(source[1]), spec) is None and apt.update()
        ):  # fmt: skip
            source = _cross_source(spec, apt)  # a build ahead: what the archive offers now
    if source is None:
        done = [
            (release, path) for path in cross.glob(f"{series}-*-{digest}")
            if (release := _cross_release(path, spec)) is not None
        ]  # fmt: skip
        if done:
            return max(done, key=lambda item: _release_key(item[0]))
        where = "" if spec.suite is None else f" ({spec.suite})"
        raise BenchUnavailable(f"apt{where} offers no {spec.source_package} and no build of it is cached")
    package, version = source
    kernel = directory(version)
    release = _cross_release(kernel, spec)
    if release is not None:
        return release, kernel
    with _file_lock(cross / f".{kernel.name}.lock"):
        release = _cross_release(kernel, spec)
        if release is None:
            release = _build_cross_kernel(spec, package, version, kernel, apt, lock)
    return release, kernel


def _build_cross_kernel(
    spec: CrossKernel, package: str, version: str, kernel: Path, apt: _Apt, lock: Path | None
) -> str:
    """Unpack the source package ``package`` into ``kernel/src``, configure and build it in
    ``kernel/build`` (O=), install the kernel image, System.map and the modules into ``kernel/image`` and
    write the marker last.

    kbuild's output directory keeps the source tree's absolute path, so the build happens in place; a
    directory without the marker is an interrupted build and is started afresh (the caller holds its
    lock). The log is ``kernel/build.log``; ``build`` is where external modules build (``make -C``).
    ``apt`` downloads the package, under ``lock`` when it is an apt state of the bench's own.
    """
    if kernel.exists():
        shutil.rmtree(kernel)
    kernel.mkdir(parents=True)
    log_path = kernel / "build.log"
    started = time.monotonic()

    def step(cmd: Sequence[str], what: str, *, timeout: float = 900.0, cwd: Path | None = None) -> None:
        begun = time.monotonic()
        proc = _run(cmd, timeout=timeout, cwd=cwd)
        with log_path.open("a") as log:
            log.write(f"$ {shlex.join(cmd)}\n{proc.stdout}# {what}: {time.monotonic() - begun:.0f} s\n")
        if proc.returncode != 0:
            raise BenchError(
                f"{what} failed (status {proc.returncode}); log {log_path}, last lines:\n"
                f"{_tail(proc.stdout, 30)}"
            )

    download = kernel / "download"
    download.mkdir()
    with _locked(lock):
        deb = apt.download([package], download)[0]
    with log_path.open("a") as log:
        log.write(f"# apt-get download {package} ({version}): {time.monotonic() - started:.0f} s\n")
    got = _run(["dpkg-deb", "-f", str(deb), "Version"], timeout=60).stdout.strip()
    if got != version:
        wrong = got or deb.name
        raise BenchUnavailable(f"apt offered {package} {version} but downloaded {wrong}")
    step(["dpkg-deb", "-x", str(deb), str(download / "package")], f"dpkg-deb -x {deb.name}")
    tarball = download / "package" / "usr" / "src" / f"{package}.tar.xz"
    unpack = kernel / "unpack"
    unpack.mkdir()
    step(["tar", "-xJf", str(tarball), "-C", str(unpack)], f"unpacking {tarball.name}")
    shutil.rmtree(download)
    (top,) = unpack.iterdir()
    top.rename(kernel / "src")
    unpack.rmdir()

    fragment = kernel / "config.fragment"
    fragment.write_bytes(spec.fragment.read_bytes())
    build, image = kernel / "build", kernel / "image"
    make = ["make", "-C", str(kernel / "src"), f"O={build}"]
    make += [f"{name}={value}" for name, value in spec.machine.make_vars]
    step([*make, f"KCONFIG_ALLCONFIG={fragment}", "allnoconfig"], "make allnoconfig")
    dropped = config_mismatches(fragment.read_text(), (build / ".config").read_text())
    if dropped:
        raise BenchError(
            f"{spec.fragment.name}: Kconfig dropped {len(dropped)} setting(s) (unmet dependencies?): "
            + "; ".join(dropped)
        )
    jobs = os.cpu_count() or 1
    target = Path(spec.kernel_image).name  # vmlinux; Image, bzImage for arch/<arch>/boot/<target>
    step([*make, f"-j{jobs}", target, "modules"], "the kernel build", timeout=_CROSS_BUILD_TIMEOUT)
    # busybox insmod needs no modules.dep, and kmod's depmod need not be on the host.
    step([*make, f"INSTALL_MOD_PATH={image}", "DEPMOD=true", "modules_install"], "make modules_install")
    release = (build / "include" / "config" / "kernel.release").read_text().strip()
    (image / "boot").mkdir(parents=True, exist_ok=True)
    shutil.copy2(build / spec.kernel_image, image / "boot" / f"{spec.machine.kernel_file}-{release}")
    shutil.copy2(build / "System.map", image / "boot" / f"System.map-{release}")
    seconds = time.monotonic() - started
    with log_path.open("a") as log:
        log.write(f"# {package} {version}: kernel {release} built in {seconds:.0f} s\n")
    (kernel / _CROSS_MARKER).write_text(release + "\n")
    return release


# --------------------------------------------------------------------------------------------------------
# Cases and results


@dataclass(frozen=True)
class Case:
    """Shell commands run in the guest as one script under ``set -e``, fenced by console markers.

    The status is the first failing command's (0 when all succeed). Commands run from ``/`` with the
    modules under ``/mod``; ``timeout`` (seconds) kills a hung case so the next ones still run.
    """

    name: str
    commands: Sequence[str]
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if not _CASE_NAME.fullmatch(self.name):
            raise ValueError(f"case name {self.name!r}: use letters, digits and _.+- (at most 64)")
        commands = (self.commands,) if isinstance(self.commands, str) else tuple(self.commands)
        object.__setattr__(self, "commands", commands)

    def script(self) -> str:
        return "set -e\ncd /\n" + "\n".join(self.commands) + "\n"


@dataclass(frozen=True)
class CaseResult:
    """What one case did: its output (stdout and stderr), status and the kernel messages it caused.

    ``rc`` is None when the case never finished: the guest crashed, hung or was killed on timeout; then
    ``console_tail`` holds the last console lines, usually the kernel's last words.
    """

    case: Case
    rc: int | None
    output: str = ""
    dmesg: tuple[str, ...] = ()
    console_tail: str = ""
    stop_reason: str = ""

    @property
    def name(self) -> str:
        return self.case.name

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def dmesg_with(self, text: str) -> list[str]:
        return [line for line in self.dmesg if text in line]

    def explain(self, what: str = "") -> str:
        """A failure message showing the commands, their output and the kernel's own words."""
        if self.rc is None:
            status = f"did not finish ({self.stop_reason or 'the guest stopped'})"
        elif self.rc == 143:
            status = f"was killed after its {self.case.timeout:.0f} s timeout (status 143)"
        else:
            status = f"exited with status {self.rc}"
        parts = [f"case {self.name!r} {status}" + (f": {what}" if what else "")]
        parts.append("  commands:\n" + _indent("\n".join(f"$ {c}" for c in self.case.commands)))
        output = _tail(self.output, 40)
        parts.append("  output:\n" + _indent(output) if output.strip() else "  output: (none)")
        if self.dmesg:
            parts.append("  kernel log during the case:\n" + _indent("\n".join(self.dmesg[-60:])))
        elif self.rc is not None:
            parts.append("  kernel log during the case: (nothing)")
        if self.console_tail:
            parts.append("  last console lines:\n" + _indent(self.console_tail))
        return "\n".join(parts)


@dataclass(frozen=True)
class BootResult:
    """All cases of one boot, by name: ``result["seed"].rc``, ``result["seed"].explain()``."""

    release: str
    cases: Mapping[str, CaseResult]
    console: str
    completed: bool
    timed_out: bool
    seconds: float
    boot_dir: Path | None = None

    def __getitem__(self, name: str) -> CaseResult:
        return self.cases[name]

    def __contains__(self, name: object) -> bool:
        return name in self.cases

    def __iter__(self) -> Iterator[CaseResult]:
        return iter(self.cases.values())

    def failures(self) -> list[CaseResult]:
        return [result for result in self.cases.values() if not result.ok]


def parse_console(
    raw: str, cases: Sequence[Case], *, release: str = "", timed_out: bool = False, seconds: float = 0.0
) -> BootResult:
    """Split a cleaned (or raw) console log into per-case results.

    Results are read from marker-fenced blocks that the guest prints with console logging turned down,
    so kernel messages cannot interleave with them. A case whose block is missing gets ``rc=None``.
    """
    console = strip_escapes(raw)
    found: dict[str, tuple[int, str, tuple[str, ...]]] = {}
    for match in _CASE_RESULT.finditer(console):
        dmesg = tuple(_DMESG_TIME.sub("", line) for line in match["dmesg"].splitlines() if line.strip())
        found[match["name"]] = (int(match["rc"]), match["output"], dmesg)
    completed = "@@KLPBENCH-DONE@@" in console
    if timed_out:
        reason = f"QEMU was killed after {seconds:.0f} s"
    elif "@@KLPBENCH-INIT" not in console:
        reason = "the guest never reached the bench's /init"
    elif "Kernel panic" in console:
        reason = "the kernel panicked"
    else:
        reason = "the guest stopped before this case ended"
    tail = _tail(console, 50)
    results: dict[str, CaseResult] = {}
    for case in cases:
        if case.name in found:
            rc, output, dmesg = found[case.name]
            results[case.name] = CaseResult(case, rc, output, dmesg)
        else:
            started = f"@@KLPBENCH-BEGIN {case.name}@@" in console
            why = reason if started or timed_out else f"{reason}; the case never started"
            results[case.name] = CaseResult(case, None, console_tail=tail, stop_reason=why)
    return BootResult(release, MappingProxyType(results), console, completed, timed_out, seconds)


# --------------------------------------------------------------------------------------------------------
# Initramfs


@dataclass
class _Initramfs:
    """A newc cpio archive built in memory: no staging tree, no cpio binary, exact modes and device nodes."""

    entries: dict[str, tuple[int, bytes, int, int]] = field(default_factory=dict)

    def _parents(self, path: str) -> None:
        parent = path.rpartition("/")[0]
        while parent and parent not in self.entries:
            self.entries[parent] = (stat.S_IFDIR | 0o755, b"", 0, 0)
            parent = parent.rpartition("/")[0]

    def add(self, path: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        name = path.strip("/")
        if not name:
            raise ValueError(f"bad initramfs path {path!r}")
        self._parents(name)
        self.entries[name] = (mode, data, *rdev)

    def directory(self, path: str) -> None:
        self.add(path, stat.S_IFDIR | 0o755)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.add(path, stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        self.add(path, stat.S_IFLNK | 0o777, target.encode())

    def pack(self) -> bytes:
        out = bytearray()

        def emit(ino: int, name: str, mode: int, data: bytes, major: int, minor: int) -> None:
            encoded = name.encode() + b"\0"
            nlink = 2 if stat.S_ISDIR(mode) else 1
            fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, major, minor, len(encoded), 0)
            out.extend(b"070701" + "".join(f"{v:08x}" for v in fields).encode() + encoded)
            out.extend(b"\0" * (-len(out) % 4))
            out.extend(data)
            out.extend(b"\0" * (-len(out) % 4))

        for ino, name in enumerate(sorted(self.entries), start=1):
            emit(ino, name, *self.entries[name])
        emit(0, "TRAILER!!!", 0, b"", 0, 0)
        return gzip.compress(bytes(out), compresslevel=6, mtime=0)


def _init_script(
    cases: Sequence[Case], *, dump_kallsyms: bool, shell: bool, install_applets: bool = False
) -> str:
    """The guest's /init: mount, optionally dump kallsyms, run each case, power off (or open a shell).

    While a case runs the console keeps the boot's loglevel, so errors and oopses reach the raw console
    log; while results are printed it is turned down to 1 so no kernel line can split a marker block.
    ``install_applets``: busybox makes its applet links first (a busybox the host cannot run, whose
    applet list is not known when the initramfs is packed).
    """
    lines = ["#!/bin/sh"]
    if install_applets:
        lines.append("/bin/busybox --install -s")
    lines += [
        "export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root",
        "mount -t proc proc /proc",
        "mount -t sysfs sysfs /sys",
        "mount -t devtmpfs devtmpfs /dev",
        "mount -t tmpfs tmpfs /tmp",
        "mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null",
        "mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null",
        "echo 0 > /proc/sys/kernel/kptr_restrict",
        "level=$(cut -f1 /proc/sys/kernel/printk)",
        'echo "@@KLPBENCH-INIT $(uname -r)@@"',
        "run_case() {",
        '    echo "@@KLPBENCH-BEGIN $1@@"',
        "    dmesg -c > /dev/null",
        '    timeout "$3" sh "$2" > /tmp/case.out 2>&1 < /dev/null',
        "    rc=$?",
        "    dmesg > /tmp/case.dmesg",
        "    dmesg -n 1",
        '    echo "@@KLPBENCH-OUTPUT $1@@"',
        "    cat /tmp/case.out",
        "    printf '\\n@@KLPBENCH-DMESG %s@@\\n' \"$1\"",
        "    cat /tmp/case.dmesg",
        '    printf \'\\n@@KLPBENCH-END %s rc=%s@@\\n\' "$1" "$rc"',
        '    dmesg -n "$level"',
        "}",
    ]
    if dump_kallsyms:
        lines += [
            "dmesg -n 1",
            "echo @@KLPBENCH-KALLSYMS-BEGIN@@",
            "gzip -c /proc/kallsyms | base64",
            "echo @@KLPBENCH-KALLSYMS-END@@",
            'dmesg -n "$level"',
        ]
    for index, case in enumerate(cases):
        limit = max(1, math.ceil(case.timeout))
        lines.append(f"run_case {case.name} /bench/case-{index}.sh {limit}")
    lines.append("echo @@KLPBENCH-DONE@@")
    if shell:
        lines += [
            "echo 'klp-ld bench: debug shell; modules are in /mod, cases in /bench; exit powers off'",
            "export PS1='klp-bench# '",
            "setsid cttyhack sh",
        ]
    lines.append("poweroff -f")
    return "\n".join(lines) + "\n"


def _decode_kallsyms(console: str) -> bytes | None:
    match = _KALLSYMS_DUMP.search(console)
    if not match:
        return None
    try:
        data = gzip.decompress(base64.b64decode("".join(match.group(1).split()), validate=True))
    except (ValueError, OSError, EOFError):
        return None
    lines = data.decode(errors="replace").splitlines()
    if len(lines) < 1000 or any(len(line.split()) < 3 for line in lines):
        return None
    return data


# --------------------------------------------------------------------------------------------------------
# Builds


@dataclass(frozen=True)
class Built:
    """A finished kbuild run: its directory, the ``.ko`` files in modules.order order, the full log.

    Iterating yields the module paths, so a ``Built`` can be passed straight to ``Bench.boot(files=...)``.
    """

    directory: Path
    modules: tuple[Path, ...]
    log: str

    def __iter__(self) -> Iterator[Path]:
        return iter(self.modules)

    def module(self, name: str) -> Path:
        """The built module called ``name`` (with or without ``.ko``; '-' and '_' are the same)."""
        wanted = name.removesuffix(".ko").replace("-", "_")
        for path in self.modules:
            if path.name.removesuffix(".ko").replace("-", "_") == wanted:
                return path
        raise KeyError(f"{name}: not among {', '.join(p.name for p in self.modules)}")


def _built_modules(directory: Path) -> tuple[Path, ...]:
    """The modules kbuild says it built (6.1 lists ``x.ko`` in modules.order, 6.12 ``x.o``)."""
    order = directory / "modules.order"
    found: list[Path] = []
    if order.is_file():
        for line in order.read_text().splitlines():
            if line.strip():
                path = Path(line.strip())
                path = path if path.is_absolute() else directory / path
                ko = path.with_suffix(".ko")
                if ko.is_file() and ko not in found:
                    found.append(ko)
    return tuple(found) or tuple(sorted(directory.rglob("*.ko")))


# --------------------------------------------------------------------------------------------------------
# The bench


@dataclass(frozen=True)
class Bench:
    """A ready kernel of one series: headers to build against, an image to boot, a cache and a workdir.

    ``chroot`` is the build root for a series the host cannot build for (None: builds run on the host);
    ``shared`` are host directories that builds may read and write besides ``workdir`` (a test's temporary
    directories), shown to a chroot at their host paths.
    """

    series: str
    release: str
    headers: Path
    cache: Path
    image: Path
    workdir: Path
    busybox: Path
    qemu: str
    keep: bool = False
    shell: bool = False
    chroot: Chroot | None = None
    shared: tuple[Path, ...] = ()
    machine: Machine = X86_64

    @classmethod
    def prepare(
        cls,
        series: str,
        workdir: Path,
        *,
        cache: Path | None = None,
        keep: bool | None = None,
        shell: bool | None = None,
        shared: Iterable[Path] = (),
    ) -> Bench:
        """Get every piece for ``series`` (installing or downloading what is missing) or raise
        BenchUnavailable. ``cache`` defaults to :func:`cache_root`; ``keep``/``shell`` to the
        KLP_LD_BENCH_KEEP/KLP_LD_BENCH_SHELL environment variables; ``shared`` are more directories
        builds may use (see the class)."""
        if series in CROSS_KERNELS:
            return cls._prepare_cross(series, workdir, cache=cache, keep=keep, shell=shell, shared=shared)
        if series not in KERNELS:
            raise ValueError(f"unknown kernel series {series!r}: choose {', '.join(SERIES)}")
        machine = os.uname().machine
        if machine != "x86_64":
            raise BenchUnavailable(f"the bench boots amd64 kernels and needs an x86_64 host, not {machine}")
        root = cache if cache is not None else cache_root()
        source = SOURCES[series]
        apt = _Apt()
        chroot: Chroot | None = None
        with _file_lock(root / ".setup.lock"):
            if source.suite is None:
                release = _resolve_release(series, root, apt)
                missing = _missing_host_packages()
                if not _headers_installed(release):
                    missing.append(headers_package(release))
                apt.install(missing)
                still = _missing_host_packages()
                if not _headers_installed(release):
                    still.append(headers_package(release))
                if still:
                    raise BenchUnavailable(f"still missing after apt-get install: {' '.join(still)}")
                image = _ensure_image(series, release, root / release, apt)
            else:
                if not _is_root():
                    raise BenchUnavailable(f"{series} builds in a {source.suite} chroot, which needs root")
                apt.install(_missing_host_packages(chroot=True))
                still = _missing_host_packages(chroot=True)
                if still:
                    raise BenchUnavailable(f"still missing after apt-get install: {' '.join(still)}")
                release, chroot = Chroot.make(series, root)
                image = _ensure_image(series, release, root / release, _Apt(chroot=chroot))
        busybox = _static_busybox()
        qemu = shutil.which("qemu-system-x86_64")
        if busybox is None or qemu is None:
            raise BenchUnavailable("qemu-system-x86_64 or a static busybox vanished during setup")
        workdir.mkdir(parents=True, exist_ok=True)
        return cls(
            series=series, release=release, headers=headers_dir(release), cache=root / release, image=image,
            workdir=workdir, busybox=busybox, qemu=qemu,
            keep=env_flag(ENV_KEEP) if keep is None else keep,
            shell=env_flag(ENV_SHELL) if shell is None else shell,
            chroot=chroot, shared=tuple(Path(path) for path in shared),
        )  # fmt: skip

    @classmethod
    def _prepare_cross(
        cls,
        series: str,
        workdir: Path,
        *,
        cache: Path | None,
        keep: bool | None,
        shell: bool | None,
        shared: Iterable[Path],
    ) -> Bench:
        """:meth:`prepare` for a series the bench builds itself (see :class:`CrossKernel`)."""
        spec = CROSS_KERNELS[series]
        root = cache if cache is not None else cache_root()
        apt = _Apt()
        with _file_lock(root / ".setup.lock"):
            apt.install(_missing_cross_packages(spec))
            still = _missing_cross_packages(spec)
            if still:
                raise BenchUnavailable(f"still missing after apt-get install: {' '.join(still)}")
        busybox = _foreign_busybox(spec.busybox_arch, root / "cross", spec.machine.byteorder)
        release, kernel = _ensure_cross_kernel(series, root / "cross", apt)
        qemu = shutil.which(spec.machine.qemu)
        if qemu is None:
            raise BenchUnavailable(f"{spec.machine.qemu} vanished during setup")
        workdir.mkdir(parents=True, exist_ok=True)
        return cls(
            series=series, release=release, headers=kernel / "build", cache=kernel, image=kernel / "image",
            workdir=workdir, busybox=busybox, qemu=qemu,
            keep=env_flag(ENV_KEEP) if keep is None else keep,
            shell=env_flag(ENV_SHELL) if shell is None else shell,
            shared=tuple(Path(path) for path in shared), machine=spec.machine,
        )  # fmt: skip

    # -- image pieces ------------------------------------------------------------------------------------

    @property
    def vmlinuz(self) -> Path:
        """The kernel QEMU boots: ``vmlinuz`` on x86_64, the ELF ``vmlinux`` on ppc64le, the raw ``Image`` on
        arm64, ``bzImage`` (the compressed kernel behind its decompressor) on s390x."""
        return _image_file(self.image, self.release, self.machine.kernel_file)

    @property
    def system_map(self) -> Path:
        return _image_file(self.image, self.release, "System.map")

    @property
    def modules_dir(self) -> Path:
        """The image's /lib/modules/<release> tree (``kernel/drivers/net/dummy.ko[.xz]`` and the rest)."""
        found = _image_modules(self.image, self.release)
        if found is None:
            raise BenchError(f"no lib/modules/{self.release} in {self.image}")
        return found

    def image_module(self, path: str) -> Path:
        """A module shipped with the kernel, e.g. ``"drivers/net/dummy"``: ``dummy.ko`` on 6.1 and
        ``dummy.ko.xz`` on 6.12 and 7.2 (busybox insmod and the kernel take either); on ppc64le, arm64
        and s390x the modules of the bench's own build, e.g. ``"samples/livepatch/livepatch-sample"``."""
        base = self.modules_dir / "kernel" / path.removesuffix(".ko")
        for suffix in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
            candidate = base.with_name(base.name + suffix)
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"{path}: no such module in {self.modules_dir / 'kernel'}")

    # -- building ----------------------------------------------------------------------------------------

    @property
    def version(self) -> tuple[int, int]:
        """The kernel's (major, minor), e.g. (6, 12) for 6.12.117+deb12-amd64."""
        major, minor = _release_key(self.release)[:2]
        return major, minor

    def host_path(self, path: Path) -> Path:
        """Where a path of the build environment (``bench.headers``, a file in the chroot) is on the host."""
        return path if self.chroot is None else self.chroot.tree / Path(path).relative_to("/")

    @functools.cached_property
    def config(self) -> Mapping[str, str]:
        """The kernel's configuration as the headers have it (include/config/auto.conf): name -> value."""
        text = self.host_path(self.headers / "include" / "config" / "auto.conf").read_text()
        lines = [line for line in text.splitlines() if line.startswith("CONFIG_") and "=" in line]
        pairs = (line.split("=", 1) for line in lines)
        return MappingProxyType({name: value.strip('"') for name, value in pairs})

    @property
    def python(self) -> str:
        """The interpreter klp-ld runs under in this bench's builds (for KLP_LD_PYTHON)."""
        return "/usr/bin/python3" if self.chroot is not None else sys.executable

    def link_cwd(self, directory: Path) -> Path:
        """The directory kbuild runs $(LD) in for ``make M=<directory>``: the headers before 6.13, the
        module's own directory from 6.13 on."""
        return directory if self.version >= (6, 13) else self.headers

    def make_command(
        self,
        directory: Path,
        *targets: str,
        ld: str | os.PathLike[str] | None = None,
        make_vars: Mapping[str, str] | None = None,
        jobs: int | None = None,
    ) -> list[str]:
        """``make -C <headers> M=<directory> [ARCH=... CROSS_COMPILE=...] [LD=...] [NAME=value...] [-jN]
        <targets>`` (for :meth:`run`); ARCH and CROSS_COMPILE for a cross-built series only."""
        cmd = ["make", "-C", str(self.headers), f"M={directory}"]
        cmd += [f"{name}={value}" for name, value in self.machine.make_vars]
        if ld is not None:
            cmd.append(f"LD={os.fspath(ld)}")
        cmd += [f"{name}={value}" for name, value in (make_vars or {}).items()]
        if jobs is not None:
            cmd.append(f"-j{jobs}")
        return [*cmd, *targets]

    def command(self, argv: Sequence[str], *, cwd: Path | None = None) -> list[str]:
        """The host command line that runs ``argv`` where this bench builds: itself on the host, in a
        chroot for a chroot series, with the checkout's klp_ld/ and wrappers/, this release's cache,
        the workdir and the shared directories at their host paths. ``cwd`` is a path where it runs."""
        if self.chroot is None:
            return list(argv)
        binds = [("cow", CHECKOUT / "klp_ld"), ("cow", CHECKOUT / "wrappers"), ("ro", self.cache)]
        binds += [("rw", self.workdir), *(("rw", path) for path in self.shared)]
        return self.chroot.command(argv, cwd=cwd or Path("/"), binds=binds)

    def environ(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for :meth:`command`: ``env`` (default: this process's) with a chroot's PATH."""
        full = dict(os.environ if env is None else env)
        return full if self.chroot is None else root_environ(full)

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 600.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command where this bench builds (see :meth:`command`) and capture stdout and stderr apart,
        like ``subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)``: ``env`` is the
        whole environment (default: this process's), never raising for its exit status."""
        where = cwd if self.chroot is not None else None
        return subprocess.run(
            self.command(argv, cwd=where), cwd=cwd if self.chroot is None else None, env=self.environ(env),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=timeout,
            check=False,
        )  # fmt: skip

    def build(
        self,
        source: Path,
        *,
        ld: str | os.PathLike[str] | None = None,
        make_vars: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        jobs: int | None = None,
        timeout: float = 600.0,
    ) -> Built:
        """Build the external module in ``source`` with kbuild, in a fresh copy under the workdir.

        ``ld`` becomes ``LD=`` (None keeps kbuild's default); ``make_vars`` are more ``NAME=value`` make
        arguments (``KBUILD_MODPOST_WARN``, ``V``); ``env`` is added to the environment. A copy keeps the
        source tree clean and lets several builds of one source coexist. For a chroot series kbuild runs
        in the chroot and the copy is seen there at its host path.
        """
        source = Path(source)
        if not source.is_dir():
            raise FileNotFoundError(f"{source}: no such module source directory")
        self.workdir.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix=f"build-{source.name}-", dir=self.workdir))
        ignore = shutil.ignore_patterns(*_KBUILD_OUTPUTS)
        shutil.copytree(source, directory, dirs_exist_ok=True, ignore=ignore)
        jobs = jobs or os.cpu_count() or 1
        cmd = self.make_command(directory, "modules", ld=ld, make_vars=make_vars, jobs=jobs)
        started = time.monotonic()
        environ = self.environ({**os.environ, **(env or {})})
        proc = _run(self.command(cmd, cwd=directory), timeout=timeout, env=environ)
        log = f"$ {shlex.join(cmd)}\n{proc.stdout}"
        (directory / "build.log").write_text(log)
        if proc.returncode != 0:
            raise BuildError(
                f"kbuild failed (status {proc.returncode}, {time.monotonic() - started:.1f} s) for {source}\n"
                f"log {directory / 'build.log'}, last lines:\n{_tail(log, 40)}",
                log=log, returncode=proc.returncode,
            )  # fmt: skip
        modules = _built_modules(directory)
        if not modules:
            raise BuildError(f"kbuild built no .ko for {source}\n{_tail(log, 40)}", log=log, returncode=0)
        return Built(directory, modules, log)

    # -- booting -----------------------------------------------------------------------------------------

    def boot(
        self,
        cases: Sequence[Case],
        files: Built | Iterable[Path | Built] = (),
        *,
        extra_files: Mapping[str, Path | bytes | str] | None = None,
        append: str = "",
        timeout: float | None = None,
    ) -> BootResult:
        """Boot the kernel once and run ``cases`` in order.

        ``files`` (paths or Built results) go to ``/mod/<file name>``; ``extra_files`` maps guest paths to
        host files or contents; ``append`` adds kernel parameters. Guest failures (a case failing, a
        panic, a hang killed after ``timeout`` seconds) are reported in the result, never raised.
        """
        names = [case.name for case in cases]
        if len(set(names)) != len(names):
            raise BenchError(f"case names must be unique: {names}")
        kallsyms = self.cache / "kallsyms"
        dump = not kallsyms.is_file()
        limit = timeout if timeout is not None else DEFAULT_BOOT_TIMEOUT
        if dump:
            limit += _KALLSYMS_DUMP_TIME
        self.workdir.mkdir(parents=True, exist_ok=True)
        boot_dir = Path(tempfile.mkdtemp(prefix="boot-", dir=self.workdir))
        try:
            initrd = boot_dir / "initrd.cpio.gz"
            initrd.write_bytes(self._initramfs(cases, files, extra_files or {}, dump=dump))
            _BOOTS[self.series] += 1
            result = self._run_qemu(cases, initrd, boot_dir, append=append, timeout=limit)
            (boot_dir / "console.log").write_text(result.console)
            if dump:
                data = _decode_kallsyms(result.console)
                if data is not None:
                    partial = kallsyms.with_name(f".kallsyms.{os.getpid()}")
                    partial.write_bytes(data)
                    partial.replace(kallsyms)
        finally:
            if not self.keep:
                shutil.rmtree(boot_dir, ignore_errors=True)
        return dataclasses.replace(result, boot_dir=boot_dir) if self.keep else result

    def kallsyms(self) -> Path:
        """The guest's /proc/kallsyms with no module loaded, dumped once per release and cached.

        Tests take symbol names and positions from it (see :func:`kallsyms_addresses`); its addresses
        belong to the boot that made it, so compare addresses only with a dump from the same boot.
        """
        path = self.cache / "kallsyms"
        if path.is_file():
            return path
        with _file_lock(self.cache / ".kallsyms.lock"):
            if not path.is_file():
                result = self.boot([])
                if not path.is_file():
                    tail = _tail(result.console, 30)
                    raise BenchError(f"no kallsyms dump from the guest; console tail:\n{tail}")
        return path

    def _initramfs(
        self,
        cases: Sequence[Case],
        files: Built | Iterable[Path | Built],
        extra: Mapping[str, Path | bytes | str],
        *,
        dump: bool,
    ) -> bytes:
        archive = _Initramfs()
        for directory in ("dev", "proc", "sys", "tmp", "root", "etc", "run", "bench", GUEST_MODULE_DIR):
            archive.directory(directory)
        archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
        archive.file("bin/busybox", self.busybox.read_bytes(), 0o755)
        if self.machine.host_busybox:
            applets = _run([str(self.busybox), "--list-full"], timeout=30).stdout.split()
            for applet in applets:
                if applet.strip("/") != "bin/busybox":
                    archive.symlink(applet, "/bin/busybox")
        else:  # /init makes the links: `busybox --install -s` needs their directories
            for directory in ("bin", "sbin", "usr/bin", "usr/sbin"):
                archive.directory(directory)
        archive.symlink("bin/sh", "/bin/busybox")
        init = _init_script(
            cases, dump_kallsyms=dump, shell=self.shell, install_applets=not self.machine.host_busybox
        )
        archive.file("init", init.encode(), 0o755)
        for index, case in enumerate(cases):
            archive.file(f"bench/case-{index}.sh", case.script().encode(), 0o755)
        paths: list[Path] = []
        for item in [files] if isinstance(files, Built) else files:
            paths.extend(item if isinstance(item, Built) else [Path(item)])
        seen: dict[str, Path] = {}
        for path in paths:
            if path.name in seen and seen[path.name] != path:
                clash = f"{seen[path.name]} and {path}"
                raise BenchError(f"{clash} would both be {GUEST_MODULE_DIR}/{path.name}")
            seen[path.name] = path
            archive.file(f"{GUEST_MODULE_DIR}/{path.name}", path.read_bytes())
        for guest, content in extra.items():
            if isinstance(content, Path):
                archive.file(guest, content.read_bytes(), 0o755 if os.access(content, os.X_OK) else 0o644)
            else:
                archive.file(guest, content.encode() if isinstance(content, str) else content)
        return archive.pack()

    def _run_qemu(
        self, cases: Sequence[Case], initrd: Path, boot_dir: Path, *, append: str, timeout: float
    ) -> BootResult:
        """Run QEMU to power-off; on timeout kill it and keep what the console said so far.

        In shell mode the console is the user's terminal (and a log file QEMU writes), with no timeout.
        """
        cmdline = f"{self.machine.append} {append}".strip()
        cmd = [self.qemu, *self.machine.qemu_options]
        cmd += ["-kernel", str(self.vmlinuz), "-initrd", str(initrd), "-append", cmdline]
        started = time.monotonic()
        if self.shell:
            log = boot_dir / "console.raw"
            cmd += ["-display", "none", "-chardev", f"stdio,id=con,mux=on,signal=off,logfile={log}"]
            cmd += ["-serial", "chardev:con", "-mon", "chardev=con,mode=readline"]
            subprocess.run(cmd, check=False)
            raw = log.read_bytes() if log.exists() else b""
            return parse_console(
                raw.decode(errors="replace"), cases, release=self.release, seconds=time.monotonic() - started
            )
        cmd.append("-nographic")
        timed_out = False
        devnull, pipe = subprocess.DEVNULL, subprocess.PIPE
        with subprocess.Popen(cmd, stdin=devnull, stdout=pipe, stderr=subprocess.STDOUT) as proc:
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                proc.kill()
                out, _ = proc.communicate()
            except BaseException:
                proc.kill()
                raise
        return parse_console(
            out.decode(errors="replace"), cases, release=self.release, timed_out=timed_out,
            seconds=time.monotonic() - started,
        )  # fmt: skip
