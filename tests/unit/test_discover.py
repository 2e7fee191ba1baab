"""Finding symbol sources for the headers' release (klp_ld.ksyms.discover; the cache is in test_symcache).

Every test builds a fake system tree under tmp_path and points KLP_LD_TEST_ROOT at it, so
nothing here reads the real /proc, /boot or /lib/modules.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
from pathlib import Path

import pytest

from klp_ld.diag import KlpLdError
from klp_ld.ksyms.discover import Discovery, discover, print_sources
from klp_ld.ksyms.resolution import Resolved, SymbolProblem
from klp_ld.ksyms.system import TEST_ROOT_ENV
from klp_ld.names import VMLINUX
from klp_ld.target import kernel_release

DATA = Path(__file__).resolve().parents[2] / "testdata" / "symbols"
RELEASE = "6.1.0-test"
OTHER = "6.12.0-other"
needs_tools = pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("ld")), reason="needs gcc and ld")

KALLSYMS = (DATA / "kallsyms.txt").read_text()
# The same dump as read without privilege: every address zero.
HIDDEN = "".join("0" * 16 + line[16:] + "\n" for line in KALLSYMS.splitlines())


def build_module(out: Path, name: str, vermagic: str = RELEASE, copies: int = 2) -> bytes:
    """A minimal module with `copies` local state_show (in .text.s0, .text.s1, ...), one per input
    file so that the name can repeat, and a .modinfo with its name and vermagic."""
    objs = []
    for i in range(copies):
        text = f"\t.file \"{name}{i}.c\"\n\t.section .text.s{i},\"ax\",@progbits\nstate_show:\n\tret\n"
        if i == 0:
            text += ("\t.section .modinfo,\"a\",@progbits\n"
                     f"\t.asciz \"name={name}\"\n\t.asciz \"vermagic={vermagic} SMP mod_unload \"\n")
        src = out / f"{name}-{i}.s"
        src.write_text(text)
        obj = out / f"{name}-{i}.o"
        subprocess.run(["gcc", "-c", "-o", str(obj), str(src)], check=True)
        objs.append(str(obj))
    ko = out / f"{name}.ko.tmp"
    subprocess.run(["ld", "-r", "-o", str(ko), *objs], check=True)
    return ko.read_bytes()


class Tree:
    """A fake root (/proc, /boot, /lib/modules, /usr/lib/debug) and a headers directory."""

    def __init__(self, base: Path, monkeypatch: pytest.MonkeyPatch, release: str = RELEASE,
                 running: str | None = RELEASE) -> None:
        self.root = base / "root"
        self.headers = base / "headers"
        self.build = base / "build"
        for d in (self.root / "proc/sys/kernel", self.headers / "include/config", self.build):
            d.mkdir(parents=True, exist_ok=True)
        (self.headers / "include/config/kernel.release").write_text(release + "\n")
        if running is not None:
            (self.root / "proc/sys/kernel/osrelease").write_text(running + "\n")
        (self.root / "proc/modules").write_text("")
        monkeypatch.setenv(TEST_ROOT_ENV, str(self.root))
        monkeypatch.setenv("XDG_CACHE_HOME", str(base / "cache"))

    def put(self, rel: str, data: str | bytes) -> Path:
        path = self.root / rel.lstrip("/") if not rel.startswith("@") else self.headers / rel[1:]
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(data)
        else:
            path.write_bytes(data)
        return path

    def loaded(self, *mods: str) -> None:
        (self.root / "proc/modules").write_text("".join(f"{m} 16384 0 - Live 0x0\n" for m in mods))


def found_for(d: Discovery, obj: str) -> list[tuple[str, str, str]]:
    return [(f.path, f.role, f.reason) for f in d.found if obj in f.objnames]


def resolved(r: Resolved | SymbolProblem) -> Resolved:
    assert isinstance(r, Resolved), r.diagnostic().render() if isinstance(r, SymbolProblem) else r
    return r


def messages(exc: pytest.ExceptionInfo[KlpLdError]) -> list[str]:
    return [d.render() for d in exc.value.diagnostics]


# --- release -------------------------------------------------------------------------------------


def test_release_from_headers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch)
    assert kernel_release(str(tree.headers)) == RELEASE
    with pytest.raises(KlpLdError, match="cannot tell the target kernel release"):
        kernel_release(str(tmp_path / "nowhere"))


def test_uts_release_wins_over_kernel_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian's 6.1 headers say 6.1.176 in kernel.release; the kernel calls itself 6.1.0-50-amd64."""
    tree = Tree(tmp_path, monkeypatch)
    generated = tree.headers / "include" / "generated"
    generated.mkdir(parents=True)
    (tree.headers / "include/config/kernel.release").write_text("6.1.176\n")
    (generated / "utsrelease.h").write_text(f'#define UTS_RELEASE "{RELEASE}"\n')
    assert kernel_release(str(tree.headers)) == RELEASE


