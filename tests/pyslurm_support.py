"""Which pyslurm the pyslurm backend's tests use: a real one where it imports, else the
TEST DOUBLE in ``tests/pyslurm_double`` (which carries out every call on the real Slurm
test cluster through the Slurm command line; see its docstring).

``SLURMSCOPE_TEST_PYSLURM`` chooses: ``auto`` (default: real if ``import pyslurm`` works,
else the double), ``real`` (fail where no real pyslurm imports) or ``double``.

The double is on ``sys.path`` only inside :func:`pyslurm_importable`; afterwards it is gone
from ``sys.path`` and ``sys.modules`` again, so that auto-detection in other tests
(``Cluster()``) does not see it. A backend created meanwhile keeps its module object.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import pytest

DOUBLE_DIR = str(Path(__file__).resolve().parent / "pyslurm_double")


@lru_cache(maxsize=1)
def real_pyslurm() -> str | None:
    """``None`` when a real pyslurm imports here, else why not (checked in a subprocess,
    so that no libslurm is loaded into the test process outside the backend's thread)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", "import pyslurm; print(pyslurm.__version__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        check=False,
    )
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip().splitlines() or ["import pyslurm failed"])[-1]


def _pyslurm_modules() -> dict[str, object]:
    return {k: v for k, v in sys.modules.items() if k == "pyslurm" or k.startswith("pyslurm.")}


@contextmanager
def double_on_path() -> Iterator[None]:
    """The test double importable as ``pyslurm`` (a fresh import) inside the block."""
    saved = _pyslurm_modules()
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, DOUBLE_DIR)
    try:
        yield
    finally:
        sys.path.remove(DOUBLE_DIR)
        for name in _pyslurm_modules():
            del sys.modules[name]
        sys.modules.update(saved)  # type: ignore[arg-type]


@contextmanager
def pyslurm_importable() -> Iterator[str]:
    """``import pyslurm`` works inside the block; yields ``"real"`` or ``"double"``."""
    mode = os.environ.get("SLURMSCOPE_TEST_PYSLURM", "auto")
    if mode not in ("auto", "real", "double"):
        pytest.fail(f"SLURMSCOPE_TEST_PYSLURM={mode!r}: use auto, real or double")
    if mode != "double":
        why = real_pyslurm()
        if why is None:
            yield "real"
            return
        if mode == "real":
            pytest.fail(f"SLURMSCOPE_TEST_PYSLURM=real, but no real pyslurm imports: {why}")
    with double_on_path():
        yield "double"
