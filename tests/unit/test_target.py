"""The target kernel and its exports come from what kbuild gives LD, never from a guess.

Since Linux 6.13 kbuild runs LD in the module's directory, where `Module.symvers` is the module's
own export list: taken for the kernel's, it turned `_printk` and `klp_enable_patch` into klp
relocations and the module's init jumped to address 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from klp_ld.diag import KlpLdError
from klp_ld.elf.read import read_elf_file
from klp_ld.target import Target, find_target, kernel_release, plan_exports

from .conftest import OBJECTS, Toolchain, run_klp_ld

RELEASE = "7.2.0-test"
OTHER = "6.12.0-other"
KALLSYMS = f"--klp-symbols={OBJECTS / 'kallsyms.txt'}"


def make_headers(path: Path, release: str = RELEASE, symvers: str | None = None) -> Path:
    (path / "include" / "generated").mkdir(parents=True)
    (path / "include" / "generated" / "utsrelease.h").write_text(f'#define UTS_RELEASE "{release}"\n')
    (path / "arch" / "x86").mkdir(parents=True)
    (path / "arch" / "x86" / "module.lds").write_text((OBJECTS / "module.lds").read_text())
    if symvers is not None:
        (path / "Module.symvers").write_text(symvers)
    return path


# --- finding the target ---------------------------------------------------------------------------


def test_objtree_in_the_environment_names_the_headers(tmp_path: Path) -> None:
    headers = make_headers(tmp_path / "headers")
    module = tmp_path / "module"
    module.mkdir()
    target = find_target(str(module), {"objtree": "../headers"})
    assert target == Target(str(headers), RELEASE, "the objtree environment variable")


def test_the_module_script_names_the_headers(tmp_path: Path) -> None:
    headers = make_headers(tmp_path / "headers")
    target = find_target(str(tmp_path), {}, str(headers / "arch" / "x86" / "module.lds"))
    assert (target.headers_dir, target.release) == (str(headers), RELEASE)
    assert target.found_by.startswith("the linker script")


def test_the_working_directory_still_counts_for_older_kbuild(tmp_path: Path) -> None:
    headers = make_headers(tmp_path / "headers")
    assert find_target(str(headers), {}).release == RELEASE


def test_hints_naming_two_kernels_are_refused(tmp_path: Path) -> None:
    make_headers(tmp_path / "a")
    other = make_headers(tmp_path / "b", OTHER)
    with pytest.raises(KlpLdError, match=f"names kernel headers for {RELEASE}.*headers for {OTHER}"):
        find_target(str(tmp_path), {"objtree": "a"}, str(other / "arch" / "x86" / "module.lds"))


def test_nothing_in_sight_is_an_unknown_target(tmp_path: Path) -> None:
    assert find_target(str(tmp_path), {}) == Target(None, None, "nothing")


def test_uts_release_is_read(tmp_path: Path) -> None:
    assert kernel_release(str(make_headers(tmp_path / "h"))) == RELEASE


# --- which export lists -----------------------------------------------------------------------------


def test_the_module_directorys_symvers_is_never_the_kernels(tmp_path: Path) -> None:
    headers = make_headers(tmp_path / "headers", symvers=(OBJECTS / "exports.symvers").read_text())
    module = tmp_path / "module"
    module.mkdir()
    (module / "Module.symvers").write_text("")
    plan = plan_exports(find_target(str(module), {"objtree": "../headers"}), [], str(module), {})
    assert [(f.path, f.role) for f in plan.files] == [(str(headers / "Module.symvers"), "kernel")]
    assert plan.unknown is None


def test_given_lists_add_to_the_kernels_and_extra_symbols_count(tmp_path: Path) -> None:
    headers = make_headers(tmp_path / "headers", symvers="")
    target = find_target(str(headers), {})
    plan = plan_exports(target, ["a.symvers", "b.symvers"], str(tmp_path),
                        {"KBUILD_EXTRA_SYMBOLS": "x/Module.symvers y/Module.symvers"})
    assert [f.role for f in plan.files] == ["kernel", "extra", "extra", "given", "given"]


def test_a_given_list_from_another_releases_headers_is_refused(tmp_path: Path) -> None:
    make_headers(tmp_path / "headers")
    other = make_headers(tmp_path / "other", OTHER, symvers="")
    target = find_target(str(tmp_path / "headers"), {})
    with pytest.raises(KlpLdError, match=f"belongs to kernel {OTHER}.*builds for {RELEASE}"):
        plan_exports(target, [str(other / "Module.symvers")], str(tmp_path), {})


# --- links built the way kbuild 6.13+ runs LD --------------------------------------------------------


def _module_dir(tmp_path: Path, symvers: str | None) -> tuple[Path, dict[str, str]]:
    make_headers(tmp_path / "headers", symvers=symvers)
    module = tmp_path / "module"
    module.mkdir()
    (module / "Module.symvers").write_text("")  # modpost's, for the module itself: no exports
    return module, {"objtree": "../headers"}


def _link(module: Path, env: dict[str, str], toolchain: Toolchain, *extra: str):
    objs = [str(toolchain.build(s)) for s in ("auto.c", "modinfo.c")]
    return run_klp_ld([KALLSYMS, *extra, "-r", "-o", "m.o", *objs], module, env)


def test_exports_come_from_the_headers_when_ld_runs_in_the_module_directory(
        tmp_path: Path, toolchain: Toolchain) -> None:
    module, env = _module_dir(tmp_path, (OBJECTS / "exports.symvers").read_text())
    result = _link(module, env, toolchain)
    assert result.returncode == 0, result.stderr
    undefined = {s.name for s in read_elf_file(str(module / "m.o")).symbols if s.is_undefined}
    assert "jiffies" in undefined  # exported: stays an ordinary, versioned reference
    assert ".klp.sym.vmlinux.saved_command_line,0" in undefined


def test_an_empty_kernel_export_list_decides_nothing(tmp_path: Path, toolchain: Toolchain) -> None:
    module, env = _module_dir(tmp_path, "")
    result = _link(module, env, toolchain)
    assert result.returncode == 1
    assert "Module.symvers: lists no vmlinux exports" in result.stderr
    assert not (module / "m.o").exists()


def test_a_missing_kernel_export_list_is_one_error_not_a_guess(tmp_path: Path, toolchain: Toolchain) -> None:
    module, env = _module_dir(tmp_path, None)
    result = _link(module, env, toolchain)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("klp-ld: error:")]
    assert len(errors) == 1, result.stderr
    assert "cannot tell whether the target kernel exports" in errors[0]
    assert "jiffies" in errors[0] and "saved_command_line" in errors[0]
    assert not (module / "m.o").exists()


def test_another_releases_export_list_decides_nothing(tmp_path: Path, toolchain: Toolchain) -> None:
    module, env = _module_dir(tmp_path, (OBJECTS / "exports.symvers").read_text())
    other = make_headers(tmp_path / "other", OTHER, symvers=(OBJECTS / "exports.symvers").read_text())
    result = _link(module, env, toolchain, f"--klp-symvers={other / 'Module.symvers'}")
    assert result.returncode == 1
    assert f"belongs to kernel {OTHER}" in result.stderr
    assert not (module / "m.o").exists()


def test_a_sibling_modules_export_stays_an_ordinary_reference(tmp_path: Path, toolchain: Toolchain) -> None:
    module, env = _module_dir(tmp_path, (OBJECTS / "exports.symvers").read_text())
    sibling = tmp_path / "sibling.symvers"
    sibling.write_text("0x11111111\tsaved_command_line\t/src/sibling/sibling\tEXPORT_SYMBOL_GPL\t\n")
    for extra, more_env in (((f"--klp-symvers={sibling}",), {}),
                            ((), {"KBUILD_EXTRA_SYMBOLS": str(sibling)})):
        (module / "m.o").unlink(missing_ok=True)
        result = _link(module, {**env, **more_env}, toolchain, *extra)
        assert result.returncode == 0, result.stderr
        undefined = {s.name for s in read_elf_file(str(module / "m.o")).symbols if s.is_undefined}
        assert {"saved_command_line", "jiffies"} <= undefined


def test_a_loaded_siblings_export_in_kallsyms_stays_an_ordinary_reference(
        tmp_path: Path, toolchain: Toolchain) -> None:
    """A sibling module loaded when kallsyms was dumped: its exports print in upper case."""
    module, env = _module_dir(tmp_path, (OBJECTS / "exports.symvers").read_text())
    dump = tmp_path / "kallsyms"
    dump.write_text((OBJECTS / "kallsyms.txt").read_text().replace(" saved_command_line\n", " other\n")
                    + "ffffffffc0001000 D saved_command_line\t[sibling]\n"
                    + "ffffffffc0002000 t sibling_local\t[sibling]\n")
    objs = [str(toolchain.build(s)) for s in ("auto.c", "modinfo.c")]
    result = run_klp_ld([f"--klp-symbols={dump}", "-r", "-o", "m.o", *objs], module, env)
    assert result.returncode == 0, result.stderr
    undefined = {s.name for s in read_elf_file(str(module / "m.o")).symbols if s.is_undefined}
    assert "saved_command_line" in undefined