# --- vmlinux -------------------------------------------------------------------------------------


def test_running_kernel_kallsyms_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch)
    kallsyms = tree.put("/proc/kallsyms", KALLSYMS)
    tree.put(f"/boot/System.map-{RELEASE}", (DATA / "System.map").read_text())
    d = discover(str(tree.headers))
    assert found_for(d, VMLINUX) == [(str(kallsyms), "primary",
                                      f"the running kernel is {RELEASE} and its addresses are readable")]
    assert resolved(d.index().resolve(VMLINUX, "state_show", 2)).candidate.address == 0xFFFFFFFF81100000


def test_hidden_addresses_fall_back_to_system_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch)
    tree.put("/proc/kallsyms", HIDDEN)
    sysmap = tree.put(f"/boot/System.map-{RELEASE}", (DATA / "System.map").read_text())
    d = discover(str(tree.headers))
    assert found_for(d, VMLINUX) == [(str(sysmap), "primary", f"the System.map installed for {RELEASE}")]


def test_other_running_kernel_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch, running=OTHER)
    tree.put("/proc/kallsyms", KALLSYMS)
    sysmap = tree.put(f"/boot/System.map-{RELEASE}", (DATA / "System.map").read_text())
    tree.put(f"/boot/System.map-{OTHER}", "ffffffff81000000 T other\n")
    d = discover(str(tree.headers))
    assert [p for p, _, _ in found_for(d, VMLINUX)] == [str(sysmap)]


def test_missing_sources_say_where_they_were_looked_for(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch, running=OTHER)
    tree.put(f"/boot/System.map-{RELEASE}",
             "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n")
    with pytest.raises(KlpLdError) as exc:
        discover(str(tree.headers), [VMLINUX, "foo_bar"])
    r = str(tree.root)
    assert messages(exc) == [
        "\n".join([
            f"klp-ld: error: no symbols for vmlinux {RELEASE}: give --klp-symbols=PATH with a "
            "/proc/kallsyms dump (as root), System.map or vmlinux of that kernel",
            f">>> looked for {r}/proc/kallsyms: the running kernel is {OTHER}, not {RELEASE}",
            f">>> looked for {r}/boot/System.map-{RELEASE}: this System.map is a placeholder without "
            "symbols (Debian ships the real one in the linux-image-<release>-dbg package)",
            f">>> looked for {r}/usr/lib/debug/boot/System.map-{RELEASE}: not found",
            f">>> looked for {tree.headers}/vmlinux: not found",
            f">>> looked for {r}/usr/lib/debug/boot/vmlinux-{RELEASE}: not found",
            f">>> looked for {r}/usr/lib/debug/lib/modules/{RELEASE}/vmlinux: not found"]),
        "\n".join([
            f"klp-ld: error: no module file for foo_bar in {RELEASE}: give --klp-symbols=PATH with its "
            ".ko, or check the object name",
            f">>> looked for {r}/lib/modules/{RELEASE}/**/foo_bar.ko{{,.xz,.zst,.gz}} (also spelled "
            "with '-')"]),
    ]


def test_hidden_kallsyms_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch)
    tree.put("/proc/kallsyms", HIDDEN)
    with pytest.raises(KlpLdError) as exc:
        discover(str(tree.headers))
    assert (f">>> looked for {tree.root}/proc/kallsyms: addresses are hidden (run as root, or set "
            "kernel.kptr_restrict=0), so positions cannot be checked") in messages(exc)[0]


