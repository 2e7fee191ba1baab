"""Fixtures for the kernel bench: ``bench`` is a ready kernel of the selected series, once per session.

Select the series with ``--kernel=6.1`` (default), ``--kernel=6.12``, ``--kernel=7.2``, ``--kernel=ppc64le``,
``--kernel=arm64``, ``--kernel=s390x``, ``--kernel=all`` or env KLP_LD_KERNEL; every test that uses ``bench``
runs once per selected Debian x86_64 series. ``ppc64le_bench``, ``arm64_bench`` and ``s390x_bench`` are the
kernels the bench cross-builds; their tests run when that series is selected (``all`` includes them).
Tests whose series are all unselected are deselected. Nothing is prepared unless such a test is selected,
so ``-m "not kernel"`` costs only the import of this file.

A missing prerequisite (no root, apt, network or QEMU) skips with a one-line reason, except under CI
(env ``CI`` set to true), where it fails: a CI run must prove something in a kernel. The session ends with
the number of kernel boots it made.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from .bench import (
    CROSS_KERNELS,
    ENV_KEEP,
    ENV_KERNEL,
    KERNELS,
    Bench,
    BenchUnavailable,
    boot_counts,
    cache_root,
    env_flag,
    parse_series,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
KMOD = REPO_ROOT / "testdata" / "kmod"
KLP_LD = REPO_ROOT / "wrappers" / "klp-ld"

_BENCH_FIXTURES = frozenset({"bench", "kernel_series"})
PPC64LE = "ppc64le"
ARM64 = "arm64"
S390X = "s390x"
# The fixture of each series the bench cross-builds.
_CROSS_FIXTURES = {"ppc64le_bench": PPC64LE, "arm64_bench": ARM64, "s390x_bench": S390X}
ENV_CI = "CI"


def in_ci() -> bool:
    """True under CI (CI=true, as CI services set it): missing prerequisites fail instead of skipping."""
    return env_flag(ENV_CI)


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``, or fail with it under CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI={os.environ.get(ENV_CI)}: a missing prerequisite fails the run)",
                    pytrace=False)
    pytest.skip(reason)


def selected_series(config: pytest.Config) -> tuple[str, ...]:
    try:
        value = config.getoption("kernel")
    except ValueError:  # the option lives in tests/conftest.py; tolerate running without it
        value = None
    try:
        return parse_series(value or os.environ.get(ENV_KERNEL))
    except ValueError as exc:
        raise pytest.UsageError(f"--kernel / {ENV_KERNEL}: {exc}") from exc


def debian_series(config: pytest.Config) -> tuple[str, ...]:
    """The selected series that ``bench`` serves: Debian's x86_64 kernels."""
    return tuple(series for series in selected_series(config) if series in KERNELS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kernel_series" in metafunc.fixturenames:
        series = debian_series(metafunc.config)
        if series:  # none: the tests are deselected below
            metafunc.parametrize("kernel_series", series, indirect=True, scope="session")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that boots a kernel, so ``-m "not kernel"`` deselects it even without pytestmark,
    and deselect the tests of series that ``--kernel`` did not select (``--kernel=ppc64le`` runs no
    x86_64 test, the default runs no ppc64le, arm64 or s390x test)."""
    x86 = bool(debian_series(config))
    selected = set(selected_series(config))
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        uses_bench = bool(_BENCH_FIXTURES & names)
        cross = {series for fixture, series in _CROSS_FIXTURES.items() if fixture in names}
        if uses_bench or cross:
            item.add_marker(pytest.mark.kernel)
        unselected = (uses_bench and not x86) or not cross <= selected
        (dropped if unselected else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def boot_summary() -> str:
    """"kernel bench: 9 boots (6.1: 3, 6.12: 3, 7.2: 3)", or "kernel bench: 0 boots"."""
    counts = boot_counts()
    total = sum(counts.values())
    detail = ", ".join(f"{series}: {count}" for series, count in counts.items())
    return f"kernel bench: {total} boot{'' if total == 1 else 's'}" + (f" ({detail})" if detail else "")


_prepared: set[str] = set()  # series whose bench fixture ran (even if it then failed or skipped)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many kernels the run booted: whenever a test asked for the bench, and always under CI."""
    if _prepared or boot_counts() or in_ci():
        terminalreporter.write_line(boot_summary())


@pytest.fixture(scope="session")
def kernel_series(request: pytest.FixtureRequest) -> str:
    param = getattr(request, "param", None)
    return str(param) if param is not None else (*debian_series(request.config), *KERNELS)[0]


def _prepared_bench(series: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    _prepared.add(series)
    keep = env_flag(ENV_KEEP)
    if keep:
        workdir = cache_root() / "keep" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}" / series
    else:
        workdir = tmp_path_factory.mktemp(f"bench-{series}-")
    try:
        ready = Bench.prepare(series, workdir, keep=keep, shared=[tmp_path_factory.getbasetemp()])
    except BenchUnavailable as exc:
        unavailable(f"kernel bench {series}: {exc}")
    yield ready
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def bench(kernel_series: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    """A prepared bench, or a skip naming what is missing (no root, no apt, no network, no qemu); under CI
    a failure instead.

    Build and boot directories go to pytest's temporary directory and are removed at the end; with
    KLP_LD_BENCH_KEEP=1 they go to <cache>/keep/<date>-<pid>/<series>/ and stay.
    """
    yield from _prepared_bench(kernel_series, tmp_path_factory)


@pytest.fixture(scope="session")
def ppc64le_bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    """The ppc64le kernel the bench cross-builds (the first use builds it: several minutes), as ``bench``
    is for Debian's kernels: same skip (under CI: failure) for a missing prerequisite, same workdir."""
    assert PPC64LE in CROSS_KERNELS
    yield from _prepared_bench(PPC64LE, tmp_path_factory)


@pytest.fixture(scope="session")
def arm64_bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    """The arm64 kernel the bench cross-builds from Debian sid's source (the first use builds it: about
    five minutes), as ``ppc64le_bench`` is for ppc64le."""
    assert ARM64 in CROSS_KERNELS
    yield from _prepared_bench(ARM64, tmp_path_factory)


@pytest.fixture(scope="session")
def s390x_bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    """The s390x kernel the bench cross-builds from Debian 12's source, the one ppc64le builds (the first
    use builds it: several minutes), as ``ppc64le_bench`` is for ppc64le."""
    assert S390X in CROSS_KERNELS
    yield from _prepared_bench(S390X, tmp_path_factory)


@pytest.fixture(scope="session")
def klp_ld() -> Path:
    """The wrapper under test, as kbuild's LD."""
    if not KLP_LD.is_file():
        pytest.fail(f"{KLP_LD} does not exist: the kernel bench tests link through it")
    return KLP_LD
