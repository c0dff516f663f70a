"""Bring up the real Slurm test cluster for the tests (scripts/slurm-cluster), or say why not.

Where it cannot be started the Slurm tests skip with one line saying why, except under
``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "slurm-cluster"


@lru_cache(maxsize=1)
def ensure() -> str | None:
    """Start the cluster if needed; ``None`` when it is up, else the reason it is not."""
    if not os.environ.get("SLURM_CONF"):
        # What `eval "$(scripts/slurm-cluster env)"` would do: SLURM_CONF, the lane's
        # binaries first on PATH, the lane's name.
        env = subprocess.run([str(SCRIPT), "env"], capture_output=True, text=True, check=False)
        for line in env.stdout.splitlines():
            name, sep, value = line.removeprefix("export ").partition("=")
            if not sep:
                continue
            value = value.strip().strip("'\"")
            if name == "PATH":
                value = value.replace("$PATH", os.environ.get("PATH", ""))
            os.environ[name] = value
    from slurmscope.backends.sbatch import reachable

    ok, why = reachable()
    if ok:
        return None
    start = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, check=False)
    ok, why2 = reachable()
    if ok:
        return None
    tail = (start.stderr or start.stdout).strip().splitlines()[-1:] or [why2]
    return f"no Slurm cluster: {why}; scripts/slurm-cluster start said: {tail[0]}"


def require() -> None:
    reason = ensure()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and the Slurm test cluster is not up: {reason}")
    pytest.skip(reason)