@needs_tools
def test_debug_vmlinux_and_btf_only_vmlinux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch, running=None)
    src = tree.build / "v.c"
    src.write_text("static int state_show(void) { return 1; }\nint (*p)(void) = state_show;\n"
                   "void _start(void) { for (;;) {} }\n")
    vmlinux = tree.build / "vmlinux"
    subprocess.run(["gcc", "-O0", "-nostdlib", "-static", "-no-pie", "-fno-pie", "-o", str(vmlinux),
                    str(src)], check=True)
    stripped = tree.build / "stripped"
    subprocess.run(["strip", "-o", str(stripped), str(vmlinux)], check=True)
    tree.put("@vmlinux", stripped.read_bytes())  # like the BTF-only vmlinux of Debian's 6.12 headers
    debug = tree.put(f"/usr/lib/debug/boot/vmlinux-{RELEASE}", vmlinux.read_bytes())
    d = discover(str(tree.headers))
    assert found_for(d, VMLINUX) == [(str(debug), "primary", f"the debug vmlinux for {RELEASE}")]
    lines = print_sources(str(tree.headers))
    assert lines[1].startswith(f"vmlinux: {debug} [vmlinux, primary]")


# --- modules -------------------------------------------------------------------------------------


@needs_tools
def test_module_dash_and_underscore_and_compression(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch, running=OTHER)
    tree.put("/proc/kallsyms", KALLSYMS)
    tree.put(f"/boot/System.map-{RELEASE}", (DATA / "System.map").read_text())
    ko = build_module(tree.build, "foo_bar")
    path = tree.put(f"/lib/modules/{RELEASE}/kernel/drivers/misc/foo-bar.ko.xz",
                    lzma.compress(ko, check=lzma.CHECK_CRC32))
    d = discover(str(tree.headers), [VMLINUX, "foo_bar"])
    assert found_for(d, "foo_bar") == [(str(path), "primary", f"the module installed for {RELEASE}")]
    idx = d.index()
    assert [c.position for c in idx.candidates("foo_bar", "state_show")] == [1, 2]
    assert len(idx.candidates(VMLINUX, "state_show")) == 5


@needs_tools
def test_updates_wins_over_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch)
    tree.put("/proc/kallsyms", KALLSYMS)
    ko = build_module(tree.build, "foo")
    tree.put(f"/lib/modules/{RELEASE}/kernel/foo.ko", ko)
    upd = tree.put(f"/lib/modules/{RELEASE}/updates/foo.ko.gz", gzip.compress(ko))
    d = discover(str(tree.headers), [VMLINUX, "foo"])
    (path, role, reason), = found_for(d, "foo")
    assert path == str(upd) and role == "primary" and "preferred over" in reason


@needs_tools
def test_modules_dep_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch)
    tree.put("/proc/kallsyms", KALLSYMS)
    ko = build_module(tree.build, "foo")
    tree.put(f"/lib/modules/{RELEASE}/updates/foo.ko", ko)
    chosen = tree.put(f"/lib/modules/{RELEASE}/extra/foo.ko", ko)
    tree.put(f"/lib/modules/{RELEASE}/modules.dep", "extra/foo.ko:\nkernel/other.ko: extra/foo.ko\n")
    d = discover(str(tree.headers), ["foo"])
    assert [p for p, _, _ in found_for(d, "foo")] == [str(chosen)]


@needs_tools
def test_module_of_another_release_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch)
    tree.put("/proc/kallsyms", KALLSYMS)
    path = tree.put(f"/lib/modules/{RELEASE}/kernel/foo.ko", build_module(tree.build, "foo", OTHER))
    with pytest.raises(KlpLdError) as exc:
        discover(str(tree.headers), [VMLINUX, "foo"])
    assert messages(exc) == [f"klp-ld: error: {path}: belongs to kernel {OTHER} (by its vermagic), but "
                             f"the headers build for {RELEASE}"]


def test_builtin_module_points_to_vmlinux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch)
    tree.put("/proc/kallsyms", KALLSYMS)
    tree.put(f"/lib/modules/{RELEASE}/modules.builtin", "kernel/fs/ext4/ext4.ko\n")
    with pytest.raises(KlpLdError, match=f"ext4 is built into vmlinux in {RELEASE}.*use vmlinux as its"):
        discover(str(tree.headers), ["ext4"])


