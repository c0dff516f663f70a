"""Faults of the controller, on a Slurm cluster of the test's own (it is restarted)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import slurm_cluster
import tasks

import slurmscope

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

add = slurmscope.task(tasks.add)
sleep = slurmscope.task(tasks.sleep)

CHAOS_DIR = "/var/tmp/slurmscope-chaos"
CHAOS_ENV = {
    "SLURMSCOPE_CLUSTER_DIR": CHAOS_DIR,
    "SLURMSCOPE_CLUSTER_PORT": "17917",
    "SLURMSCOPE_CLUSTER_ETC_CONF": "0",
}
CONF = f"{CHAOS_DIR}/slurm.conf"


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **CHAOS_ENV)
    env.pop("SLURM_CONF", None)
    return subprocess.run(
        [str(slurm_cluster.SCRIPT), *args], capture_output=True, text=True, env=env, check=False
    )


def _ctld_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"slurmctld -f {CONF}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def stop_controller() -> None:
    for pid in _ctld_pids():
        os.kill(pid, 15)
    deadline = time.monotonic() + 30
    while _ctld_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _ctld_pids()


def start_controller() -> None:
    """Restart slurmctld keeping its saved state (no -c): its jobs come back."""
    env = dict(os.environ, SLURM_CONF=CONF)
    subprocess.run(["/usr/sbin/slurmctld", "-f", CONF], env=env, check=True)


@pytest.fixture(scope="module")
def chaos() -> Iterator[None]:
    slurm_cluster.require()
    started = _script("start")
    if started.returncode != 0:
        pytest.fail(f"could not start the chaos cluster: {started.stderr[-2000:]}")
    yield
    _script("stop")


@pytest.fixture
def cluster(chaos: None, tmp_path: Path) -> Iterator[slurmscope.Cluster]:
    c = slurmscope.Cluster("sbatch", root=tmp_path, slurm_conf=CONF, set_as_default=False)
    yield c
    c.close()


def test_submission_retries_while_controller_is_down(cluster: slurmscope.Cluster) -> None:
    stop_controller()
    restart = threading.Timer(12.0, start_controller)  # past sbatch's own retries
    restart.start()
    try:
        t0 = time.monotonic()
        job = add.on(cluster)(1)  # the first sbatch fails; the retry lands
        assert time.monotonic() - t0 >= 11
    finally:
        restart.join()
    assert cluster.backend.calls["sbatch"] >= 2
    assert job.get_result(timeout=120) == 2


def test_wait_survives_controller_restart(cluster: slurmscope.Cluster) -> None:
    array = sleep.on(cluster).map([2, 2, 2])
    first = add.on(cluster).after(array)(1)
    stop_controller()
    time.sleep(3)
    start_controller()
    assert array.get_results(timeout=180) == [2, 2, 2]
    assert first.get_result(timeout=180) == 2
