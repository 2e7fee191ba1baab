"""Repository-wide pytest hooks.

Only options live here: pytest reads ``pytest_addoption`` from the conftest files it loads at start-up,
and ``pytest tests`` (or a bare ``pytest``) does not load ``tests/kernel/conftest.py`` early enough.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kernel",
        action="store",
        default=None,
        metavar="SERIES",
        help="kernel series for the QEMU bench tests (-m kernel): 6.1 (default), 6.12, 7.2, ppc64le, arm64, "
        "s390x (kernels the bench cross-builds), all, or a comma list; also env KLP_LD_KERNEL",
    )