def test_bad_object_name_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch)
    with pytest.raises(KlpLdError, match="write 'foo_bar'"):
        discover(str(tree.headers), ["foo-bar"])


@needs_tools
def test_loaded_module_is_a_cross_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch)
    ko_path = tree.put(f"/lib/modules/{RELEASE}/kernel/foo.ko", build_module(tree.build, "foo"))
    kallsyms = tree.put("/proc/kallsyms", KALLSYMS + "ffffffffc1000000 t state_show\t[foo]\n"
                                                   "ffffffffc1000010 t state_show\t[foo]\n")
    tree.loaded("foo")
    d = discover(str(tree.headers), [VMLINUX, "foo"])
    assert [(p, role) for p, role, _ in found_for(d, "foo")] == [(str(ko_path), "primary"),
                                                                  (str(kallsyms), "cross-check")]
    assert resolved(d.index().resolve("foo", "state_show", 2)).candidate.section == ".text.s1"
    # the loaded module has one copy fewer than the installed file: positions must not be trusted
    kallsyms.write_text(KALLSYMS + "ffffffffc1000000 t state_show\t[foo]\n")
    r = discover(str(tree.headers), [VMLINUX, "foo"]).index().resolve("foo", "state_show", 2)
    assert isinstance(r, SymbolProblem) and r.code == "sources-disagree"


def test_loaded_module_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch)
    tree.put("/proc/kallsyms", KALLSYMS)
    tree.loaded("dummy")
    d = discover(str(tree.headers), [VMLINUX, "dummy"])
    (_, role, reason), = found_for(d, "dummy")
    assert role == "primary" and "only the already-loaded case can be checked" in reason
    assert resolved(d.index().resolve("dummy", "state_show", 0)).candidate.objname == "dummy"


# --- explicit sources ------------------------------------------------------------------------------


def test_explicit_sources_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch)
    tree.put("/proc/kallsyms", KALLSYMS)
    given = str(DATA / "System.map")
    d = discover(str(tree.headers), [VMLINUX], [given])
    assert found_for(d, VMLINUX) == [(given, "primary", "given with --klp-symbols")]
    assert d.index().table(VMLINUX) is not None
    # without kernel.release, explicit sources that cover everything are enough
    (tree.headers / "include/config/kernel.release").unlink()
    assert discover(str(tree.headers), [VMLINUX], [given]).release is None
    with pytest.raises(KlpLdError, match="cannot tell the target kernel release"):
        discover(str(tree.headers), [VMLINUX, "dummy"], [given])


def test_explicit_live_kallsyms_of_another_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch, running=OTHER)
    path = tree.put("/proc/kallsyms", KALLSYMS)
    with pytest.raises(KlpLdError) as exc:
        discover(str(tree.headers), [VMLINUX], [str(path)])
    assert messages(exc) == [f"klp-ld: error: {path}: this is the running kernel's symbol table, and the "
                             f"running kernel is {OTHER}, but the headers build for {RELEASE}"]


def test_explicit_system_map_named_for_another_release(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch)
    path = tree.put(f"/srv/System.map-{OTHER}", (DATA / "System.map").read_text())
    with pytest.raises(KlpLdError, match=f"belongs to kernel {OTHER} \\(by its path\\), but the headers "
                                         f"build for {RELEASE}"):
        discover(str(tree.headers), [VMLINUX], [str(path)])


def test_print_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree(tmp_path, monkeypatch)
    kallsyms = tree.put("/proc/kallsyms", KALLSYMS)
    lines = print_sources(str(tree.headers), [VMLINUX, "nope"])
    assert lines[0] == (f"target kernel release {RELEASE} (from "
                        f"{tree.headers}/include/config/kernel.release)")
    assert lines[1] == (f"vmlinux: {kallsyms} [kallsyms, primary]: the running kernel is {RELEASE} and "
                        "its addresses are readable")
    assert lines[2].startswith(f"klp-ld: error: no module file for nope in {RELEASE}")
    assert lines[3].startswith(">>> looked for ")
    assert print_sources(str(tmp_path / "nowhere"))[0].startswith("klp-ld: error: ")

