"""Fixtures for the kernel bench: ``bench`` is a ready kernel of the selected series, once per session.

Select the series with ``--kernel=6.1`` (default), ``--kernel=6.12``, ``--kernel=all`` or env KLP_LD_KERNEL;
every test that uses ``bench`` runs once per selected series. Nothing is prepared unless such a test is
selected, so ``-m "not kernel"`` costs only the import of this file.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .bench import ENV_KEEP, ENV_KERNEL, Bench, BenchUnavailable, cache_root, env_flag, parse_series

REPO_ROOT = Path(__file__).resolve().parents[2]
KMOD = REPO_ROOT / "testdata" / "kmod"
KLP_LD = REPO_ROOT / "wrappers" / "klp-ld"

_BENCH_FIXTURES = frozenset({"bench", "kernel_series"})


def selected_series(config: pytest.Config) -> tuple[str, ...]:
    try:
        value = config.getoption("kernel")
    except ValueError:  # the option lives in tests/conftest.py; tolerate running without it
        value = None
    try:
        return parse_series(value or os.environ.get(ENV_KERNEL))
    except ValueError as exc:
        raise pytest.UsageError(f"--kernel / {ENV_KERNEL}: {exc}") from exc


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kernel_series" in metafunc.fixturenames:
        series = selected_series(metafunc.config)
        metafunc.parametrize("kernel_series", series, indirect=True, scope="session")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that boots a kernel, so ``-m "not kernel"`` deselects it even without pytestmark."""
    for item in items:
        if _BENCH_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kernel)


@pytest.fixture(scope="session")
def kernel_series(request: pytest.FixtureRequest) -> str:
    param = getattr(request, "param", None)
    return str(param) if param is not None else selected_series(request.config)[0]


@pytest.fixture(scope="session")
def bench(kernel_series: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    """A prepared bench, or a skip naming what is missing (no root, no apt, no network, no qemu).

    Build and boot directories go to pytest's temporary directory and are removed at the end; with
    KLP_LD_BENCH_KEEP=1 they go to <cache>/keep/<date>-<pid>/<series>/ and stay.
    """
    keep = env_flag(ENV_KEEP)
    if keep:
        workdir = cache_root() / "keep" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}" / kernel_series
    else:
        workdir = tmp_path_factory.mktemp(f"bench-{kernel_series}-")
    try:
        ready = Bench.prepare(kernel_series, workdir, keep=keep)
    except BenchUnavailable as exc:
        pytest.skip(f"kernel bench {kernel_series}: {exc}")
    yield ready
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def klp_ld() -> Path:
    """The wrapper under test, as kbuild's LD."""
    if not KLP_LD.is_file():
        pytest.fail(f"{KLP_LD} does not exist: the kernel bench tests link through it")
    return KLP_LD
