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


class OwnCluster:
    """A Slurm cluster of one test module's own, for tests that restart it, break it or
    configure it differently (``scripts/slurm-cluster`` with its own directory and ports).

    The directory and the ports come from the pid, so that two test runs at once never
    stop each other's daemons; ``settings`` are more environment variables of the script
    (``SLURMSCOPE_MIN_JOB_AGE``...). :meth:`start` is idempotent (it repairs what a test
    broke); :meth:`remove` stops the daemons and deletes the directory.
    """

    def __init__(self, name: str, port_base: int, **settings: str) -> None:
        pid = os.getpid()
        self.dir = f"/var/tmp/slurmscope-{name}-{pid}"
        self.conf = f"{self.dir}/slurm.conf"
        self.env = {
            "SLURMSCOPE_CLUSTER_DIR": self.dir,
            "SLURMSCOPE_CLUSTER_PORT": str(port_base + (pid % 2000) * 4),
            "SLURMSCOPE_CLUSTER_ETC_CONF": "0",
            **settings,
        }

    def script(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, **self.env)
        env.pop("SLURM_CONF", None)
        return subprocess.run(
            [str(SCRIPT), *args], capture_output=True, text=True, env=env, check=False
        )

    def start(self, *args: str) -> None:
        """Start (or repair) it; fails the test with the script's output if it cannot."""
        require()
        started = self.script("start", *args)
        if started.returncode != 0:
            pytest.fail(f"could not start the cluster in {self.dir}: {started.stderr[-2000:]}")

    def remove(self) -> None:
        import shutil

        self.script("stop")
        shutil.rmtree(self.dir, ignore_errors=True)
